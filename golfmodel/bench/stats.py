"""Statistics of the minigolf bench: mean ± std per arm, the paired penalty test, the Welch gain test.

    penalty = bpb(q2-geode) − bpb(q2-geode-fp32)      paired by seed (same data order), two-sided t-test
    gain    = bpb(gpt-int8) − bpb(q2-geode)           one-sided Welch t-test of H1: gain > margin

The challenge's rule for a new record: beat the previous one by at least 0.005 nats (per token of
the validation loss) with p < 0.01. A bench scores bits per byte, so the margin is converted with
the validation set's scored bytes per token:

    bpb = nats / ln 2 · tokens / bytes          nats = bpb · ln 2 · bytes / tokens

Every test returns None for its p-value where it is undefined (fewer than two seeds); with zero
variance the p-value is 0 or 1 by the sign of the effect (a degenerate but decided test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CHALLENGE_MARGIN_NATS = 0.005  # a record must improve the validation loss by this much ...
CHALLENGE_ALPHA = 0.01  # ... at this significance level


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Mean and sample standard deviation (ddof=1; None for one value) of a set of runs."""

    mean: float
    std: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fmt(self, digits: int = 4) -> str:
        """ "1.2345 ± 0.0012" (or just the mean for one run)."""
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One t-test: the effect (mean difference), its statistic, degrees of freedom and p-value."""

    effect: float  # mean difference in the tested direction (bpb)
    t: float | None
    dof: float | None
    p: float | None  # None where the test is undefined (n < 2)
    n: int
    alternative: str  # "two-sided" | "greater"
    margin: float = 0.0  # H0 of a one-sided test: effect <= margin

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """Mean ± sample std of `values` (at least one)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"summarize needs a non-empty 1-D sequence, got shape {x.shape}")
    std = float(x.std(ddof=1)) if x.size > 1 else None
    return Summary(mean=float(x.mean()), std=std, n=int(x.size))


def bpb_to_nats(bpb: float, tokens_per_byte: float) -> float:
    """Bits per byte → nats per token: nats = bpb · ln 2 / tokens_per_byte."""
    if not tokens_per_byte > 0:
        raise ValueError(f"tokens_per_byte must be > 0, got {tokens_per_byte}")
    return bpb * math.log(2) / tokens_per_byte


def nats_to_bpb(nats: float, tokens_per_byte: float) -> float:
    """Nats per token → bits per byte: bpb = nats / ln 2 · tokens_per_byte."""
    if not tokens_per_byte > 0:
        raise ValueError(f"tokens_per_byte must be > 0, got {tokens_per_byte}")
    return nats / math.log(2) * tokens_per_byte


def _degenerate_p(effect: float, margin: float, alternative: str) -> float:
    """p-value of a test whose differences have zero variance: the effect is known exactly."""
    if alternative == "greater":
        return 0.0 if effect > margin else 1.0
    return 0.0 if effect != 0 else 1.0


def paired_ttest(x: Sequence[float], y: Sequence[float]) -> TestResult:
    """Two-sided paired t-test of mean(x − y) = 0 (pairs = the same seed of two arms)."""
    from scipy import stats

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired_ttest needs two equal-length non-empty sequences, got {a.shape} and {b.shape}"
        )
    d = a - b
    effect, n = float(d.mean()), int(d.size)
    if n < 2:
        return TestResult(effect=effect, t=None, dof=None, p=None, n=n, alternative="two-sided")
    if float(d.std(ddof=1)) == 0.0:
        t = math.copysign(math.inf, effect) if effect else 0.0
        p = _degenerate_p(effect, 0.0, "two-sided")
        return TestResult(effect=effect, t=t, dof=n - 1, p=p, n=n, alternative="two-sided")
    res = stats.ttest_rel(a, b)
    return TestResult(
        effect=effect, t=float(res.statistic), dof=n - 1, p=float(res.pvalue), n=n, alternative="two-sided"
    )


def welch_greater(x: Sequence[float], y: Sequence[float], *, margin: float = 0.0) -> TestResult:
    """One-sided Welch t-test of H1: mean(x) − mean(y) > margin (unequal variances, unpaired)."""
    from scipy import stats

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise ValueError(f"welch_greater needs two non-empty 1-D sequences, got {a.shape} and {b.shape}")
    effect = float(a.mean() - b.mean())
    n = int(min(a.size, b.size))
    if a.size < 2 or b.size < 2:
        return TestResult(effect=effect, t=None, dof=None, p=None, n=n, alternative="greater", margin=margin)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0.0:
        p = _degenerate_p(effect, margin, "greater")
        t = math.copysign(math.inf, effect - margin) if effect != margin else 0.0
        return TestResult(effect=effect, t=t, dof=None, p=p, n=n, alternative="greater", margin=margin)
    res = stats.ttest_ind(a, b + margin, equal_var=False, alternative="greater")
    dof = float((va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)))  # Welch–Satterthwaite
    return TestResult(
        effect=effect,
        t=float(res.statistic),
        dof=dof,
        p=float(res.pvalue),
        n=n,
        alternative="greater",
        margin=margin,
    )


def penalty_test(q2_bpb: Sequence[float], fp32_bpb: Sequence[float]) -> TestResult:
    """The 2-bit penalty a − b, paired by seed: two-sided paired t-test."""
    return paired_ttest(q2_bpb, fp32_bpb)


def gain_test(
    int8_bpb: Sequence[float],
    q2_bpb: Sequence[float],
    *,
    tokens_per_byte: float,
    margin_nats: float = CHALLENGE_MARGIN_NATS,
) -> TestResult:
    """The A/B gain c − a against the challenge's margin (nats per token, converted to bpb)."""
    margin = nats_to_bpb(margin_nats, tokens_per_byte)
    return welch_greater(int8_bpb, q2_bpb, margin=margin)
