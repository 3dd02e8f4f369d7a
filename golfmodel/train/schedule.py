"""Schedules as pure functions of progress p (SPEC §7).

p = max(elapsed / max_wallclock_seconds, step / max_steps): the fraction of whichever budget
runs out first. The trainer takes the maximum of p over ranks every step, so every function
below switches on all ranks at the same step.
"""

from __future__ import annotations

# Boundaries are sums of fractions (0.1 + 0.6 = 0.7000000000000001) and p is step/max_steps:
# compare with a tolerance so a boundary at step k·max_steps is reached at step k exactly.
EPS = 1e-9


def reached(p: float, boundary: float) -> bool:
    """p >= boundary, up to floating-point noise."""
    return p >= boundary - EPS


def progress(
    step: int, elapsed: float, *, max_steps: int | None, max_wallclock_seconds: float | None
) -> float:
    """Fraction of the budget used; a budget of 0 or None is ignored. Not clamped (>= 1 means stop)."""
    p = 0.0
    if max_steps:
        p = max(p, step / max_steps)
    if max_wallclock_seconds:
        p = max(p, elapsed / max_wallclock_seconds)
    if not max_steps and not max_wallclock_seconds:
        raise ValueError("progress: no budget (max_steps and max_wallclock_seconds are both unset)")
    return p


def lr_multiplier(p: float, *, warmup_frac: float, warmdown_frac: float) -> float:
    """Linear warm-up from 0 over [0, warmup_frac), flat 1, linear warm-down to 0 over the last warmdown_frac."""
    if warmup_frac > 0 and p < warmup_frac:
        return max(p, 0.0) / warmup_frac
    if warmdown_frac > 0 and p > 1.0 - warmdown_frac:
        return max(1.0 - p, 0.0) / warmdown_frac
    return 1.0


def phase(p: float, *, f1: float, f2: float) -> int:
    """1: full precision (p < f1); 2: progressive QAT (f1 <= p < f1+f2); 3: all quantised."""
    if not reached(p, f1):
        return 1
    if not reached(p, f1 + f2):
        return 2
    return 3


def qat_switch_points(
    n_groups: int, *, f1: float, f2: float, progressive: bool, start_frac: float | None = None
) -> list[float]:
    """Progress at which Geode group i switches to QAT; index i = 0 is the DEEPEST group.

    Progressive: p_i = s + (f1 + f2 - s)·i/G with s = start_frac (default f1), which is the
    spec's f1 + f2·i/G; one-shot: every group at s.
    """
    if n_groups < 0:
        raise ValueError(f"n_groups must be >= 0, got {n_groups}")
    s = f1 if start_frac is None else start_frac
    if not progressive:
        return [s] * n_groups
    span = f1 + f2 - s
    return [s + span * i / n_groups for i in range(n_groups)]


def qat_due(p: float, switch_points: list[float]) -> list[bool]:
    """Which groups (deepest first, as in `qat_switch_points`) should have QAT on at progress p."""
    return [reached(p, s) for s in switch_points]


def averaging_start(*, f1: float, f2: float, start_frac: float | None) -> float:
    """Progress at which weight averaging starts: phase 3 unless overridden."""
    return f1 + f2 if start_frac is None else start_frac
