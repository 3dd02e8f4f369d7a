"""The study end to end through Prefect: `--arms q2,int8` at two tiny budgets, one seed, every unit a task run.

Real solver (its fill checked against --min-fill), real training (a few steps), packing, reloading and scoring; the
LR sweep is off here (its wiring is tested in tests/bench/test_study_run.py without training).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ARGS = [
    "--arms", "q2,int8", "--budget", "50000", "--budgets", "60000", "--int8-tokens", "4096", "--seeds", "1",
    "--lr-sweep", "off", "--seq-len", "64", "--batch-tokens", "2048", "--micro-batch", "32",
    "--eval-seq-len", "64", "--eval-tokens", "2048", "--val-points", "1", "--val-tokens", "512",
    "--min-fill", "0.8",
]  # fmt: skip
# The solver's fill at these toy budgets moves with its trained-byte ratios; the 95% rule itself is
# tested in tests/bench/test_study_run.py, so this run only needs shapes that exist (>= 80%).


@pytest.fixture(scope="module")
def study(prefect_server: str, sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from golf.flows.bench import run

    out = tmp_path_factory.mktemp("study")
    assert run([*ARGS, "--data", str(sample_root), "--out", str(out)], workers=2) == 0
    return out


def test_every_unit_is_a_task_run(study: Path) -> None:
    """Each arm × budget ran as a `bench-unit` task run named after it, and completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="main-")))
    names = {r.name for r in runs if r.state is not None and r.state.is_completed()}
    assert {
        "main-q2-b50000-s1337",
        "main-int8-b50000-s1337",
        "main-q2-b60000-s1337",
        "main-int8-b60000-s1337",
    } <= names


def test_study_json_has_both_budgets_with_every_arm_filled(study: Path) -> None:
    """minigolf.json maps each budget to both arms with their checked solver fill; Δ vs int8 is q2 − int8."""
    data = json.loads((study / "minigolf.json").read_text())
    assert set(data["budgets"]) == {"50000", "60000"}
    for arms in data["budgets"].values():
        assert set(arms) == {"q2", "int8"} and all(a["solver_fill"] >= 0.8 for a in arms.values())
        assert arms["q2"]["delta_vs_int8"] == pytest.approx(
            arms["q2"]["final_bpb"] - arms["int8"]["final_bpb"]
        )


def test_report_has_a_table_per_budget_and_the_extrapolation_label(study: Path) -> None:
    """study.md: one table per budget, the verdict, and the 16 MB gap marked as an extrapolation."""
    md = (study / "study.md").read_text()
    assert "## 50,000 bytes" in md and "## 60,000 bytes" in md and "EXTRAPOLATED" in md


def test_engine_flags_are_taken_out_of_the_bench_arguments() -> None:
    """`--engine prefect --deployment D` select the engine; --workers stays for the bench too."""
    from golf.flows.cli import _engine

    assert _engine(["--engine", "prefect", "--deployment=golf-bench-arm/gpu", "--workers", "4", "--seeds", "3"]) == (
        "prefect", "golf-bench-arm/gpu", 4, ["--workers", "4", "--seeds", "3"],
    )  # fmt: skip
