"""Stage fingerprints (golf.tasks.fingerprint): the modules each stage runs, their entry modules, versions."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from golf.tasks import fingerprint as fp

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the project's sources that the fingerprint reads instead of the checkout (edits are undone)."""
    root = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("golfmodel", "tasks", "settings"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    dirs = {"golf.tasks": root / "tasks", "golf.settings": root / "settings",
            "golf.flows": REPO / "flows", "golfmodel": root / "golfmodel"}  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fp, "PACKAGE_DIRS", dirs)
        yield root


@contextlib.contextmanager
def edited(path: Path, text: str = "\n# an edit\n") -> Iterator[None]:
    """Append `text` to `path` inside the block; restore it afterwards."""
    before = path.read_text() if path.exists() else None
    path.write_text((before or "") + text)
    try:
        yield
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)


def _digest(stage: str) -> str:
    entries = fp.ENTRY_MODULES.get(stage, ())
    roots = [f"golf.tasks.{stage}", *(n for n, _ in entries)]
    return fp.fingerprint(stage, roots, optional=[n for n, opt in entries if opt]).digest


def test_bench_docstring_edit_keeps_the_train_fingerprint(tree: Path) -> None:
    """Editing a bench module (not imported by training) leaves the train stage's fingerprint as it was."""
    before = _digest("train")
    with edited(tree / "golfmodel" / "bench" / "minigolf.py"):
        assert _digest("train") == before


def test_scorer_edit_changes_the_validate_fingerprint(tree: Path) -> None:
    """Editing the bpb scorer invalidates the validate stage (a scorer fix must not leave stale scores)."""
    before = _digest("validate")
    with edited(tree / "golfmodel" / "eval" / "bpb.py"):
        assert _digest("validate") != before


def test_subprocess_entry_module_is_in_the_train_fingerprint(tree: Path) -> None:
    """golfmodel.train.__main__ (what `-m golfmodel.train` runs; no task imports it) changes train's fingerprint."""
    before = _digest("train")
    assert "golfmodel.train.__main__" not in fp.collect(["golf.tasks.train"])[0]
    with edited(tree / "golfmodel" / "train" / "__main__.py"):
        assert _digest("train") != before


def test_missing_optional_entry_is_skipped_and_used_once_it_exists(tree: Path) -> None:
    """The declared evaluation entry (golfmodel.eval.__main__) is skipped while absent and hashed once added."""
    main = tree / "golfmodel" / "eval" / "__main__.py"
    main.unlink(missing_ok=True)  # the checkout may already have it (added in parallel)
    before = _digest("validate")
    with edited(main, '"""python -m golfmodel.eval"""\n'):
        assert _digest("validate") != before


def test_missing_required_module_is_an_error(tree: Path) -> None:
    """A required root with no source file raises FingerprintError naming it."""
    with pytest.raises(fp.FingerprintError, match="golfmodel.nosuch"):
        fp.collect(["golfmodel.nosuch"])


def test_versions_cover_the_imported_packages_only() -> None:
    """Train's fingerprint holds torch's and Python's versions; orchestration packages (prefect) are left out."""
    versions = fp.stage_fingerprint("train").versions
    assert {"python", "torch", "numpy"} <= set(versions) and "prefect" not in versions


def test_plumbing_edits_change_no_stage() -> None:
    """The cache, logging and run-folder modules are not part of any stage's module set."""
    modules = set().union(*(fp.stage_fingerprint(s).modules for s in ("download", "train", "pack", "report")))
    assert not modules & {"golf.tasks.common", "golf.tasks.cache", "golf.tasks.runs", "golf.flows.pipeline"}
