"""The `golf` CLI: library subcommands wired in, report and gc on an artifacts dir, bench dispatch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from golf.flows.cli import build_parser, main


def test_library_subcommands_are_registered(val_shard: Path) -> None:
    """`golf inspect`, `golf data` and `golf model plan` dispatch to the library's own handlers."""
    assert build_parser(["inspect"]).parse_args(["inspect", "x.q2bn"]).func.__module__ == "golfmodel.q2bn.cli"
    assert (
        build_parser(["data"]).parse_args(["data", "verify", str(val_shard)]).func.__module__
        == "golfmodel.data.cli"
    )
    args = ["model", "plan", "--arm", "q2-geode", "--budget", "100000", "--vocab", "260"]
    assert build_parser(["model"]).parse_args(args).func.__module__ == "golfmodel.model.cli"


def test_data_verify_through_golf(
    val_shard: Path, sp_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`golf data verify` prints the sample's token count."""
    assert main(["data", "verify", str(val_shard), "--tokenizer", str(sp_model_path)]) == 0
    assert "93187" in capsys.readouterr().out


def test_inspect_rejects_a_non_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`golf inspect` on a file that is no artifact exits 1 with a message naming it."""
    bad = tmp_path / "bad.q2bn"
    bad.write_bytes(b"not an artifact")
    assert main(["inspect", str(bad)]) == 1
    assert "bad.q2bn" in capsys.readouterr().err


def _fake_run(artifacts: Path, name: str, text: str) -> Path:
    run = artifacts / "runs" / name
    (run / "records").mkdir(parents=True)
    (run / "report.md").write_text(text)
    return run


def test_report_prints_the_latest_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`golf report latest` prints the newest run's report.md; a name prefix works too."""
    _fake_run(tmp_path, "20260101T000000Z-smoke-aaaa", "old report\n")
    _fake_run(tmp_path, "20260102T000000Z-smoke-bbbb", "new report\n")
    assert main(["report", "latest", "--set", f"pipeline.artifacts_dir={tmp_path}"]) == 0
    assert capsys.readouterr().out == "new report\n"
    assert main(["report", "20260101", "--set", f"pipeline.artifacts_dir={tmp_path}"]) == 0
    assert capsys.readouterr().out == "old report\n"


def test_gc_removes_old_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`golf gc --older-than 1` removes a 30-day-old run folder but keeps the newest."""
    old = _fake_run(tmp_path, "20260101T000000Z-smoke-aaaa", "x")
    new = _fake_run(tmp_path, "20260102T000000Z-smoke-bbbb", "y")
    t = old.stat().st_mtime - 30 * 86400
    os.utime(old, (t, t))
    assert main(["gc", "--older-than", "1", "--set", f"pipeline.artifacts_dir={tmp_path}"]) == 0
    assert not old.exists() and new.exists() and "removed 1 run(s)" in capsys.readouterr().out


def test_bench_dispatches_to_the_library(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`golf bench NAME ARGS` calls golfmodel.bench.NAME_bench.main(ARGS)."""
    import sys
    import types

    seen: list[list[str]] = []
    fake = types.ModuleType("golfmodel.bench.pack_bench")
    fake.main = lambda argv: seen.append(list(argv)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "golfmodel.bench.pack_bench", fake)
    assert main(["bench", "pack", "--quick"]) == 0 and seen == [["--quick"]]


def test_library_error_types_resolve() -> None:
    """Every library error the tasks report as a one-line failure still exists under its name."""
    from golf.tasks.common import _ERROR_NAMES, stage_errors

    names = {t.__name__ for t in stage_errors()}
    assert [n for n in _ERROR_NAMES if n.split(":")[1] not in names] == []


def test_train_dry_run_prints_the_plan_and_torchrun_command(
    capsys: pytest.CaptureFixture[str], step_cost_artifacts: Path
) -> None:
    """`golf train --dry-run --preset h100x8` plans on the meta device, projects the step, prints the 8-process torchrun."""
    tiny = ["model.solve=false", "model.d_model=32", "model.depth=1", "model.pattern=GC"]
    tiny += ["train.seq_len=64", "eval.seq_len=64", f"pipeline.artifacts_dir={step_cost_artifacts}"]
    argv = ["train", "--dry-run", "--preset", "h100x8", "--calibration-ratio", "1.25"]
    assert main([*argv, *(a for kv in tiny for a in ("--set", kv))]) == 0  # counts come from the shared cache
    out = capsys.readouterr().out
    exact = [line for line in out.splitlines() if line.startswith("exact command")]
    assert (
        "parameters" in out
        and "step-cost model (PROJECTION)" in out
        and exact
        and "--standalone --nproc_per_node=8 -m golfmodel.train --job" in exact[0]
    )
