"""`golf export RUN DIR`: a Parameter Golf records folder from a finished pipeline run.

    export_run("artifacts/runs/<run>", "records/track_10min_16mb/2026-05-01_Q2Geode", author=..., github_id=...)

Reads the run folder the pipeline writes (`golf.tasks.runs`): `report.json`, `settings.json`,
`run.log` and `records/<stage>.json` (each naming its stage folder in the cache: the train
stage's RUN.json, metrics.jsonl and events.jsonl, the pack stage's artifact). Writes:

    README.md          method, settings, results, how to reproduce
    submission.json    author, github_id, name, blurb, date, val_loss, val_bpb, bytes_total, bytes_code
    train.log          the run's log (the trainer's output streamed into it)
    train_metrics.jsonl, train_events.jsonl, RUN.json     the trainer's own records
    final_model.q2bn   the packed artifact (final_model.int8.ptz for gpt-int8)
    train_gpt.py       the single-file script (golfmodel.export.bundle) with this run's configuration

`val_loss` is the mean validation NLL in nats per token and `val_bpb` the score, both of the
model reloaded from the artifact (the pipeline's validate stage); `bytes_total` = artifact +
`bytes_code`, the exported train_gpt.py's bytes (what the challenge counts).

The artifact is verified while it is copied: its sha256 must equal the one the pack stage
recorded (`records/pack.json` → outputs), so a file that changed on disk after it was scored
(bit rot, an edit with its mtime kept) is never shipped; the error names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_write, atomic_write_text
from golfmodel.export.bundle import DEFAULT_STYLE, Style, write_script
from golfmodel.export.runner import artifact_name as artifact_file_name
from golfmodel.export.runner import submission_config
from golfmodel.quant.plan import arm_arch

SUBMISSION_FIELDS = (
    "author",
    "github_id",
    "name",
    "blurb",
    "date",
    "val_loss",
    "val_bpb",
    "bytes_total",
    "bytes_code",
)


Q2_METHOD = (
    "- Q² quantisation: every block matrix stored as 2-bit symbols {−1.5, −0.5, +0.5, +1.5}·τ per row "
    "(Gray-coded, 4 per byte, fp16 τ), τ fitted by squared error; embeddings int8 per row; norms and gains "
    "fp16; the whole file zstd-22 (Q2BN format)."
)
INT8_METHOD = "- Export: the challenge baseline's int8 per row + zlib-9."


class ExportError(ValueError):
    """The run folder lacks something a records folder needs; the message names the file."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: missing (is this a finished `golf run` folder?)") from None
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: unreadable JSON: {e}") from None


def _stage_dir(run: Path, stage: str) -> tuple[Path, dict[str, Any]]:
    rec = _read_json(run / "records" / f"{stage}.json")
    folder = Path(rec.get("dir", ""))
    if not folder.is_dir():
        raise ExportError(
            f"{run / 'records' / f'{stage}.json'}: its stage folder {folder} is gone (garbage-collected?)"
        )
    return folder, rec


def _copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise ExportError(f"{src}: missing")
    with open(src, "rb") as f_in:
        atomic_write(dst, lambda f_out: shutil.copyfileobj(f_in, f_out, 1 << 22))


def _copy_verified(src: Path, dst: Path, sha256: str | None, record: Path) -> None:
    """Copy `src` to `dst`, hashing the bytes copied; ExportError (and no `dst`) if they differ from `sha256`."""
    if not sha256:
        raise ExportError(f"{record}: no sha256 recorded for {src.name}; cannot verify the artifact")
    if not src.is_file():
        raise ExportError(f"{src}: missing")
    h = hashlib.sha256()

    def copy(f_out: Any) -> None:
        with open(src, "rb") as f_in:
            while block := f_in.read(1 << 22):
                h.update(block)
                f_out.write(block)
        if h.hexdigest() != sha256:  # raised inside the atomic write: nothing lands under `dst`
            raise ExportError(
                f"{src}: sha256 {h.hexdigest()[:16]}… does not match the {sha256[:16]}… that the pack stage "
                f"recorded ({record}); the artifact changed after it was scored — not exported. "
                "Re-run the pipeline (it re-packs and re-scores) and export the new run"
            )

    atomic_write(dst, copy)


def run_config(run: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(submission config, settings, job dict) of a run folder."""
    settings = _read_json(run / "settings.json")
    train_dir, _ = _stage_dir(run, "train")
    job = _read_json(train_dir / "RUN.json")
    variant = settings.get("tokeniser", {}).get("variant") or settings.get("data", {}).get(
        "variant", "sp1024"
    )
    quant, pack = settings.get("quant", {}), settings.get("pack", {})
    cfg = submission_config(
        job,
        variant=variant,
        eval_settings=settings.get("eval", {}),
        recalibrate=quant.get("recalibrate", "mse"),
        calib_batches=int(quant.get("calib_batches", 4)),
        linear_kind=pack.get("linear_kind", "q2"),
        budget_bytes=int(pack.get("budget_bytes", 16_000_000)),
        name=f"golf-{settings.get('preset', 'run')}",
    )
    return cfg, settings, job


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "—" if v is None else str(v)


def readme(
    sub: dict[str, Any],
    report: dict[str, Any],
    settings: dict[str, Any],
    job: dict[str, Any],
    artifact: str,
    variant: str = "sp1024",
) -> str:
    """README.md of the records folder: method, settings, results, reproduction."""
    m = job["model"]
    t = job["train"]
    val = report.get("validation", {})
    shape = (
        f"{m['depth']} Geode groups × `{m['pattern']}` (G = GQA, C = CfC), d={m['d_model']}, "
        f"{m['n_heads']} heads / {m['n_kv_heads']} KV, SwiGLU ×{m['mlp_mult']:.3g}"
        if arm_arch(m["arm"]) == "geode"
        else f"{m['depth']} layers, d={m['d_model']}, {m['n_heads']} heads / {m['n_kv_heads']} KV, relu² ×{m['mlp_mult']:g}"
    )
    stride = val.get("stride")
    eval_desc = f"{val.get('mode', '?')} windows of {val.get('seq_len', '?')}" + (
        f", stride {stride}" if stride else ""
    )
    rows = [
        ("bigram baseline", report.get("bigram_bpb")),
        ("pre-quantisation (training weights, val slice)", report.get("prequant_bpb")),
        ("post-quantisation, before τ recalibration (val slice)", report.get("postquant_bpb")),
        ("after τ recalibration (val slice)", report.get("recalibrated_bpb")),
        (
            f"**final, reloaded from `{artifact}`** ({eval_desc}, rule `{val.get('rule', '?')}`)",
            sub["val_bpb"],
        ),
    ]
    lines = [
        f"# {sub['name']}",
        "",
        sub["blurb"],
        "",
        "## Method",
        "",
        f"- Model (`{m['arm']}`): {shape}; vocabulary {m['vocab_size']}, tied embedding, logit soft-cap "
        f"{m.get('logit_softcap', 30)}{', bigram log-prior in the logits' if m.get('bigram_prior') else ''}.",
        Q2_METHOD if arm_arch(m["arm"]) == "geode" else INT8_METHOD,
        "- Training: three phases on the progress p = max(time, step fraction): full precision, then QAT switched on "
        "Geode group by group (deepest first), then everything quantised with warm-down and weight averaging; "
        "Muon on block matrices, AdamW elsewhere; τ re-fitted after training (recalibration stage).",
        f"- Scoring: bits per byte of the model reloaded from the artifact, {eval_desc}.",
        "",
        "## Results",
        "",
        "| measurement | val bpb |",
        "|---|---:|",
        *[f"| {k} | {_fmt(v)} |" for k, v in rows],
        "",
        f"val_loss {sub['val_loss']:.6f} nats/token; {_fmt(val.get('tokens'))} targets = {_fmt(val.get('bytes'))} bytes.",
        "",
        "| size | bytes |",
        "|---|---:|",
        f"| artifact `{artifact}` | {_fmt(sub['bytes_total'] - sub['bytes_code'])} |",
        f"| code `train_gpt.py` | {_fmt(sub['bytes_code'])} |",
        f"| total | {_fmt(sub['bytes_total'])} |",
        f"| budget | {_fmt(report.get('budget_bytes', settings.get('pack', {}).get('budget_bytes')))} |",
        "",
        "## Settings",
        "",
        f"Preset `{settings.get('preset', '?')}`; training {t.get('max_wallclock_seconds') or '—'} s wall-clock "
        f"(or {_fmt(t.get('max_steps'))} steps), {_fmt(t.get('global_batch_tokens'))} tokens per step, sequence "
        f"{t.get('seq_len')}; the full configuration is `CONFIG` at the top of train_gpt.py and `RUN.json`.",
        "",
        "## Reproduce",
        "",
        "```bash",
        *(
            [
                "DATA_PATH=./data/datasets/fineweb10B_byte260 torchrun --standalone --nproc_per_node=8 train_gpt.py"
            ]
            if variant == "byte260"
            else [
                f"DATA_PATH=./data/datasets/fineweb10B_{variant} "
                f"TOKENIZER_PATH=./data/tokenizers/fineweb_{variant.removeprefix('sp')}_bpe.model \\",
                "  torchrun --standalone --nproc_per_node=8 train_gpt.py",
            ]
        ),
        "python train_gpt.py --selftest     # CPU, seconds: tiny model, pack, reload, score",
        "python train_gpt.py --dump-sources src/   # the embedded golfmodel library as files",
        "```",
        "",
        "train_gpt.py embeds the golfmodel library (model, quantiser, Q2BN reader/writer, scorer, trainer) "
        "(xz-compressed unless exported with `--style plain`), so it runs with torch, numpy, sentencepiece and "
        "zstandard only.",
        "",
        "## Files",
        "",
        "`train_gpt.py`, `train.log` (the run's log), `train_metrics.jsonl` / `train_events.jsonl` (per-step "
        f"metrics, phase switches, τ refreshes), `RUN.json` (the trainer job), `{artifact}`, `submission.json`.",
    ]
    return "\n".join(lines) + "\n"


def export_run(
    run_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    author: str = "golf",
    github_id: str = "",
    name: str | None = None,
    blurb: str | None = None,
    date: str | None = None,
    style: Style = DEFAULT_STYLE,
) -> Path:
    """Write the records folder `dest` for the run in `run_dir`; returns `dest`."""
    run = Path(run_dir).resolve()
    out = Path(dest)
    report = _read_json(run / "report.json")
    cfg, settings, job = run_config(run)
    for key in ("final_bpb", "validation"):
        if key not in report:
            raise ExportError(f"{run / 'report.json'}: lacks {key!r} (did the validate stage run?)")
    if report["validation"].get("loss") is None:
        raise ExportError(f"{run / 'report.json'}: validation lacks 'loss'")
    pack_dir, pack_rec = _stage_dir(run, "pack")
    train_dir, _ = _stage_dir(run, "train")
    artifact_src = pack_dir / pack_rec.get("values", {}).get("artifact", "")
    artifact_name = artifact_file_name(job["model"])

    out.mkdir(parents=True, exist_ok=True)
    script = write_script(out / "train_gpt.py", cfg, style=style)
    recorded = pack_rec.get("outputs", {}).get(artifact_src.name, {}).get("sha256")
    _copy_verified(artifact_src, out / artifact_name, recorded, run / "records" / "pack.json")
    if (run / "run.log").is_file():
        _copy(run / "run.log", out / "train.log")
    else:
        atomic_write_text(out / "train.log", "")
    for src, dst in (
        ("metrics.jsonl", "train_metrics.jsonl"),
        ("events.jsonl", "train_events.jsonl"),
        ("RUN.json", "RUN.json"),
    ):
        if (train_dir / src).is_file():
            _copy(train_dir / src, out / dst)
    code = script.stat().st_size
    total = (out / artifact_name).stat().st_size + code
    m = job["model"]
    sub = {
        "author": author,
        "github_id": github_id,
        "name": name
        or f"Q2 Geode {m['depth']}x{m['pattern']} d{m['d_model']} ({settings.get('preset', 'run')})",
        "blurb": blurb
        or (
            f"{m['arm']}: 2-bit Q² QAT hybrid (GQA + CfC) LM, {m['d_model']}-wide, {m['depth']} Geode groups, "
            f"vocab {m['vocab_size']}; Q2BN + zstd-22 artifact; score from the reloaded artifact."
            if arm_arch(m["arm"]) == "geode"
            else f"gpt-int8 baseline shape, {m['depth']}x{m['d_model']}; int8 + zlib artifact."
        ),
        "date": date or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "val_loss": float(report["validation"]["loss"]),
        "val_bpb": float(report["final_bpb"]),
        "bytes_total": int(total),
        "bytes_code": int(code),
    }
    atomic_write_text(out / "submission.json", json.dumps(sub, indent=2) + "\n")
    atomic_write_text(out / "README.md", readme(sub, report, settings, job, artifact_name, cfg["variant"]))
    return out
