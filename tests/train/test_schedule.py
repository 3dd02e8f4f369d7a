"""Schedules as functions of progress p: budget fraction, LR shape, phases, QAT switch points."""

from __future__ import annotations

import pytest

from golfmodel.train import schedule as s


def test_progress_takes_the_larger_budget_fraction() -> None:
    """p is the fraction of whichever budget (steps or wall-clock) is further used up."""
    assert s.progress(10, 30.0, max_steps=100, max_wallclock_seconds=60.0) == pytest.approx(0.5)
    assert s.progress(80, 30.0, max_steps=100, max_wallclock_seconds=60.0) == pytest.approx(0.8)


def test_progress_ignores_an_unset_budget() -> None:
    """A budget of 0 or None does not count; with neither set, progress is an error."""
    assert s.progress(5, 1e6, max_steps=10, max_wallclock_seconds=0) == pytest.approx(0.5)
    assert s.progress(10**9, 6.0, max_steps=None, max_wallclock_seconds=60.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        s.progress(1, 1.0, max_steps=None, max_wallclock_seconds=None)


def test_lr_multiplier_warms_up_holds_and_warms_down() -> None:
    """Linear from 0 over the warm-up, 1 in the middle, linear to 0 over the warm-down."""
    f = lambda p: s.lr_multiplier(p, warmup_frac=0.1, warmdown_frac=0.3)  # noqa: E731
    assert [f(0.0), f(0.05), f(0.1), f(0.5), f(0.7), f(0.85), f(1.0)] == pytest.approx(
        [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    )


def test_phase_boundaries_follow_the_fractions() -> None:
    """Phase 1 below f1, phase 2 up to f1+f2, phase 3 after; a boundary hit exactly by step/max_steps counts."""
    ph = [s.phase(k / 10, f1=0.1, f2=0.6) for k in range(11)]
    assert ph == [1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3]  # 0.1 + 0.6 = 0.7000000000000001 > 7/10 in floats


def test_progressive_switch_points_go_deepest_first() -> None:
    """Group i (i = 0 the deepest) switches at f1 + f2*i/G."""
    pts = s.qat_switch_points(4, f1=0.1, f2=0.6, progressive=True)
    assert pts == pytest.approx([0.1, 0.25, 0.4, 0.55])
    assert s.qat_due(0.3, pts) == [True, True, False, False]


def test_one_shot_switch_puts_every_group_at_f1() -> None:
    """Non-progressive QAT switches all groups at the start of phase 2."""
    assert s.qat_switch_points(3, f1=0.2, f2=0.5, progressive=False) == [0.2, 0.2, 0.2]


def test_start_frac_moves_the_first_switch_and_keeps_the_end() -> None:
    """start_frac replaces f1 as the first switch; the spacing still ends before phase 3."""
    pts = s.qat_switch_points(2, f1=0.1, f2=0.6, progressive=True, start_frac=0.3)
    assert pts == pytest.approx([0.3, 0.5])
