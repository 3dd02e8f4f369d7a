"""Tables, JSON and the plot of the minigolf bench (`minigolf.md`, `minigolf.json`, `bench.json`, `minigolf.png`).

`minigolf.json` holds exactly `{"q2-geode", "q2-geode-fp32", "gpt-int8", "penalty_bpb", "gain_bpb",
"p_penalty", "p_gain"}`; `bench.json` adds the details (tests, ablations, settings, data, plan).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_write, atomic_write_text

ARM_LABELS = {
    "q2-geode": "(a) q2-geode",
    "q2-geode-fp32": "(b) q2-geode-fp32",
    "gpt-int8": "(c) gpt-int8",
}


def _fmt_bpb(mean: float, std: float | None) -> str:
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a (one seed)"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def main_table(result: dict[str, Any]) -> str:
    """The main table (markdown): one row per arm, means over seeds (± std with several)."""
    lines = [
        "| arm | params | artifact bytes | steps | tokens | tokens/param | tokens/s | pre-quant bpb | final bpb |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, label in ARM_LABELS.items():
        a = result[arm]
        lines.append(
            f"| {label} | {a['params']:,} | {a['artifact_bytes']:,} | {a['steps']:,} | {a['tokens']:,} | "
            f"{a['tokens_per_param']:.1f} | {a['tokens_per_s']:,.0f} | {_fmt_bpb(a['prequant_bpb'], a['prequant_bpb_std'])} | "
            f"{_fmt_bpb(a['final_bpb'], a['final_bpb_std'])} |"
        )
    return "\n".join(lines)


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """The penalty and gain lines with their tests."""
    d = result["details"]
    pen_std = d.get("penalty_std")
    pen = f"{result['penalty_bpb']:+.4f} bpb" + (
        f" (± {pen_std:.4f} over seeds)" if pen_std is not None else ""
    )
    return [
        f"- 2-bit penalty (a − b): {pen}; paired t-test (two-sided) p = {_fmt_p(result['p_penalty'])}",
        f"- A/B gain (c − a): {result['gain_bpb']:+.4f} bpb (positive: q2-geode better); one-sided Welch t-test "
        f"against the challenge margin of {d['margin_nats']:g} nats = {d['margin_bpb']:.4f} bpb "
        f"({d['tokens_per_byte']:.4f} tokens/byte): p = {_fmt_p(result['p_gain'])} (record rule: p < 0.01)",
    ]


def ablation_table(result: dict[str, Any]) -> str | None:
    rows = result["details"].get("ablations") or []
    if not rows:
        return None
    lines = [
        "| ablation | what changes | params | artifact bytes | tokens | pre-quant bpb | final bpb | Δ vs default |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        delta = "—" if r["ablation"] == "default" or r["delta_bpb"] is None else f"{r['delta_bpb']:+.4f}"
        lines.append(
            f"| {r['ablation']} | {r['description']} | {r['params']:,} | {r['artifact_bytes']:,} | {r['tokens']:,} | "
            f"{r['prequant_bpb']:.4f} | {r['final_bpb']:.4f} | {delta} |"
        )
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The whole report as markdown."""
    d = result["details"]
    cfg = d.get("config", {})
    ev = d["eval"]
    mode = "non-overlapping windows" if ev["stride"] is None else f"sliding window, stride {ev['stride']}"
    match = cfg.get("match", "gpu-tokens")
    budget = (
        f"gpu-tokens: gpt-int8 {cfg.get('int8_tokens', 0):,} tokens, others ×(params_int8/params)^0.5"
        if match == "gpu-tokens"
        else f"time: {cfg.get('seconds')} s of training each"
    )
    out = [
        "# minigolf",
        "",
        f"Budget {cfg.get('budget_bytes', 0):,} bytes, {d.get('data', {}).get('variant', '?')}, matching {budget}; "
        f"{cfg.get('seeds', 1)} seed(s). Scored on the model reloaded from its artifact: {mode} of "
        f"{ev['seq_len']} tokens, rule '{ev['rule']}'.",
        "",
        main_table(result),
        "",
        *verdict_lines(result),
    ]
    abl = ablation_table(result)
    if abl:
        scale = cfg.get("ablation_scale", 0.5)
        out += [
            "",
            f"## Ablations (one seed, {scale:g}× the q2-geode budget; Δ = ablation − default, lower is better)",
            "",
            abl,
        ]
    return "\n".join(out) + "\n"


def plot(result: dict[str, Any], path: Path) -> bool:
    """Validation bpb against training tokens for every arm (periodic val slice + final score); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (arm, label) in enumerate(ARM_LABELS.items()):
        a = result[arm]
        for i, seed in enumerate(a["seeds"]):  # one colour per arm: its seeds share it
            curve = seed.get("curve") or []
            xs = [c["tokens"] for c in curve]
            ys = [c["val_bpb"] for c in curve]
            line = ax.plot(xs, ys, marker=".", alpha=0.7, color=f"C{k}", label=label if i == 0 else None)[0]
            ax.plot(
                [seed["tokens"]],
                [seed["final_bpb"]],
                marker="*",
                markersize=11,
                linestyle="none",
                color=line.get_color(),
            )
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation bpb")
    ax.set_title("minigolf: validation bpb against training tokens", fontsize=11)
    ax.text(
        0.99, 0.97, "lines: the trainer's val slice, as trained (QAT on for q2-geode)\n"
        "★: whole validation stream, model reloaded from its artifact",
        transform=ax.transAxes, ha="right", va="top", fontsize=8, color="0.3",
    )  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)
    return True


def write_all(result: dict[str, Any], out_dir: Path, *, json_path: Path | None = None) -> dict[str, Path]:
    """Write minigolf.md, minigolf.json (the public shape), bench.json (everything) and minigolf.png."""
    from golfmodel.bench.minigolf import public_json

    paths = {
        "markdown": out_dir / "minigolf.md",
        "json": json_path or out_dir / "minigolf.json",
        "details": out_dir / "bench.json",
        "plot": out_dir / "minigolf.png",
    }
    atomic_write_text(paths["markdown"], markdown(result))
    atomic_write_text(paths["json"], json.dumps(public_json(result), indent=2, sort_keys=False) + "\n")
    atomic_write_text(paths["details"], json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    if not plot(result, paths["plot"]):
        paths.pop("plot")
    return paths
