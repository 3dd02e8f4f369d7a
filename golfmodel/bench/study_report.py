"""The study's report: a table per budget, the scaling and Pareto plots, learning curves and the verdict.

Files in the study folder: `study.md`, `minigolf.json` (the public JSON: the 3-arm keys + `arms`
+ `budgets`), `bench.json` (everything), `study-budget.png` (final bpb against budget per arm,
log x), `study-pareto.png` (final bpb against artifact bytes, every arm and budget) and
`study-curves.png` (validation bpb against training tokens, one panel per budget). The verdict
is generated from the numbers; it states losses as plainly as wins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_write, atomic_write_text

PUBLIC_KEYS = (
    "q2-geode",
    "q2-geode-fp32",
    "gpt-int8",
    "penalty_bpb",
    "gain_bpb",
    "p_penalty",
    "p_gain",
    "arms",
    "budgets",
)


def _f(x: float | None, fmt: str = ".4f", none: str = "—") -> str:
    return none if x is None else format(x, fmt)


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _p(p: float | None) -> str:
    return "n/a (1 seed)" if p is None else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def budget_table(arms: dict[str, dict[str, Any]], ranks: dict[str, int]) -> str:
    """One budget's table (markdown)."""
    lines = [
        "| rank | arm | plan | params | artifact bytes | fill | tokens | tokens/param | LR muon/adam | pre-quant bpb | "
        "final bpb | Δ vs int8 (same prior) | p (Welch, margin) | penalty vs fp32 twin |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n, e in sorted(arms.items(), key=lambda kv: kv[1]["final_bpb"]):
        fill = f"{e['fill']:.1%}" + ("" if e["budget_bound"] else " (twin)") + ("" if e["fill_ok"] else " ⚠")
        lines.append(
            f"| {ranks.get(n, '—')} | {n} | {e['plan']} | {e['params']:,} | {e['artifact_bytes']:,} | {fill} | "
            f"{e['tokens']:,} | {e['tokens_per_param']:.1f} | {e['lr']['muon']:g}/{e['lr']['adam']:g} | "
            f"{_pm(e['prequant_bpb'], e['prequant_bpb_std'])} | {_pm(e['final_bpb'], e['final_bpb_std'])} | "
            f"{_f(e['delta_vs_int8'], '+.4f')} | {_p(e['p_vs_int8']) if e['delta_vs_int8'] is not None else '—'} | "
            f"{_f(e['penalty_vs_twin'], '+.4f')} |"
        )
    return "\n".join(lines)


def lever_table(arms: dict[str, dict[str, Any]]) -> str | None:
    """The ablation rows of one budget: each lever arm against its base, paired by seed (None: no levers)."""
    rows = [(n, e) for n, e in arms.items() if e.get("lever")]
    if not rows:
        return None
    lines = [
        "| lever | arm | base | final bpb | base final bpb | Δ vs base | p (paired, two-sided) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for n, e in sorted(
        rows, key=lambda kv: kv[1]["delta_vs_base"] if kv[1]["delta_vs_base"] is not None else 0
    ):
        b = arms[e["base"]]
        p = "n/a (1 seed)" if e["p_vs_base"] is None else _p(e["p_vs_base"])
        lines.append(
            f"| {e['lever']} | {n} | {e['base']} | {_pm(e['final_bpb'], e['final_bpb_std'])} | "
            f"{_pm(b['final_bpb'], b['final_bpb_std'])} | {_f(e['delta_vs_base'], '+.4f')} | {p} |"
        )
    return "\n".join(lines)


def lr_table(choices: dict[str, Any] | None) -> str | None:
    """The tuned-LR row per arm: the chosen point against the trainer's default, on held-out training tokens."""
    if not choices:
        return None
    from golfmodel.train.config import OptimConfig

    d = OptimConfig()
    lines = [
        f"| arm@budget | chosen muon/adam | held-out bpb | default {d.muon_lr:g}/{d.adam_lr:g} held-out bpb | Δ (tuned − default) |",
        "|---|---|---:|---:|---:|",
    ]
    for key, c in choices.items():
        default = next(
            (
                p["holdout_bpb"]
                for p in c["points"]
                if p["muon_lr"] == d.muon_lr and p["adam_lr"] == d.adam_lr
            ),
            None,
        )
        delta = None if default is None else c["holdout_bpb"] - default
        lines.append(
            f"| {key} | {c['muon_lr']:g}/{c['adam_lr']:g} | {c['holdout_bpb']:.4f} | {_f(default)} | "
            f"{_f(delta, '+.4f')} |"
        )
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> str:
    """A paragraph from the numbers: who wins where, the gap's trend and extrapolation, the penalty."""
    fit = result["details"]["fit"]
    budgets = result.get("budgets") or {str(result["details"]["main_budget"]): result["arms"]}
    alpha = 0.05
    parts = []
    for b, arms in budgets.items():
        rk = fit["ranks"].get(b, {})
        if not rk:
            continue
        order = sorted(rk, key=rk.get)
        win = order[0]
        line = f"At {int(b):,} bytes {win} ranks first of {len(order)} ({arms[win]['final_bpb']:.4f} bpb)"
        if any(e["vs"] for e in arms.values()):
            ahead = [
                n for n in order if arms[n]["delta_vs_int8"] is not None and arms[n]["delta_vs_int8"] < 0
            ]
            sig = [n for n in ahead if arms[n]["p_vs_int8"] is not None and arms[n]["p_vs_int8"] < alpha]
            if ahead:
                line += f"; ahead of int8: {', '.join(ahead)}"
                line += f" (beyond the 0.005-nat margin at p < {alpha}: {', '.join(sig) if sig else 'none'})"
            else:
                line += "; no arm beats int8"
        parts.append(line + ".")
    main = result["arms"]
    q2 = main.get("q2")
    if q2 and q2.get("penalty_vs_twin") is not None:
        ok = "within" if q2["penalty_vs_twin"] <= 0.03 else "outside"
        parts.append(
            f"The q2 arm's penalty against its fp32 twin is {q2['penalty_vs_twin']:+.4f} bpb ({ok} the 0.03 goal)."
        )
    gap = fit.get("gap")
    if gap and gap["at_16mb"] is not None:
        trend = "moves toward q2" if (gap["slope_per_decade"] or 0) < 0 else "moves toward int8"
        ci = (
            "uncertainty undefined (two budgets)"
            if gap["ci95"] is None
            else f"95% interval [{gap['ci95'][0]:+.3f}, {gap['ci95'][1]:+.3f}]"
        )
        parts.append(
            f"The q2 − int8 gap {trend} with budget ({gap['slope_per_decade']:+.4f} bpb per decade); EXTRAPOLATED "
            f"×{gap['factor_bytes']:,.0f} in bytes to 16 MB it is {gap['at_16mb']:+.3f} bpb, {ci} — a projection, "
            "not a measurement."
        )
    elif gap:
        parts.append("One budget only: no trend and no extrapolation of the q2 − int8 gap.")
    sc = fit.get("scale")
    if sc and "factor_params" in sc:
        parts.append(
            f"Scale: the largest budget here is {sc['largest_budget']:,} bytes, ×{sc['factor_bytes']:,.0f} "
            f"below 16 MB; its int8 arm has {sc['int8_params']:,} parameters and {sc['int8_tokens']:,} tokens, "
            f"×{sc['factor_params']:,.0f} and ×{sc['factor_tokens']:,.0f} below the challenge baseline "
            f"({sc['challenge_tokens_per_param']:.0f} tokens/param)."
        )
    return " ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    d = result["details"]
    fit = d["fit"]
    budgets = result.get("budgets") or {str(d["main_budget"]): result["arms"]}
    out = ["# minigolf study", "", f"Main budget {d['main_budget']:,} bytes; LR sweep `{d['lr_sweep']}` (chosen on "
           "held-out training tokens); scored on every model reloaded from its artifact. Δ vs int8: final bpb − int8's "
           f"(negative: ahead); p: one-sided Welch t-test of beating int8 by {d['margin_nats']:g} nats "
           f"({d['margin_bpb']:.4f} bpb).", ""]  # fmt: skip
    for b, arms in budgets.items():
        out += [f"## {int(b):,} bytes", "", budget_table(arms, fit["ranks"].get(b, {})), ""]
        levers = lever_table(arms)
        if levers:
            out += [f"### Levers at {int(b):,} bytes (ablation rows: one lever changed, at the base arm's LR)", "",
                    levers, ""]  # fmt: skip
    if d.get("refits"):
        out += ["## Fit to trained bytes (re-solved arms)", "",
                "An arm whose first trained artifact (first seed, chosen LR) landed outside [minimum fill, 100%] "
                "of its budget was re-solved with its size prediction scaled by measured/predicted and trained "
                "again; its tokens stay those of the reference point.", "",
                "| budget | arm | round | params | predicted bytes | trained bytes | scale | new params | new predicted |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in d["refits"]:
            out.append(
                f"| {r['budget']:,} | {r['arm']} | {r['round']} | {r['params']:,} | {r['predicted_bytes']:,} | "
                f"{r['trained_bytes']:,} | {r['scale']:.4f} | {r.get('new_params', 0):,} | "
                f"{r.get('new_predicted_bytes', 0):,} |"
            )
        out.append("")
    lrs = lr_table(d.get("lr_choices"))
    if lrs:
        out += ["## The LR sweep (held-out TRAINING tokens, sweep-scale runs; never validation)", "", lrs, ""]
    if len(budgets) > 1:
        out += [
            "## Scaling trend",
            "",
            "| arm | budgets | slope (bpb per decade of params) |",
            "|---|---:|---:|",
        ]
        for n, f in fit["arms"].items():
            se = f" ± {f['slope_se']:.4f}" if f["slope_se"] is not None else ""
            out.append(f"| {n} | {f['points']} | {_f(f['slope_per_decade'], '+.4f')}{se} |")
        out += ["", "![bpb vs budget](study-budget.png)", ""]
    low = [f"{n}@{int(b):,}" for b, m in budgets.items() for n, e in m.items() if not e["fill_ok"]]
    if low:
        out += [
            f"⚠ trained artifact outside [minimum fill, 100%] of its budget: {', '.join(low)} (the solver "
            "predicts trained bytes from measured ratios; weights trained very briefly compress differently; "
            "an artifact over its budget would not be a valid entry).",
            "",
        ]
    out += [
        "![Pareto](study-pareto.png)",
        "",
        "![learning curves](study-curves.png)",
        "",
        "## Verdict",
        "",
        verdict(result),
        "",
    ]
    return "\n".join(out)


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def plots(result: dict[str, Any], out: Path) -> list[Path]:
    """The three figures; [] without matplotlib."""
    plt = _plt()
    if plt is None:
        return []
    budgets = result.get("budgets") or {str(result["details"]["main_budget"]): result["arms"]}
    names = sorted({n for m in budgets.values() for n in m})
    color = {n: f"C{i % 10}" for i, n in enumerate(names)}
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        pts = sorted((int(b), m[n]) for b, m in budgets.items() if n in m)
        ys, err = [e["final_bpb"] for _, e in pts], [e["final_bpb_std"] or 0 for _, e in pts]
        ax.errorbar([b for b, _ in pts], ys, yerr=err, marker="o", capsize=3, color=color[n], label=n)
    ax.set(
        xscale="log",
        xlabel="budget (bytes, log)",
        ylabel="final bpb (reloaded artifact)",
        title="bpb against budget",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, out / "study-budget.png")
    paths.append(out / "study-budget.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        pts = [m[n] for m in budgets.values() if n in m]
        ax.scatter([e["artifact_bytes"] for e in pts], [e["final_bpb"] for e in pts], color=color[n], label=n,
                   marker="o" if pts[0]["budget_bound"] else "x")  # fmt: skip
    ax.set(
        xscale="log",
        xlabel="artifact bytes (log)",
        ylabel="final bpb",
        title="Pareto: bpb against artifact bytes",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, out / "study-pareto.png")
    paths.append(out / "study-pareto.png")
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), squeeze=False)
    for ax, (b, m) in zip(axes[0], budgets.items(), strict=True):
        for n, e in m.items():
            for i, s in enumerate(e["seeds"]):
                c = s.get("curve") or []
                ax.plot([p["tokens"] for p in c], [p["val_bpb"] for p in c], color=color[n], alpha=0.7, marker=".",
                        label=n if i == 0 else None)  # fmt: skip
                ax.plot(
                    [s["tokens"]],
                    [s["final_bpb"]],
                    marker="*",
                    markersize=10,
                    linestyle="none",
                    color=color[n],
                )
        ax.set(
            title=f"{int(b):,} bytes (★ final, reloaded)", xlabel="training tokens", ylabel="val bpb (slice)"
        )
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    _save(plt, fig, out / "study-curves.png")
    paths.append(out / "study-curves.png")
    return paths


def write_all(result: dict[str, Any], out: Path, *, json_path: Path | None = None) -> dict[str, Path]:
    """study.md, minigolf.json (public keys), bench.json (everything) and the plots."""
    public = {k: result[k] for k in PUBLIC_KEYS if k in result}
    paths = {
        "markdown": out / "study.md",
        "json": json_path or out / "minigolf.json",
        "details": out / "bench.json",
    }
    atomic_write_text(paths["markdown"], markdown(result))
    atomic_write_text(paths["json"], json.dumps(public, indent=2, default=str) + "\n")
    atomic_write_text(paths["details"], json.dumps(result, indent=2, default=str) + "\n")
    for p in plots(result, out):
        paths[p.stem] = p
    return paths
