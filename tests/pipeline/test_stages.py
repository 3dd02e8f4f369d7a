"""The stage graph (selection, upstream closure, per-stage settings subsets) and `golf gc` — pure logic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from golf.settings import STAGES, load_settings
from golf.tasks.cache import StageCache, StageResult, file_lock
from golf.tasks.runs import RunDir, gc
from golf.tasks.stages import needed_stages, select_stages, stage_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GOLF_"):
            monkeypatch.delenv(key)


def test_from_stage_selects_it_and_everything_after() -> None:
    """--from pack runs pack, size_check, validate, report."""
    assert select_stages(None, "pack", STAGES) == ["pack", "size_check", "validate", "report"]


def test_stages_come_back_in_pipeline_order() -> None:
    """--stages bigram,download runs download then bigram."""
    assert select_stages(["bigram", "download"], None, STAGES) == ["download", "bigram"]


def test_stages_and_from_together_are_rejected() -> None:
    """--stages and --from exclude each other."""
    with pytest.raises(ValueError, match="either"):
        select_stages(["train"], "pack", STAGES)


def test_needed_stages_close_over_upstream() -> None:
    """validate needs pack (and its chain) and tokenise; nothing downstream of it."""
    assert needed_stages(["validate"]) == [
        "download",
        "tokenise",
        "bigram",
        "train",
        "recalibrate",
        "pack",
        "validate",
    ]


def test_changed_train_setting_touches_train_key_only_among_upstream() -> None:
    """train.max_steps is in train's settings subset and in no upstream stage's."""
    a, b = load_settings("test"), load_settings("test", overrides=["train.max_steps=21"])
    changed = [s for s in STAGES if stage_config(s, a) != stage_config(s, b)]
    assert changed == ["train", "report"]


def test_housekeeping_settings_change_no_key() -> None:
    """Retries, tokeniser workers, the train timeout and log cadence re-run nothing."""
    a = load_settings("test")
    b = load_settings(
        "test",
        overrides=["data.retries=9", "tokeniser.workers=3", "train.timeout_seconds=5", "train.log_every=2"],
    )
    assert [s for s in STAGES if s != "report" and stage_config(s, a) != stage_config(s, b)] == []


def _make_run(artifacts: Path, entry_dirs: list[str], age_days: float, now: float) -> Path:
    s = load_settings("test", overrides=[f"pipeline.artifacts_dir={artifacts}"])
    run = RunDir.create(s, now=now - age_days * 86400)
    for i, d in enumerate(entry_dirs):
        (run.path / "records" / f"s{i}.json").write_text(f'{{"dir": "{d}"}}')
    t = now - age_days * 86400
    os.utime(run.path, (t, t))
    return run.path


def _entry(cache: StageCache, stage: str, cfg: dict, age_days: float, now: float) -> Path:
    rec, _ = cache.run(stage, cfg, {}, lambda w: (w.joinpath("f").write_text("x"), StageResult())[1])
    t = now - age_days * 86400
    for p in (Path(rec.dir) / "record.json", Path(rec.dir)):
        os.utime(p, (t, t))
    return Path(rec.dir)


def test_gc_removes_old_unreferenced_entries_only(tmp_path: Path) -> None:
    """Old entries nothing points at go; entries a kept run references and young ones stay."""
    now = time.time()
    cache = StageCache(tmp_path / "cache", environment="e")
    old_free = _entry(cache, "a", {"n": 1}, 30, now)
    old_used = _entry(cache, "a", {"n": 2}, 30, now)
    young = _entry(cache, "a", {"n": 3}, 1, now)
    _make_run(tmp_path, [str(old_used)], 1, now)
    rep = gc(tmp_path, 14, now=now)
    assert not old_free.exists() and old_used.exists() and young.exists()
    assert rep.removed_entries == [old_free] and rep.kept_referenced == 1


def test_gc_keeps_the_newest_run_and_its_chain(tmp_path: Path) -> None:
    """Even when every run is old, the newest run and the entries it points at survive."""
    now = time.time()
    cache = StageCache(tmp_path / "cache", environment="e")
    e1, e2 = _entry(cache, "a", {"n": 1}, 40, now), _entry(cache, "a", {"n": 2}, 40, now)
    old = _make_run(tmp_path, [str(e1)], 40, now)
    newest = _make_run(tmp_path, [str(e2)], 30, now)
    gc(tmp_path, 14, now=now)
    assert not old.exists() and newest.exists() and e2.exists() and not e1.exists()


def test_gc_skips_an_entry_being_computed(tmp_path: Path) -> None:
    """An old folder whose key a run holds the lock of is left alone."""
    now = time.time()
    cache = StageCache(tmp_path / "cache", environment="e")
    entry = _entry(cache, "a", {"n": 1}, 30, now)
    with file_lock(cache.lock_path("a", entry.name)):
        gc(tmp_path, 14, now=now)
    assert entry.exists()


def test_gc_dry_run_removes_nothing(tmp_path: Path) -> None:
    """--dry-run lists without deleting."""
    now = time.time()
    entry = _entry(StageCache(tmp_path / "cache", environment="e"), "a", {}, 30, now)
    rep = gc(tmp_path, 14, dry_run=True, now=now)
    assert rep.removed_entries == [entry] and entry.exists()


def test_run_folders_are_unique(tmp_path: Path) -> None:
    """Two runs started in the same second with the same settings get different folders."""
    s = load_settings("test", overrides=[f"pipeline.artifacts_dir={tmp_path}"])
    a, b = RunDir.create(s, now=1e9), RunDir.create(s, now=1e9)
    assert a.path != b.path and a.path.is_dir() and b.path.is_dir()
