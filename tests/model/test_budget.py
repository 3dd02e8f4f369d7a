"""Budget solver and `model plan` CLI on tiny budgets (the 16 MB confirmation is run by hand; see docs)."""

from __future__ import annotations

import json

import pytest

from golfmodel.model import build_model
from golfmodel.model.budget import BudgetError, measure, solve
from golfmodel.model.cli import main as cli_main

TINY = 100_000  # bytes; byte260 vocabulary


@pytest.mark.parametrize("arm", ["q2-geode", "gpt-int8"])
def test_tiny_budget_fits_and_fills(arm: str) -> None:
    """At 100 KB / vocab 260 the confirmed artifact fits and fills at least 90% of the budget."""
    plan = solve(arm, 260, TINY)
    assert plan.confirmed
    assert plan.artifact_bytes <= TINY
    assert plan.fill >= 0.90
    assert plan.fill == pytest.approx(plan.artifact_bytes / TINY)
    assert plan.params == sum(p.numel() for p in build_model(plan.config).parameters())


def test_plan_size_is_what_the_packer_measures() -> None:
    """The plan's artifact_bytes is the real packer's size of that shape (not the estimate)."""
    plan = solve("gpt-int8", 260, 60_000)
    assert measure(plan.config) == plan.artifact_bytes


def test_code_bytes_count_against_the_budget() -> None:
    """artifact + code stays within the budget and fill includes the code."""
    plan = solve("gpt-int8", 260, TINY, code_bytes=30_000)
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


def test_a_real_bigram_table_is_packed_instead_of_noise() -> None:
    """A smooth (compressible) bigram table leaves more bytes to the network than a random one."""
    import numpy as np

    smooth = np.log(np.full((260, 260), 1 / 260, dtype=np.float32))
    noise = solve("q2-geode", 260, 120_000, bigram_prior=True)
    real = solve("q2-geode", 260, 120_000, bigram_prior=True, bigram_logprior=smooth)
    assert real.artifact_bytes <= 120_000 and real.params > noise.params


def test_a_bigram_table_file_sizes_like_the_array(tmp_path) -> None:
    """solve() takes the table's file (as the pipeline and the bench pass it) as well as the array."""
    import numpy as np

    smooth = np.log(np.full((260, 260), 1 / 260, dtype=np.float32))
    np.save(tmp_path / "logprob.npy", smooth)
    kw = {"groups": 1, "bigram_prior": True}
    from_file = solve("q2-geode", 260, 120_000, bigram_logprior=tmp_path / "logprob.npy", **kw)
    assert from_file == solve("q2-geode", 260, 120_000, bigram_logprior=smooth, **kw)


def test_too_small_a_budget_raises() -> None:
    """A budget below the smallest model is a BudgetError naming the budget."""
    with pytest.raises(BudgetError, match="1000"):
        solve("q2-geode", 260, 1_000)


def test_plan_json_is_one_line_with_the_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """`model plan --json` prints exactly one line of JSON with params, bytes, budget, fill and config."""
    rc = cli_main(["model", "plan", "--arm", "gpt-int8", "--budget", str(TINY), "--vocab", "260", "--json"])
    out = capsys.readouterr().out
    assert rc == 0 and out.count("\n") == 1
    data = json.loads(out)
    for key in ("params", "artifact_bytes", "budget_bytes", "fill", "config"):
        assert key in data
    assert (
        data["budget_bytes"] == TINY
        and data["artifact_bytes"] <= TINY
        and data["config"]["arm"] == "gpt-int8"
    )


def test_plan_table_shows_shape_and_fill(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the plan is a table with the shape, params and fill."""
    rc = cli_main(
        [
            "model",
            "plan",
            "--arm",
            "q2-geode",
            "--budget",
            "300000",
            "--vocab",
            "260",
            "--groups",
            "1",
            "--no-confirm",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "d_model" in out and "params:" in out and "fill" in out and "ESTIMATE" in out


def test_plan_cli_reports_a_budget_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An impossible budget exits 1 with a one-line error on stderr."""
    rc = cli_main(
        ["model", "plan", "--arm", "q2-geode", "--budget", "1000", "--vocab", "260", "--no-confirm"]
    )
    assert rc == 1 and "error" in capsys.readouterr().err
