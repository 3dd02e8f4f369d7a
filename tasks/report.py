"""The report stage: report.md, report.json and loss.png from the upstream records.

Cached like every stage (its key holds the upstream content hashes and the settings hash). The
run-specific part — which stages ran or came from the cache, and how long each took in this
run — is added to the run folder's copy by the flow (`golf.tasks.runs.finish_report`), which
also publishes the Prefect markdown artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings, settings_hash
from golf.tasks.cache import StageRecord, StageResult, write_json_atomic
from golf.tasks.common import cached_stage
from golf.tasks.retries import TRANSIENT_RETRIES


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of the trainer's metrics.jsonl (a torn last line is skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_loss(rows: list[dict[str, Any]], out: Path, title: str, events: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    """Training loss per step, phase boundaries, and periodic validation bpb (second axis) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if r.get("kind", "train") == "train" and r.get("loss") is not None]
    val = [r for r in rows if r.get("kind") == "val" and r.get("val_bpb") is not None]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(
        [r["step"] for r in train], [r["loss"] for r in train], label="train loss (nats)", color="tab:blue"
    )
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats/token)")
    ax.grid(alpha=0.3)
    for ev in events:
        if ev.get("event") == "phase" and ev.get("phase", 0) > 1:
            ax.axvline(ev["step"], color="gray", linestyle="--", linewidth=0.8)
            ax.annotate(f"phase {ev['phase']}", (ev["step"], 1), xycoords=("data", "axes fraction"),
                        xytext=(2, -12), textcoords="offset points", fontsize=8, color="gray")  # fmt: skip
    if val:
        ax2 = ax.twinx()
        ax2.plot(
            [r["step"] for r in val], [r["val_bpb"] for r in val], "o-", color="tab:orange", label="val bpb"
        )
        ax2.set_ylabel("validation bits/byte")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "—" if v is None else str(v)


def build_report(settings: Settings, records: dict[str, StageRecord], work: Path) -> StageResult:
    """Write report.json / report.md / loss.png into `work` from the records of the finished stages."""
    bigram, train, recal = records["bigram"], records["train"], records["recalibrate"]
    pack, size, val = records["pack"], records["size_check"], records["validate"]
    data: dict[str, Any] = {
        "final_bpb": val.values["final_bpb"],
        "prequant_bpb": train.values.get("prequant_bpb"),
        "postquant_bpb": recal.values.get("before_bpb"),
        "recalibrated_bpb": recal.values.get("after_bpb"),
        "bigram_bpb": bigram.values["bigram_bpb"],
        "artifact_bytes": size.values["artifact_bytes"],
        "code_bytes": size.values["code_bytes"],
        "total_bytes": size.values["total_bytes"],
        "budget_bytes": size.values["budget_bytes"],
        "headroom_bytes": size.values["headroom_bytes"],
        "size_ok": size.values["ok"],
        "kind_bytes": pack.values.get("kind_bytes", {}),
        "validation": val.values,
        "train": train.metrics,
        "model": train.values.get("model"),
        "recalibration": recal.values,
        "stage_compute_seconds": {name: round(r.seconds, 3) for name, r in records.items()},
        "settings_hash": settings_hash(settings),
        "settings": settings.model_dump(mode="json"),
    }
    data["plan"] = plan_section(data["model"])
    write_json_atomic(work / "report.json", data)
    rows = read_metrics(train.path(train.values["metrics"]))
    plot_loss(
        rows,
        work / "loss.png",
        f"golf {settings.preset}: {data['model'] and data['model'].get('arm')} / {data['plan']['name']}",
    )
    bpb_rows = [
        ("bigram baseline (val)", data["bigram_bpb"]),
        ("bigram on the scored targets (quality gate)", val.values.get("bigram_scored_bpb")),
        ("pre-quant (training weights, val slice)", data["prequant_bpb"]),
        ("post-quant (before τ recalibration, held-out train tokens)", data["postquant_bpb"]),
        ("post-recalibration (held-out train tokens)", data["recalibrated_bpb"]),
        (
            f"final: from the artifact, {val.values.get('mode')} (stride {val.values.get('stride')})",
            data["final_bpb"],
        ),
    ]
    size_rows = [("artifact (compressed)", data["artifact_bytes"]), ("shipped code", data["code_bytes"]),
                 ("total", data["total_bytes"]), ("budget", data["budget_bytes"]),
                 ("headroom", data["headroom_bytes"])]  # fmt: skip
    kinds = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in data["kind_bytes"].items())
    plan = data["plan"]
    parts = "\n".join(
        f"| {r['family']} | {'all' if r['depth'] is None else r['depth']} | {', '.join(r['specs'])} | "
        f"{_fmt(r['numel'])} | {_fmt(r['payload_bytes'])} |"
        for r in plan["parts"]
    )
    md = "\n".join(
        [
            f"# golf report — preset `{settings.preset}`",
            "",
            f"**Final validation bpb: {_fmt(data['final_bpb'])}** (bigram baseline {_fmt(data['bigram_bpb'])}); "
            f"artifact + code {_fmt(data['total_bytes'])} of {_fmt(data['budget_bytes'])} bytes "
            f"({'OK' if data['size_ok'] else 'OVER BUDGET'}).",
            "",
            "## Bits per byte",
            "",
            "| measurement | bpb |",
            "|---|---:|",
            *[f"| {k} | {_fmt(v)} |" for k, v in bpb_rows],
            "",
            f"Scored {_fmt(val.values.get('tokens'))} targets = {_fmt(val.values.get('bytes'))} bytes "
            f"(decoded-text audit {_fmt(val.values.get('audit_bytes'))}), rule `{val.values.get('rule')}`.",
            "",
            "## Size",
            "",
            "| part | bytes |",
            "|---|---:|",
            *[f"| {k} | {_fmt(v)} |" for k, v in size_rows],
            "",
            "| storage kind (raw payload) | bytes |",
            "|---|---:|",
            kinds,
            "",
            f"## Quantisation plan `{plan['name']}`",
            "",
            "| family | depth | spec | numel | payload bytes |",
            "|---|---:|---|---:|---:|",
            parts,
            "",
            "## Training",
            "",
            "![loss](loss.png)",
            "",
            "| | |",
            "|---|---|",
            *[f"| {k} | {_fmt(v)} |" for k, v in train.metrics.items()],
            "",
            "## Settings",
            "",
            "```json",
            json.dumps(data["settings"], indent=2),
            "```",
        ]
    )
    (work / "report.md").write_text(md + "\n")
    keep = ("final_bpb", "prequant_bpb", "postquant_bpb", "recalibrated_bpb", "bigram_bpb", "artifact_bytes",
            "total_bytes", "budget_bytes")  # fmt: skip
    return StageResult(values={k: data[k] for k in keep})


def plan_section(model: dict[str, Any] | None) -> dict[str, Any]:
    """The trained model's plan: its name and one row per family × depth (spec, numel, payload bytes)."""
    if not model:
        return {"name": None, "parts": []}
    from golfmodel.model.config import ModelConfig
    from golfmodel.model.probe import part_breakdown

    cfg = ModelConfig.from_dict(model)
    return {"name": cfg.quant_plan.name, "parts": part_breakdown(cfg)}


@task(name="report", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def report(
    settings: Settings,
    bigram: StageRecord,
    train: StageRecord,
    recalibrate: StageRecord,
    pack: StageRecord,
    size_check: StageRecord,
    validate: StageRecord,
    force: bool = False,
) -> Any:
    """Write the run report (markdown, JSON, loss curve) from the stages' records."""
    records = {"bigram": bigram, "train": train, "recalibrate": recalibrate, "pack": pack,
               "size_check": size_check, "validate": validate}  # fmt: skip
    return cached_stage(
        "report", settings, records, lambda work: build_report(settings, records, work), force=force
    )
