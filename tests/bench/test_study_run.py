"""The study's wiring with a recording executor (no training): sweep on held-out training tokens, LR hand-over, JSON.

The solver is a fixed tiny plan (width grows with the budget) and the executor returns a made-up
score per unit: sweep units score best at muon 0.04 / adam 0.004, so the choice is checkable.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from golfmodel.bench.minigolf_arm import ArmSpec
from golfmodel.bench.minigolf_config import BenchConfig
from golfmodel.bench.minigolf_data import BenchData
from golfmodel.bench.study import run_study
from golfmodel.bench.study_plan import StudyConfig
from golfmodel.bench.study_report import PUBLIC_KEYS
from golfmodel.model import budget

ARM_KEYS = {"plan", "params", "artifact_bytes", "budget_bytes", "fill", "tokens", "tokens_per_param", "lr",
            "prequant_bpb", "final_bpb", "final_bpb_std"}  # fmt: skip


def fake_solve(arm: str, vocab: int, budget_bytes: int, **kw: Any) -> budget.Plan:
    """A width-32 (40 KB) or width-48 plan of the asked arm × plan that fills 96% of the budget."""
    plan = kw.get("plan") if arm != "gpt-int8" else None
    shrunk = (
        kw.get("ratios") is not None and kw["ratios"].container("int8zlib") > 1.1
    )  # a refit's scaled sizes
    cfg = budget.make_config(arm, vocab, 32 if budget_bytes < 50_000 or shrunk else 48, 1, plan=plan, pattern="GC",
                             sub_norm=kw.get("sub_norm", False))  # fmt: skip
    return budget.Plan(
        config=cfg, params=0, artifact_bytes=int(0.96 * budget_bytes), code_bytes=0, budget_bytes=budget_bytes,
        fill=0.96, estimate_bytes=1, confirmed=True, trained_ratio=1.0,
    )  # fmt: skip


class Recorder:
    """An executor that records every unit and returns a made-up result for it.

    overfill: an arm name whose width-48 model's artifact comes out at 125% of its budget;
    underfill: one whose artifacts always come out at 90% (the fake solver has no bigger shape).
    """

    def __init__(self, overfill: str | None = None, underfill: str | None = None) -> None:
        self.specs: list[ArmSpec] = []
        self.overfill, self.underfill = overfill, underfill

    def __call__(self, specs: list[ArmSpec]) -> dict[str, dict[str, Any]]:
        self.specs += specs
        out = {}
        for s in specs:
            x = s.extra
            bpb = (
                3.0 + abs(x["muon_lr"] - 0.04) + abs(x["adam_lr"] - 0.004) + (0.1 if s.name == "q2" else 0.0)
            )
            steps = int(s.job["train"]["max_steps"])
            tokens = steps * int(s.job["train"]["global_batch_tokens"])
            over = s.name == self.overfill and s.job["model"]["d_model"] == 48
            out[s.key] = {
                "seed": s.seed, "params": 1000 + x["budget"] // 100,
                "artifact_bytes": int((1.25 if over else 0.90 if s.name == self.underfill else 0.97) * x["budget"]),
                "steps": steps, "tokens": tokens, "tokens_per_s": 1.0, "train_seconds": 1.0, "prequant_bpb": bpb,
                "final_bpb": bpb, "prequant_nll": 1.0, "final_nll": 1.0, "recalibration": None, "curve": [],
                "cached": False, "model": s.job["model"], "n_targets": 100, "n_bytes": 100,
            }  # fmt: skip
        return out


def _run(out: Path, sample_root: Path, **kw: Any) -> tuple[dict[str, Any], Recorder, Path]:
    sp = sample_root / "datasets" / "datasets" / "fineweb10B_sp1024"
    data = BenchData(variant="sp1024", vocab_size=1024, train_shards=(str(sp / "fineweb_train_000000.bin"),),
                     val_shards=(str(sp / "fineweb_val_000000.bin"),), tokenizer="byte260", hash="sample")  # fmt: skip
    bench = BenchConfig(
        int8_tokens=8192,
        seq_len=64,
        global_batch_tokens=1024,
        micro_batch_seqs=16,
        workers=1,
        seeds=kw.pop("seeds", 1),
        budget_bytes=kw.pop("budget", 40_000),
    )
    overfill, underfill = kw.pop("overfill", None), kw.pop("underfill", None)
    solve = kw.pop("solve", fake_solve)
    cfg = StudyConfig(bench=bench, budgets=kw.pop("budgets", (60_000,)), muon_lrs=(0.02, 0.04),
                      adam_lrs=(0.004, 0.008), holdout_tokens=4096, **kw)  # fmt: skip
    rec = Recorder(overfill, underfill)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget, "solve", solve)
        result = run_study(cfg, data, out, execute=rec, log=lambda s: None)
    return result, rec, sp / "fineweb_val_000000.bin"


@pytest.fixture(scope="module")
def study(
    tmp_path_factory: pytest.TempPathFactory, sample_root: Path
) -> tuple[dict[str, Any], Recorder, Path]:
    return _run(tmp_path_factory.mktemp("study"), sample_root, arms=("fp32-twin", "q2", "int8"))


@pytest.fixture(scope="module")
def levers(
    tmp_path_factory: pytest.TempPathFactory, sample_root: Path
) -> tuple[dict[str, Any], Recorder, Path]:
    """Two lever arms of q2, two seeds, the sweep at the main budget only."""
    arms = ("q2~no-avg", "q2~no-sub-norm", "int8")
    return _run(tmp_path_factory.mktemp("levers"), sample_root, arms=arms, sweep_at="main", seeds=2)


def test_sweep_units_are_scored_on_held_out_training_tokens(study) -> None:
    """No sweep unit trains or scores on a validation shard."""
    _, rec, val = study
    sweep = [s for s in rec.specs if s.group == "sweep"]
    assert sweep and all(
        str(val) not in (*s.val_shards, *s.job["val_shards"], *s.job["train_shards"]) for s in sweep
    )


def test_main_units_take_the_chosen_lr_and_twins_their_arm_s(study) -> None:
    """The best sweep point (0.04 / 0.004) trains every main unit; the twin has q2's LR (no sweep of its own)."""
    result, rec, _ = study
    main = [s for s in rec.specs if s.group == "main"]
    assert {(s.job["optim"]["muon_lr"], s.job["optim"]["adam_lr"]) for s in main} == {(0.04, 0.004)}
    assert not [s for s in rec.specs if s.group == "sweep" and s.name == "fp32-twin"]
    assert result["arms"]["fp32-twin"]["lr"] == {"muon": 0.04, "adam": 0.004}


def test_study_json_keeps_the_3_arm_keys_and_adds_arms_and_budgets(study) -> None:
    """minigolf.json: q2-geode, q2-geode-fp32, gpt-int8, penalty/gain with p, `arms` and `budgets`."""
    result, _, _ = study
    on_disk = json.loads((Path(result["details"]["out_dir"]) / "minigolf.json").read_text())
    assert set(on_disk) == set(PUBLIC_KEYS)
    assert {
        "q2-geode",
        "q2-geode-fp32",
        "gpt-int8",
        "penalty_bpb",
        "gain_bpb",
        "p_penalty",
        "p_gain",
        "arms",
        "budgets",
    } <= set(result)
    assert all(ARM_KEYS <= set(e) for e in result["arms"].values())
    assert set(result["budgets"]) == {"40000", "60000"}
    assert result["penalty_bpb"] == pytest.approx(0.1)


def test_int8_tokens_per_param_are_kept_across_budgets(study) -> None:
    """The int8 arm's planned tokens grow with its parameter count (to the global batch)."""
    _, rec, _ = study
    i8 = {s.extra["budget"]: s for s in rec.specs if s.group == "main" and s.name == "int8"}
    from golfmodel.bench.minigolf_plan import _param_count

    tpp = {b: s.job["train"]["max_steps"] * 1024 / _param_count(s.job["model"]) for b, s in i8.items()}
    assert tpp[60_000] == pytest.approx(tpp[40_000], rel=0.05)


def _short_int4_study(tmp_path: Path, sample_root: Path, fill: float, log: Any) -> dict[str, Any]:
    """run_study over int4 + int8 with a solver whose int4 shape fills `fill` of the budget."""
    sp = sample_root / "datasets" / "datasets" / "fineweb10B_sp1024"
    data = BenchData(variant="sp1024", vocab_size=1024, train_shards=(str(sp / "fineweb_train_000000.bin"),),
                     val_shards=(str(sp / "fineweb_val_000000.bin"),), tokenizer="byte260", hash="sample")  # fmt: skip

    def int4_short(arm: str, vocab: int, budget_bytes: int, **kw: Any) -> budget.Plan:
        p = fake_solve(arm, vocab, budget_bytes, **kw)
        return dataclasses.replace(p, fill=fill) if kw.get("plan") == "int4" else p

    cfg = StudyConfig(bench=BenchConfig(budget_bytes=40_000), arms=("int4", "int8"), lr_sweep="off")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget, "solve", int4_short)
        return run_study(cfg, data, tmp_path, execute=Recorder(), log=log)


def test_an_arm_below_the_solver_floor_stops_the_study_naming_it(tmp_path: Path, sample_root: Path) -> None:
    """A solver shape under 90% of the budget fails planning with the arm, plan and budget named."""
    with pytest.raises(ValueError, match=r"arm int4 \(plan int4\) at 40,000 bytes: .*fills 89.0%"):
        _short_int4_study(tmp_path, sample_root, 0.89, lambda s: None)


def test_an_arm_the_solver_cannot_fill_to_the_minimum_runs_flagged(tmp_path: Path, sample_root: Path) -> None:
    """A first solve at 94% (no fuller shape on the solver's grid) trains, and the log flags it ⚠."""
    lines: list[str] = []
    result = _short_int4_study(tmp_path, sample_root, 0.94, lines.append)
    flagged = [ln for ln in lines if "int4" in ln and "solver fill 94.0%" in ln]
    assert flagged and "⚠ below the 95% minimum" in flagged[0] and "int4" in result["arms"]


def test_plan_only_table_marks_the_points_the_study_would_refuse(tmp_path: Path, sample_root: Path) -> None:
    """--plan-only lists every arm's solver fill per budget and flags those under the minimum."""
    from golfmodel.bench.study_plan import fill_table

    sp = sample_root / "datasets" / "datasets" / "fineweb10B_sp1024"
    data = BenchData(variant="sp1024", vocab_size=1024, train_shards=(str(sp / "fineweb_train_000000.bin"),),
                     val_shards=(str(sp / "fineweb_val_000000.bin"),), tokenizer="byte260", hash="sample")  # fmt: skip

    def int4_short(arm: str, vocab: int, budget_bytes: int, **kw: Any) -> budget.Plan:
        p = fake_solve(arm, vocab, budget_bytes, **kw)
        return dataclasses.replace(p, fill=0.90) if kw.get("plan") == "int4" else p

    cfg = StudyConfig(bench=BenchConfig(budget_bytes=40_000), arms=("int4", "int8"), lr_sweep="off")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(budget, "solve", int4_short)
        table = fill_table(cfg, data, tmp_path)
    assert "90.00%" in table and "⚠" in table and "96.00%" in table


def test_lever_arms_run_at_the_main_budget_only_with_their_base_s_lr(levers) -> None:
    """Ablation rows: only at 40 KB (the main budget), at q2's chosen LR, never swept themselves."""
    _, rec, _ = levers
    lever = [s for s in rec.specs if "~" in s.name]
    assert lever and {s.extra["budget"] for s in lever} == {40_000} and all(s.group == "main" for s in lever)
    assert {(s.job["optim"]["muon_lr"], s.job["optim"]["adam_lr"]) for s in lever} == {(0.04, 0.004)}


def test_a_lever_arm_carries_its_override_and_a_model_lever_its_re_solved_shape(levers) -> None:
    """q2~no-avg trains without averaging on q2's shape; q2~no-sub-norm is re-solved without SubLN."""
    _, rec, _ = levers
    by = {
        s.name: s for s in rec.specs if s.group == "main" and s.extra["budget"] == 40_000 and s.seed == 1337
    }
    assert by["q2~no-avg"].job["averaging"]["kind"] == "none" and by["q2"].job["averaging"]["kind"] != "none"
    assert by["q2~no-avg"].job["model"] == by["q2"].job["model"]
    assert by["q2"].job["model"]["sub_norm"] and not by["q2~no-sub-norm"].job["model"]["sub_norm"]


def test_geode_arms_have_subln_and_the_int8_baseline_never(levers) -> None:
    """The bench's block (sub_norm on by default) reaches every geode arm; gpt-int8 stays the baseline's."""
    _, rec, _ = levers
    sub = {s.name: s.job["model"]["sub_norm"] for s in rec.specs if s.group == "main"}
    assert sub["q2"] and sub["q2~no-avg"] and not sub["q2~no-sub-norm"] and not sub["int8"]


def test_sweep_at_main_sweeps_one_budget_and_the_trend_takes_its_choice(levers) -> None:
    """With sweep_at=main no sweep unit runs at 60 KB, and the 60 KB units train at the 40 KB choice."""
    _, rec, _ = levers
    assert {s.extra["budget"] for s in rec.specs if s.group == "sweep"} == {40_000}
    trend = [s for s in rec.specs if s.group == "main" and s.extra["budget"] == 60_000]
    assert trend and {(s.job["optim"]["muon_lr"], s.job["optim"]["adam_lr"]) for s in trend} == {
        (0.04, 0.004)
    }


def test_lever_rows_report_their_delta_against_the_base_paired_by_seed(levers) -> None:
    """Δ vs base (the made-up scores put q2 0.1 above its levers), a paired p, and the report's lever table."""
    result, _, _ = levers
    row = result["arms"]["q2~no-avg"]
    assert (
        row["base"] == "q2" and row["delta_vs_base"] == pytest.approx(-0.1) and row["p_vs_base"] is not None
    )
    assert "~" not in "".join(result["budgets"]["60000"])
    md = (Path(result["details"]["out_dir"]) / "study.md").read_text()
    assert "### Levers at 40,000 bytes" in md and "| no-avg | q2~no-avg | q2 |" in md


def test_an_arm_over_its_budget_is_re_solved_and_retrained_keeping_its_tokens(
    tmp_path: Path, sample_root: Path
) -> None:
    """int8's first artifact at 60 KB is 125% of it: re-solved (width 48 → 32), all its seeds retrained."""
    result, rec, _ = _run(tmp_path, sample_root, arms=("q2", "int8"), budget=60_000, budgets=(), seeds=2,
                          lr_sweep="off", overfill="int8")  # fmt: skip
    (refit,) = result["details"]["refits"]
    assert (refit["arm"], refit["budget"], refit["trained_bytes"]) == ("int8", 60_000, 75_000)
    assert refit["scale"] == pytest.approx(75_000 / 57_600 * 1.01)
    final = [s for s in rec.specs if s.name == "int8" and s.job["model"]["d_model"] == 32]
    first = next(s for s in rec.specs if s.name == "int8" and s.job["model"]["d_model"] == 48)
    assert {s.seed for s in final} == {1337, 1338}
    assert {s.job["train"]["max_steps"] for s in final} == {first.job["train"]["max_steps"]}
    assert result["arms"]["int8"]["fill_ok"] and result["arms"]["int8"]["fill"] == pytest.approx(0.97)
    assert "## Fit to trained bytes" in (Path(result["details"]["out_dir"]) / "study.md").read_text()


def test_an_int8_refit_is_never_shallower_than_its_first_shape(tmp_path: Path, sample_root: Path) -> None:
    """An overfilled int8 arm's re-solve that picks fewer layers is solved again at the first shape's depth.

    (At 16 M tokens the int8 refit had gone from 2 layers to 1: 2.1% more parameters, past the
    solver's 2% depth tolerance.) The fake solver gives 2 layers unscaled and 1 when scaled.
    """
    calls: list[tuple[Any, bool]] = []

    def shallower(arm: str, vocab: int, budget_bytes: int, **kw: Any) -> budget.Plan:
        calls.append((kw.get("groups"), kw.get("ratios") is not None))
        p = fake_solve(arm, vocab, budget_bytes, **kw)
        depth = kw.get("groups") or (1 if kw.get("ratios") is not None else 2)
        return dataclasses.replace(p, config=dataclasses.replace(p.config, depth=depth))

    _, rec, _ = _run(tmp_path, sample_root, arms=("q2", "int8"), budget=60_000, budgets=(), lr_sweep="off",
                     overfill="int8", solve=shallower)  # fmt: skip
    assert [g for g, scaled in calls if scaled] == [None, 2]  # the refit: the solver's pick, then depth 2
    assert {s.job["model"]["depth"] for s in rec.specs if s.name == "int8"} == {2}


def test_a_geode_refit_takes_the_solver_s_own_depth(tmp_path: Path, sample_root: Path) -> None:
    """A geode depth is a group of four blocks: an overfilled q2 arm's re-solve keeps the solver's pick."""
    calls: list[tuple[str, Any, bool]] = []

    def shallower(arm: str, vocab: int, budget_bytes: int, **kw: Any) -> budget.Plan:
        calls.append((arm, kw.get("groups"), kw.get("ratios") is not None))
        p = fake_solve(arm, vocab, budget_bytes, **kw)
        depth = kw.get("groups") or (1 if kw.get("ratios") is not None else 2)
        return dataclasses.replace(p, config=dataclasses.replace(p.config, depth=depth))

    _, rec, _ = _run(tmp_path, sample_root, arms=("q2", "int8"), budget=60_000, budgets=(), lr_sweep="off",
                     overfill="q2", solve=shallower)  # fmt: skip
    assert [(a, g) for a, g, scaled in calls if scaled] == [("geode", None)]
    assert {s.job["model"]["depth"] for s in rec.specs if s.name == "q2"} == {1, 2}


def test_an_arm_that_fits_is_not_refitted(study) -> None:
    """Every made-up artifact of the default fixture lands at 97%: no refit, one unit (key) per arm x budget x seed.

    (The fit round's units are the main table's first seed again: the real executor reads them back.)
    """
    result, rec, _ = study
    assert result["details"]["refits"] == []
    keys: dict[tuple[str, int, int], set[str]] = {}
    for s in rec.specs:
        if s.group == "main":
            keys.setdefault((s.name, s.extra["budget"], s.seed), set()).add(s.key)
    assert keys and all(len(k) == 1 for k in keys.values())


def test_an_arm_the_solver_cannot_place_closer_keeps_its_shape_flagged(
    tmp_path: Path, sample_root: Path
) -> None:
    """An under-filled arm whose re-solve gives the same shape is not retrained; its row is flagged, the study ends."""
    result, rec, _ = _run(tmp_path, sample_root, arms=("q2", "int8"), budget=60_000, budgets=(), lr_sweep="off",
                          overfill=None, underfill="q2")  # fmt: skip
    assert result["details"]["refits"] == []
    assert not result["arms"]["q2"]["fill_ok"] and result["arms"]["int8"]["fill_ok"]
    assert len({s.key for s in rec.specs if s.name == "q2"}) == 1
