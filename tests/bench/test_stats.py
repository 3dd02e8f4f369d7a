"""Statistics of the minigolf bench, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from golfmodel.bench import stats


def test_summarize_gives_mean_and_sample_std() -> None:
    """Mean and ddof=1 standard deviation of [1, 2, 3] are 2 and 1."""
    s = stats.summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, pytest.approx(1.0), 3)


def test_summarize_of_one_run_has_no_std() -> None:
    """A single run has a mean but no spread."""
    assert stats.summarize([1.5]).std is None


def test_nats_to_bpb_uses_tokens_per_byte() -> None:
    """ln 2 nats per token at 0.5 tokens per byte is 0.5 bits per byte."""
    assert stats.nats_to_bpb(math.log(2), 0.5) == pytest.approx(0.5)


def test_bpb_to_nats_inverts_nats_to_bpb() -> None:
    """Converting there and back returns the input."""
    assert stats.bpb_to_nats(stats.nats_to_bpb(0.123, 0.81), 0.81) == pytest.approx(0.123)


def test_paired_ttest_matches_hand_computation() -> None:
    """d = [0.1, -0.1, 0.2, 0.3]: mean 0.125, t = 0.125 / (0.170783 / 2) = 1.46385, df 3, p = 0.23944."""
    res = stats.paired_ttest([1.1, 0.9, 1.2, 1.3], [1.0, 1.0, 1.0, 1.0])
    assert res.effect == pytest.approx(0.125)
    assert res.t == pytest.approx(1.46385, abs=1e-5)
    assert res.dof == 3
    assert res.p == pytest.approx(0.239443, abs=1e-5)


def test_paired_ttest_of_one_pair_has_no_p() -> None:
    """With one seed the penalty is known but untestable."""
    res = stats.paired_ttest([1.2], [1.0])
    assert res.effect == pytest.approx(0.2) and res.p is None


def test_paired_ttest_with_identical_differences_is_decided() -> None:
    """Zero variance of a non-zero difference gives p = 0 (and p = 1 for no difference)."""
    assert stats.paired_ttest([1.5, 2.5], [1.0, 2.0]).p == 0.0
    assert stats.paired_ttest([1.0, 2.0], [1.0, 2.0]).p == 1.0


def test_welch_greater_matches_hand_computation() -> None:
    """x=[3.0,3.2,3.1], y=[2.8,2.9,2.85], margin 0.1: t = 0.15/0.064550 = 2.32379, dof 2.94118, p = 0.052239."""
    res = stats.welch_greater([3.0, 3.2, 3.1], [2.8, 2.9, 2.85], margin=0.1)
    assert res.effect == pytest.approx(0.25)
    assert res.t == pytest.approx(2.32379, abs=1e-5)
    assert res.dof == pytest.approx(2.941176, abs=1e-5)
    assert res.p == pytest.approx(0.052239, abs=1e-5)


def test_gain_test_margin_is_half_a_centinat_in_bpb() -> None:
    """At one token per byte the 0.005-nat margin is 0.005/ln 2 = 0.0072135 bpb."""
    res = stats.gain_test([3.0, 3.1], [2.0, 2.1], tokens_per_byte=1.0)
    assert res.margin == pytest.approx(0.005 / math.log(2))
    assert res.alternative == "greater"
