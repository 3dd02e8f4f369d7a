"""The study's scaling trend: per-arm fits of bpb against parameters, ranks, and the q2 − int8 gap at 16 MB.

    fit = fit_study({40_000: arms_map, 80_000: arms_map, 160_000: arms_map})
    fit["arms"]["q2"]["slope_per_decade"], fit["gap"]["at_16mb"], fit["gap"]["ci95"]

Fits are ordinary least squares on log10 (a straight line in log x, the simplest form that
three budgets can test; a power law with an offset has as many parameters as points). Per arm:
final bpb against log10(params). The gap g = bpb(q2) − bpb(int8) (negative: q2 ahead) is fitted
against log10(budget bytes) and evaluated at 16,000,000 bytes, with a 95% prediction interval
from the t distribution (n − 2 degrees of freedom; none with two budgets). It is an
EXTRAPOLATION over the factor `16e6 / largest budget` in bytes and in a different token regime
(the challenge's baseline: 17.1 M params, 7.2 B tokens, ~423 tokens/param); the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

CHALLENGE_BYTES = 16_000_000
# The challenge's naive baseline at 16 MB (../shared/anchors/naive_baseline_train.log):
BASELINE_16MB = {"params": 17_059_912, "tokens": 13_780 * 524_288}


def ols(x: Sequence[float], y: Sequence[float], x0: float) -> dict[str, Any]:
    """y = a + b·x by least squares; the prediction at x0 with its standard error and 95% interval.

    With two points the line is exact and the uncertainty undefined (se, ci95 None); one point: only the mean.
    """
    from scipy import stats

    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = int(xa.size)
    if n == 0:
        raise ValueError("ols: no points")
    if n == 1 or float(np.ptp(xa)) == 0.0:
        return {"n": n, "intercept": float(ya.mean()), "slope": None, "slope_se": None, "pred": None, "pred_se": None,
                "ci95": None, "dof": 0}  # fmt: skip
    b, a = np.polyfit(xa, ya, 1)
    pred = float(a + b * x0)
    if n == 2:
        return {"n": n, "intercept": float(a), "slope": float(b), "slope_se": None, "pred": pred, "pred_se": None,
                "ci95": None, "dof": 0}  # fmt: skip
    resid = ya - (a + b * xa)
    dof = n - 2
    s = math.sqrt(float(resid @ resid) / dof)
    sxx = float(((xa - xa.mean()) ** 2).sum())
    pred_se = s * math.sqrt(1 + 1 / n + (x0 - xa.mean()) ** 2 / sxx)  # a new observation at x0
    t = float(stats.t.ppf(0.975, dof))
    return {"n": n, "intercept": float(a), "slope": float(b), "slope_se": s / math.sqrt(sxx), "pred": pred,
            "pred_se": pred_se, "ci95": [pred - t * pred_se, pred + t * pred_se], "dof": dof}  # fmt: skip


def ranks(arms: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Rank (1 = lowest final bpb) of every budget-bound arm at one budget (fp32 twins are not ranked)."""
    bound = sorted((e["final_bpb"], n) for n, e in arms.items() if e.get("budget_bound", True))
    return {n: i + 1 for i, (_, n) in enumerate(bound)}


def fit_study(
    budgets: dict[int, dict[str, dict[str, Any]]], *, q2: str = "q2", int8: str = "int8"
) -> dict[str, Any]:
    """Per-arm fits, ranks per budget, and the q2 − int8 gap extrapolated to 16 MB (labelled as such)."""
    names = sorted({n for m in budgets.values() for n in m})
    arms_fit: dict[str, Any] = {}
    for n in names:
        pts = [(m[n]["params"], m[n]["final_bpb"]) for m in budgets.values() if n in m]
        f = ols([math.log10(p) for p, _ in pts], [y for _, y in pts], math.log10(BASELINE_16MB["params"]))
        arms_fit[n] = {
            "points": len(pts),
            "slope_per_decade": f["slope"],
            "slope_se": f["slope_se"],
            "fit": f,
        }
    gap_pts = [
        (b, m[q2]["final_bpb"] - m[int8]["final_bpb"])
        for b, m in sorted(budgets.items())
        if q2 in m and int8 in m
    ]
    gap = None
    if gap_pts:
        g = ols([math.log10(b) for b, _ in gap_pts], [y for _, y in gap_pts], math.log10(CHALLENGE_BYTES))
        top = max(b for b, _ in gap_pts)
        gap = {
            "label": "EXTRAPOLATION (log-linear fit of the gap against log10 budget)", "pair": [q2, int8],
            "points": [{"budget": b, "gap": y} for b, y in gap_pts], "at_16mb": g["pred"], "se": g["pred_se"],
            "ci95": g["ci95"], "slope_per_decade": g["slope"], "dof": g["dof"],
            "factor_bytes": CHALLENGE_BYTES / top,
        }  # fmt: skip
    scale = None
    if budgets:
        top_b = max(budgets)
        i8 = budgets[top_b].get(int8)
        scale = {"largest_budget": top_b, "factor_bytes": CHALLENGE_BYTES / top_b}
        if i8:
            scale.update({
                "int8_params": i8["params"], "int8_tokens": i8["tokens"],
                "factor_params": BASELINE_16MB["params"] / i8["params"],
                "factor_tokens": BASELINE_16MB["tokens"] / i8["tokens"],
                "challenge_tokens_per_param": BASELINE_16MB["tokens"] / BASELINE_16MB["params"],
            })  # fmt: skip
    return {
        "arms": arms_fit,
        "ranks": {str(b): ranks(m) for b, m in sorted(budgets.items())},
        "gap": gap,
        "scale": scale,
    }
