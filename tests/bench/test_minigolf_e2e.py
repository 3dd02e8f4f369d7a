"""The minigolf bench end to end on the sample at a tiny budget: JSON shape, reports, cache resume.

The budget solver is replaced by a fixed tiny plan (its own tests cover it; here it would only
add seconds): width 32, one Geode group of "GC" for q2-geode and one layer for gpt-int8.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golfmodel.bench import minigolf_bench
from golfmodel.model import budget

TINY = [
    "--budget", "40000", "--int8-tokens", "8192", "--seeds", "1", "--workers", "1",
    "--seq-len", "64", "--batch-tokens", "2048", "--micro-batch", "32", "--eval-seq-len", "64",
    "--eval-tokens", "2048", "--val-points", "2", "--val-tokens", "512",
    "--arms", "fp32-twin,q2,int8", "--lr-sweep", "off",
]  # fmt: skip
ARM_FIELDS = {"params", "artifact_bytes", "tokens", "tokens_per_param", "prequant_bpb", "final_bpb", "seeds"}


def fake_solve(arm: str, vocab: int, budget_bytes: int, **kw: object) -> budget.Plan:
    """A fixed tiny plan that fills 95% of the budget."""
    cfg = budget.make_config(arm, vocab, 32, 1, plan=kw.get("plan"), pattern="GC")
    fill = 0.95
    return budget.Plan(
        config=cfg, params=0, artifact_bytes=int(fill * budget_bytes), code_bytes=0, budget_bytes=budget_bytes,
        fill=fill, estimate_bytes=1, confirmed=True, trained_ratio=1.0,
    )  # fmt: skip


def _run(out: Path, sample_root: Path) -> int:
    return minigolf_bench.main(
        [*TINY, "--data", str(sample_root), "--out", str(out), "--json", str(out / "r.json")], {}
    )


@pytest.fixture(autouse=True)
def tiny_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "solve", fake_solve)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, sample_root: Path) -> Path:
    out = tmp_path_factory.mktemp("minigolf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget, "solve", fake_solve)
        assert _run(out, sample_root) == 0
    return out


def test_bench_json_has_exactly_the_documented_shape(bench: Path) -> None:
    """--json holds the three arms, penalty_bpb, gain_bpb, p_penalty, p_gain and the study's `arms` (one budget)."""
    data = json.loads((bench / "r.json").read_text())
    assert set(data) == {
        "q2-geode",
        "q2-geode-fp32",
        "gpt-int8",
        "penalty_bpb",
        "gain_bpb",
        "p_penalty",
        "p_gain",
        "arms",
    }
    for arm in ("q2-geode", "q2-geode-fp32", "gpt-int8"):
        assert ARM_FIELDS <= set(data[arm]) and len(data[arm]["seeds"]) == 1
    assert data["penalty_bpb"] == pytest.approx(
        data["q2-geode"]["final_bpb"] - data["q2-geode-fp32"]["final_bpb"]
    )
    assert data["p_penalty"] is None  # one seed: no test


def test_fp32_twin_has_the_q2_shape_and_tokens(bench: Path) -> None:
    """Arm (b) is arm (a)'s ModelConfig and token count, packed with fp32 rows (a larger artifact)."""
    data = json.loads((bench / "r.json").read_text())
    a, b = data["q2-geode"], data["q2-geode-fp32"]
    assert (a["params"], a["tokens"]) == (b["params"], b["tokens"])
    assert b["artifact_bytes"] > a["artifact_bytes"]


def test_bench_writes_the_table_and_the_plot(bench: Path) -> None:
    """study.md has the budget table; study-pareto.png is a PNG."""
    assert "| q2 | q2 |" in (bench / "study.md").read_text()
    assert (bench / "study-pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_bench_reuses_every_arm(bench: Path, sample_root: Path) -> None:
    """Re-running with nothing changed reads every arm's result back instead of training again."""
    stamps = {p: p.stat().st_mtime_ns for p in bench.glob("arms/*/result.json")}
    assert _run(bench, sample_root) == 0
    seeds = [
        s
        for arm in ("q2-geode", "q2-geode-fp32", "gpt-int8")
        for s in json.loads((bench / "bench.json").read_text())[arm]["seeds"]
    ]
    assert all(s["cached"] for s in seeds)
    assert {p: p.stat().st_mtime_ns for p in bench.glob("arms/*/result.json")} == stamps


def test_lost_result_is_rescored_without_retraining(bench: Path, sample_root: Path) -> None:
    """An arm interrupted after training (no result.json) is packed and scored again, not retrained."""
    (run,) = bench.glob("arms/int8-*")
    log_size = (run / "train.log").stat().st_size
    (run / "result.json").unlink()
    assert _run(bench, sample_root) == 0
    assert (run / "result.json").exists()
    assert (run / "train.log").stat().st_size == log_size
