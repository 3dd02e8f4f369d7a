"""The minigolf bench's matching arithmetic, options and ablation parsing (no training)."""

from __future__ import annotations

import pytest

from golfmodel.bench import minigolf as mg


def test_matched_tokens_scale_with_the_square_root_of_the_parameter_ratio() -> None:
    """An arm with 4x the int8 arm's parameters gets half its tokens."""
    assert mg.matched_tokens(1_000_000, 100, 400) == 500_000


def test_matched_tokens_of_the_int8_shape_are_the_int8_tokens() -> None:
    """Equal parameter counts get equal tokens."""
    assert mg.matched_tokens(123_456, 777, 777) == 123_456


def test_steps_round_to_the_global_batch_and_never_reach_zero() -> None:
    """Tokens / batch is rounded, with at least one step."""
    assert (mg.steps_for(20_000, 8192), mg.steps_for(10, 8192)) == (2, 1)


def test_int8_keep_float_threshold_scales_with_the_budget() -> None:
    """65,536 elements at 16,000,000 bytes is 492 at 120,000 bytes (so matrices become int8 rows)."""
    assert mg.BenchConfig(budget_bytes=120_000).int8_keep_float_numel == 492
    assert mg.BenchConfig(int8_keep_float=65_536).int8_keep_float_numel == 65_536


def test_expand_ablations_splits_lists_and_expands_all() -> None:
    """'all' is every ablation once; comma lists keep their order."""
    assert mg.expand_ablations(["tau-std,no-avg", "tau-std"]) == ("tau-std", "no-avg")
    every = mg.expand_ablations(["all"])
    assert every == tuple(n for n in mg.ABLATION_NAMES if n != "sub-norm")


def test_expand_all_takes_the_subln_toggle_that_changes_the_block() -> None:
    """With SubLN on (the default) `all` holds no-sub-norm; with it off, sub-norm."""
    assert "no-sub-norm" in mg.expand_ablations(["all"]) and "sub-norm" not in mg.expand_ablations(["all"])
    off = mg.expand_ablations(["all"], sub_norm=False)
    assert "sub-norm" in off and "no-sub-norm" not in off


def test_an_ablation_equal_to_the_bench_block_is_refused() -> None:
    """sub-norm on a bench whose geode blocks already have SubLN is a row equal to its base: refused."""
    with pytest.raises(ValueError, match="changes nothing"):
        mg.BenchConfig(ablations=("sub-norm",))
    mg.BenchConfig(ablations=("no-sub-norm",))
    mg.BenchConfig(ablations=("sub-norm",), sub_norm=False)
    mg.BenchConfig(ablations=("model.sub_norm=true+qat.enabled=false",))  # the SubLN twin: a change


def test_qat_start_ablation_takes_a_fraction() -> None:
    """qat-start=0.3 overrides QATConfig.start_frac."""
    ab = mg.parse_ablation("qat-start=0.3")
    assert ab.qat == {"start_frac": 0.3} and ab.name == "qat-start=0.3"


def test_override_ablation_sets_trainer_fields_joined_by_plus() -> None:
    """optim.muon_lr=0.04+schedule.f1=0.4+schedule.f2=0.3 overrides those fields, values as JSON."""
    ab = mg.parse_ablation("optim.muon_lr=0.04+schedule.f1=0.4+schedule.f2=0.3")
    assert (ab.optim, ab.schedule, ab.qat) == ({"muon_lr": 0.04}, {"f1": 0.4, "f2": 0.3}, {})


def test_model_override_is_limited_to_the_fields_the_solver_resizes() -> None:
    """model.sub_norm=true is a model override; model.d_model=... is rejected (the solver owns the width)."""
    assert mg.parse_ablation("model.sub_norm=true+qat.enabled=false").model == {"sub_norm": True}
    with pytest.raises(ValueError, match="d_model"):
        mg.parse_ablation("model.d_model=96")


def test_override_ablation_with_an_unknown_field_is_rejected_at_parse_time() -> None:
    """A misspelt trainer field fails when the bench is configured, naming the ablation."""
    with pytest.raises(ValueError, match="optim.muon_rl=0.04"):
        mg.BenchConfig(ablations=("optim.muon_rl=0.04",))


def test_override_ablation_with_an_invalid_value_names_the_field() -> None:
    """Phase fractions that do not sum to 1 are rejected by the trainer's own check."""
    with pytest.raises(ValueError, match="f1 \\+ f2 \\+ f3 must sum to 1"):
        mg.parse_ablation("schedule.f1=0.5")


def test_unknown_ablation_is_rejected_with_the_known_names() -> None:
    """A typo names the valid ablations."""
    with pytest.raises(ValueError, match="gqa-only"):
        mg.BenchConfig(ablations=("gqa-onyl",))


def test_shard_variant_comes_from_the_official_folder_name() -> None:
    """fineweb10B_byte260/ shards are byte260; fineweb10B_sp1024/ shards are sp1024."""
    assert mg.shard_variant("/d/fineweb10B_byte260/fineweb_val_000000.bin") == "byte260"
    assert mg.shard_variant("/d/fineweb10B_sp1024/fineweb_val_000000.bin") == "sp1024"


def test_solver_shape_below_the_minimum_fill_is_rejected(tmp_path, monkeypatch) -> None:
    """A solver plan filling less than min_fill of the budget stops the bench with the fill named."""
    from golfmodel.model import budget

    def half_full(arm: str, vocab: int, budget_bytes: int, **kw: object) -> budget.Plan:
        cfg = budget.make_config(arm, vocab, 32, 1)
        return budget.Plan(config=cfg, params=1, artifact_bytes=budget_bytes // 2, code_bytes=0,
                           budget_bytes=budget_bytes, fill=0.5, estimate_bytes=0, confirmed=True)  # fmt: skip

    monkeypatch.setattr(budget, "solve", half_full)
    with pytest.raises(ValueError, match="fills 50.0%"):
        mg.solve_shape("q2-geode", 260, mg.BenchConfig(), tmp_path / "solver.json")


def test_quant_plan_override_is_a_plan_name_checked_at_parse_time() -> None:
    """quant.plan=q2-mixed is a quant override; an unknown plan or quant field is rejected with the names."""
    ab = mg.parse_ablation("quant.plan=q2-mixed")
    assert ab.quant == {"plan": "q2-mixed"}
    with pytest.raises(ValueError, match="quant.plan must be one of"):
        mg.parse_ablation("quant.plan=int5")
    with pytest.raises(ValueError, match="quant overrides must be among"):
        mg.parse_ablation("quant.calib_batches=8")


def test_settings_quant_fields_reach_the_trainer_and_recalibration() -> None:
    """quant.tau_method / quant.recalibrate mean what the pipeline's settings of those names mean."""
    ab = mg.parse_ablation("quant.tau_method=std+quant.recalibrate=off")
    assert ab.qat == {"tau_method": "std"} and ab.recalibrate == "off" and ab.quant == {}


def test_a_plan_override_solves_on_the_alias_arm(tmp_path) -> None:
    """solve_shape("q2-geode", plan=...) sizes that plan on the geode architecture (no alias clash)."""
    plan = mg.solve_shape("q2-geode", 260, mg.BenchConfig(), tmp_path / "solver.json", plan="int6")
    assert plan["plan"] == "int6" and plan["config"]["arm"] == "geode" and plan["fill"] >= 0.9
