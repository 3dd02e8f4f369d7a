"""Budget solver and `model plan` CLI on tiny budgets (the 16 MB table is run by hand; see docs/minigolf.md)."""

from __future__ import annotations

import json

import pytest

from golfmodel.model import build_model
from golfmodel.model.budget import BudgetError, measure, predict_bytes, solve
from golfmodel.model.cli import main as cli_main
from golfmodel.model.probe import estimate
from golfmodel.model.trained_ratio import TrainedRatios, load_ratios

TINY = 100_000  # bytes; byte260 vocabulary


@pytest.mark.parametrize(("arch", "plan"), [("geode", "q2"), ("gpt", "int8")])
def test_tiny_budget_fits_and_fills(arch: str, plan: str) -> None:
    """At 100 KB / vocab 260 the predicted trained artifact fits under the margin and fills >= 95%."""
    p = solve(arch, 260, TINY, plan=plan, groups=1 if arch == "geode" else None, confirm=False)
    assert p.artifact_bytes <= TINY * (1 - p.margin_frac)
    assert p.fill >= 0.95
    assert p.fill == pytest.approx(p.artifact_bytes / TINY)
    assert p.params == sum(t.numel() for t in build_model(p.config).parameters())


@pytest.mark.parametrize("plan", ["ternary", "int4", "int6"])
def test_every_named_geode_plan_solves(plan: str) -> None:
    """Each named block plan gets a shape filling >= 95% of a tiny budget, built with that plan's layers."""
    p = solve("geode", 260, 400_000, plan=plan, groups=1, confirm=False)
    assert p.fill >= 0.95 and p.config.quant_plan.name == plan


def test_artifact_bytes_follow_the_trained_ratios() -> None:
    """artifact_bytes is the per-kind trained-ratio prediction; better-compressing kinds buy a bigger model."""
    one = TrainedRatios({"int8zlib": {"int8": 1.0, "fp16": 1.0}})  # at 100 KB most tensors stay fp16
    half = TrainedRatios({"int8zlib": {"int8": 0.5, "fp16": 0.5}})
    a = solve("gpt", 260, TINY, groups=2, ratios=one, confirm=False)
    b = solve("gpt", 260, TINY, groups=2, ratios=half, confirm=False)
    assert b.params > a.params
    assert b.artifact_bytes == predict_bytes(estimate(b.config), "int8zlib", half)


def test_packed_init_bytes_is_what_the_packer_measures() -> None:
    """confirm=True packs the chosen shape's random init for real: packed_init_bytes, not the prediction."""
    plan = solve("gpt-int8", 260, 60_000, groups=2)
    assert plan.confirmed and measure(plan.config) == plan.packed_init_bytes


def test_margin_frac_is_kept_free() -> None:
    """A 5% margin keeps the predicted artifact under 95% of the budget."""
    plan = solve("geode", 260, 300_000, groups=1, margin_frac=0.05, confirm=False)
    assert plan.artifact_bytes <= 0.95 * 300_000 and plan.fill >= 0.90


def test_code_bytes_count_against_the_budget() -> None:
    """artifact + code stays within the budget and fill includes the code."""
    plan = solve("gpt-int8", 260, TINY, groups=2, code_bytes=30_000, confirm=False)
    assert plan.artifact_bytes + 30_000 <= TINY
    assert plan.fill == pytest.approx((plan.artifact_bytes + 30_000) / TINY)


def test_fixed_groups_are_kept() -> None:
    """groups= fixes the depth; the width is still solved."""
    plan = solve("q2-geode", 260, 300_000, groups=2, confirm=False)
    assert plan.config.depth == 2 and not plan.confirmed
    assert plan.config.n_kv_heads < plan.config.n_heads


def test_bigram_prior_is_counted() -> None:
    """With a (V, V) int8 prior in the artifact the model gets narrower."""
    plain = solve("q2-geode", 260, 200_000, groups=1, confirm=False)
    prior = solve("q2-geode", 260, 200_000, groups=1, confirm=False, bigram_prior=True)
    assert prior.config.bigram_prior and prior.params < plain.params


def test_too_small_a_budget_raises() -> None:
    """A budget below the smallest model is a BudgetError naming the budget."""
    with pytest.raises(BudgetError, match="1000"):
        solve("q2-geode", 260, 1_000)


def test_unknown_ratio_kinds_fall_back_to_no_compression() -> None:
    """An unmeasured kind predicts ratio 1.0; a group label falls back to its bit width's ratio."""
    r = TrainedRatios({"q2bn": {"int4": 0.7}})
    assert r.ratio("q2bn", "fp8") == 1.0 and r.ratio("q2bn", "int4g64") == 0.7
    shipped = load_ratios()
    assert 0 < shipped.ratio("q2bn", "q2") <= 1.0 and "trained_ratio.json" in shipped.source


def test_plan_json_keeps_the_alias_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """`model plan --arm gpt-int8 --json` prints one line with the old keys plus the trained-size keys."""
    rc = cli_main(
        [
            "model",
            "plan",
            "--arm",
            "gpt-int8",
            "--budget",
            str(TINY),
            "--vocab",
            "260",
            "--json",
            "--no-confirm",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and out.count("\n") == 1
    data = json.loads(out)
    for key in (
        "params",
        "artifact_bytes",
        "budget_bytes",
        "fill",
        "config",
        "packed_init_bytes",
        "trained_ratio",
    ):
        assert key in data
    assert data["config"]["arm"] == "gpt-int8" and data["artifact_bytes"] <= TINY


def test_plan_table_shows_shape_and_fill(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the plan is a table with the arch, plan, shape, params and fill."""
    argv = ["model", "plan", "--arch", "geode", "--quant", "int4", "--budget", "300000", "--vocab", "260"]
    rc = cli_main([*argv, "--groups", "1", "--no-confirm"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "plan int4" in out and "d_model" in out and "params:" in out and "fill" in out


def test_plan_cli_reports_a_budget_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An impossible budget exits 1 with a one-line error on stderr."""
    rc = cli_main(
        ["model", "plan", "--arm", "q2-geode", "--budget", "1000", "--vocab", "260", "--no-confirm"]
    )
    assert rc == 1 and "error" in capsys.readouterr().err


def test_q2_mixed_needs_a_sensitivity_file(capsys: pytest.CaptureFixture[str]) -> None:
    """--quant q2-mixed without --sensitivity is an error that says how to make the table."""
    rc = cli_main(["model", "plan", "--quant", "q2-mixed", "--budget", "300000", "--vocab", "260"])
    assert rc == 1 and "golf model probe" in capsys.readouterr().err
