"""The study's pure parts: the arm table, the LR sweep's points and choice, the held-out split, the fits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from golfmodel.bench.minigolf_data import BenchData
from golfmodel.bench.study_arms import DEFAULT_ARMS, parse_arms
from golfmodel.bench.study_fit import fit_study, ols, ranks
from golfmodel.bench.study_lr import choose_lr, split_holdout, sweep_points
from golfmodel.data.shards import read_shard, write_shard


def test_default_arms_are_plans_on_geode_except_int8_and_the_twin() -> None:
    """q2…int6 are geode × that plan with QAT; int8 is the gpt baseline; fp32-twin is q2's shape unquantised."""
    arms = {a.name: a for a in parse_arms(",".join(DEFAULT_ARMS))}
    assert [(arms[n].arch, arms[n].plan, arms[n].kind) for n in ("q2", "ternary", "int6")] == [
        ("geode", "q2", "q2-geode"), ("geode", "ternary", "q2-geode"), ("geode", "int6", "q2-geode"),
    ]  # fmt: skip
    assert (arms["int8"].arch, arms["int8"].kind) == ("gpt", "gpt-int8")
    assert (arms["fp32-twin"].shape_of, arms["fp32-twin"].kind) == ("q2", "q2-geode-fp32")


def test_a_twin_brings_its_source_arm() -> None:
    """`int4-fp32` alone adds `int4` (the twin takes its shape and tokens)."""
    assert [a.name for a in parse_arms("int4-fp32")] == ["int4", "int4-fp32"]


def test_bigram_both_runs_every_arm_twice() -> None:
    """--bigram-prior both adds `<arm>+bigram` after each arm; the +bigram twin borrows the +bigram shape."""
    arms = parse_arms("q2,fp32-twin", bigram="both")
    assert [a.name for a in arms] == ["q2", "q2+bigram", "fp32-twin", "fp32-twin+bigram"]
    assert arms[3].shape_of == "q2+bigram" and arms[3].bigram


def test_unknown_arm_names_the_known_ones() -> None:
    """A typo fails with the list of arms."""
    with pytest.raises(ValueError, match="ternary"):
        parse_arms("q2,int5")


def test_coord_sweep_tunes_adam_at_the_best_muon_lr() -> None:
    """Wave 1 varies Muon at the grid's middle Adam LR; wave 2 varies Adam at wave 1's best Muon LR."""
    w1 = sweep_points("coord", (0.02, 0.04, 0.08), (0.004, 0.008, 0.016), wave=1)
    w2 = sweep_points("coord", (0.02, 0.04, 0.08), (0.004, 0.008, 0.016), wave=2, best_muon=0.04)
    assert w1 == [(0.02, 0.008), (0.04, 0.008), (0.08, 0.008)]
    assert w2 == [(0.04, 0.004), (0.04, 0.016)]


def test_coord_wave_1_holds_adam_at_the_middle_of_any_grid() -> None:
    """The held Adam LR is the grid's middle point (the upper middle of two), not the trainer's default."""
    assert {a for _, a in sweep_points("coord", (0.04,), (0.064, 0.016, 0.032), wave=1)} == {0.032}
    assert {a for _, a in sweep_points("coord", (0.04,), (0.016, 0.032), wave=1)} == {0.032}


def test_choose_lr_takes_the_lowest_held_out_bpb() -> None:
    """The point with the lowest held-out bpb wins."""
    rows = [
        {"muon_lr": m, "adam_lr": 0.008, "holdout_bpb": b} for m, b in ((0.02, 3.1), (0.04, 3.0), (0.08, 3.2))
    ]
    assert (choose_lr(rows)["muon_lr"], len(choose_lr(rows)["points"])) == (0.04, 3)


def test_holdout_is_the_tail_of_the_training_stream_at_a_document_start(tmp_path: Path) -> None:
    """Fit + held-out shards are the training tokens split once; the held-out slice starts at BOS; val is untouched."""
    stream = np.tile(np.array([1, 5, 6, 7, 8, 9, 10, 11], dtype=np.uint16), 64)  # 64 docs of 8 tokens
    write_shard(tmp_path / "train.bin", stream)
    data = BenchData(variant="byte260", vocab_size=260, train_shards=(str(tmp_path / "train.bin"),),
                     val_shards=("/nowhere/val.bin",), tokenizer="byte260", hash="h")  # fmt: skip
    held = split_holdout(data, 100, tmp_path / "out")
    fit, tail = read_shard(held.train_shards[0]), read_shard(held.val_shards[0])
    assert np.array_equal(np.concatenate([fit, tail]), stream)
    assert tail[0] == 1 and 100 <= len(tail) < 100 + 8
    assert "/nowhere/val.bin" not in held.val_shards and held.hash != data.hash


def test_ols_through_three_points_on_a_line_predicts_exactly_with_a_zero_interval() -> None:
    """y = 1 + 2x: the prediction at x = 10 is 21 and the interval collapses."""
    f = ols([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], 10.0)
    assert f["pred"] == pytest.approx(21.0) and f["ci95"][1] - f["ci95"][0] == pytest.approx(0.0, abs=1e-9)


def test_ols_with_two_points_has_no_uncertainty() -> None:
    """Two budgets give a line but no interval (dof 0)."""
    f = ols([0.0, 1.0], [1.0, 2.0], 3.0)
    assert (f["pred"], f["ci95"], f["dof"]) == (pytest.approx(4.0), None, 0)


def _arm(params: int, bpb: float, bound: bool = True) -> dict[str, object]:
    return {"params": params, "final_bpb": bpb, "tokens": 10 * params, "budget_bound": bound}


def test_gap_is_extrapolated_to_16mb_and_labelled() -> None:
    """A gap falling by 0.1 per decade of budget from +0.2 at 10 KB reaches −0.12 at 16 MB (log-linear)."""
    budgets = {
        b: {"q2": _arm(b, 3.0 + g), "int8": _arm(b // 3, 3.0)}
        for b, g in ((10_000, 0.2), (100_000, 0.1), (1_000_000, 0.0))
    }
    gap = fit_study(budgets)["gap"]
    assert gap["at_16mb"] == pytest.approx(-0.1 * math.log10(16e6 / 1e6))
    assert "EXTRAPOLATION" in gap["label"] and gap["factor_bytes"] == 16


def test_ranks_leave_out_fp32_twins() -> None:
    """fp32 twins are not budget-bound, so they are not ranked."""
    assert ranks({"q2": _arm(1, 2.0), "fp32-twin": _arm(1, 1.0, False), "int8": _arm(1, 1.5)}) == {
        "int8": 1,
        "q2": 2,
    }


def test_a_bigram_arm_is_compared_with_the_bigram_int8_arm() -> None:
    """Δ vs int8 pairs arms of the same prior setting: q2+bigram against int8+bigram, q2 against int8."""
    from golfmodel.bench.study import baseline_of
    from golfmodel.bench.study_arms import parse_arm

    assert (baseline_of(parse_arm("q2+bigram")), baseline_of(parse_arm("q2"))) == ("int8+bigram", "int8")


def test_a_lever_arm_brings_its_base_and_takes_its_plan() -> None:
    """`q2-learned~no-avg` is geode × q2-learned with the no-avg lever; its base arm is added first."""
    from golfmodel.bench.study_arms import parse_arms

    arms = parse_arms("q2-learned~no-avg,int8")
    assert [a.name for a in arms] == ["q2-learned", "q2-learned~no-avg", "int8"]
    assert (arms[1].plan, arms[1].lever, arms[1].base) == ("q2-learned", "no-avg", "q2-learned")


@pytest.mark.parametrize("name", ["int8~no-avg", "fp32-twin~no-avg", "q2~bigram", "q2~quant.plan=int4"])
def test_a_lever_on_a_non_geode_arm_or_a_plan_change_is_refused(name: str) -> None:
    """Levers change training of a quantised geode arm; plans and the prior have arms of their own."""
    from golfmodel.bench.study_arms import parse_arms

    with pytest.raises(ValueError, match=name.replace("+", r"\+")):
        parse_arms(name)
