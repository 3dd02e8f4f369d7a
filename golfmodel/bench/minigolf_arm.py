"""One arm × seed of the minigolf bench: train (subprocess), recalibrate, pack, reload, score — cached.

    result = run_arm(spec)        # ArmSpec -> dict (also written to <run_dir>/result.json)

The trainer runs as `python -m golfmodel.train --job job.json` with one intra-op thread, so two
arms can run side by side on two cores; everything after training (τ recalibration, packing,
scoring) happens in the calling process, which the bench's pool also pins to one thread. An
arm's result is cached under its key (the full training job without its out_dir, the content
hashes of the data, the evaluation settings, the packer, the `golfmodel` source and the torch
version): a second bench with nothing changed reads `result.json` back; an interrupted arm
resumes from the trainer's last checkpoint.

Scores (SPEC §3, bits per byte, on the whole validation stream of the bench):
- prequant_bpb: the final training weights before packing, every Q2Linear with QAT off, i.e.
  the full-precision shadow weights of q2-geode (the fp32 twin and gpt-int8 have no others);
- final_bpb: the model reloaded from its artifact — `q2bn.load_model` for the q2 arms (2-bit
  rows, or fp32 rows for the twin), the baseline's int8 + zlib round trip for gpt-int8.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_write_json, atomic_write_text

ARM_KINDS = ("q2-geode", "q2-geode-fp32", "gpt-int8")
RESULT_FORMAT = 1  # bump to invalidate every cached arm result (a change of what an arm computes)
PACKERS = {"q2-geode": "q2", "q2-geode-fp32": "fp32", "gpt-int8": "int8zlib"}


class ArmFailed(RuntimeError):
    """The arm's trainer exited non-zero; the message names the run folder and the log's tail."""


@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    """How arms are scored: window length, stride (None = non-overlapping), target rule, batch."""

    seq_len: int = 256
    stride: int | None = None
    rule: str = "all"
    batch_size: int = 32
    max_tokens: int | None = None  # score only the first N validation tokens (None = all)


@dataclass(frozen=True, kw_only=True)
class ArmSpec:
    """Everything one arm × seed needs; `job` is the TrainJob dict (its out_dir is `run_dir`)."""

    name: str  # row label: "q2-geode", "q2-geode-fp32", "gpt-int8", or "q2-geode+<ablation>"
    kind: str  # one of ARM_KINDS: decides QAT, the packer and the prequant view
    seed: int
    job: dict[str, Any]
    eval: EvalSpec
    val_shards: tuple[str, ...]
    tokenizer: str  # "byte260" or a sentencepiece model path (byte table of the scorer)
    recalibrate: str  # "off" | "mse" | "act": the τ-recalibration stage on q2-geode
    data_hash: str
    pack_options: dict[str, Any] = field(default_factory=dict)  # gpt-int8: {"keep_float": N}
    group: str = "main"  # "main" or "ablation"
    ablation: str | None = None
    key: str = ""
    run_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArmSpec:
        d = dict(d)
        d["eval"] = EvalSpec(**d["eval"])
        d["val_shards"] = tuple(d["val_shards"])
        return cls(**d)


# --- cache keys ------------------------------------------------------------------------------------


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# what an arm's numbers depend on: this module and everything it, the trainer, the τ recalibration,
# the packers and the scorer import (the bench's reports, statistics and CLI are left out)
RESULT_ROOTS = (
    "golfmodel.bench.minigolf_arm",
    "golfmodel.train.__main__",
    "golfmodel.train.trainer",
    "golfmodel.train.recalibrate",
    "golfmodel.q2bn.artifact",
    "golfmodel.q2bn.int8zlib",
    "golfmodel.eval",
    "golfmodel.data.bigram",
    "golfmodel.data.tokenise",
    "golfmodel.model.budget",
)


@cache
def source_hash() -> str:
    """sha256 over the sources an arm's result depends on (module names + text): a change re-runs arms."""
    from golfmodel.export.bundle import collect_modules

    modules = collect_modules(RESULT_ROOTS, exclude=("golfmodel.bench", "golfmodel.export"), check=False)
    return sha256_json({name: src for name, (_, src) in modules.items()})


def arm_key(spec: ArmSpec) -> str:
    """Cache key of an arm: its job (shard paths and out_dir left out: the data enters by hash)."""
    import torch

    job = {
        k: v for k, v in spec.job.items() if k not in ("out_dir", "train_shards", "val_shards", "tokenizer")
    }
    job["train"] = {k: v for k, v in job["train"].items() if k not in ("progress_bar", "log_every")}
    return sha256_json(
        {
            "format": RESULT_FORMAT,
            "kind": spec.kind,
            "job": job,
            "eval": asdict(spec.eval),
            "recalibrate": spec.recalibrate,
            "pack": spec.pack_options,
            "data": spec.data_hash,
            "source": source_hash(),
            "torch": torch.__version__,
        }
    )


def cached_result(spec: ArmSpec) -> dict[str, Any] | None:
    """The arm's stored result when its key matches, else None."""
    path = Path(spec.run_dir) / "result.json"
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return res if res.get("key") == spec.key else None


# --- the arm ---------------------------------------------------------------------------------------


def _train(spec: ArmSpec, run_dir: Path) -> dict[str, Any]:
    """Run the trainer subprocess (one thread) unless its final outputs for this job already exist."""
    job_path = run_dir / "job.json"
    summary_path = run_dir / "train_summary.json"
    text = json.dumps(spec.job, indent=2, sort_keys=True) + "\n"
    if (
        summary_path.exists()
        and (run_dir / "final.pt").exists()
        and job_path.exists()
        and job_path.read_text() == text
    ):
        return json.loads(summary_path.read_text())
    atomic_write_text(job_path, text)
    log_path = run_dir / "train.log"
    with open(log_path, "ab") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "golfmodel.train", "--job", str(job_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            # the child inherits the environment; its job sets torch to one thread (train.threads = 1)
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise ArmFailed(
            f"{spec.name} seed {spec.seed}: trainer exited {proc.returncode} in {run_dir}:\n{tail}"
        )
    return json.loads(summary_path.read_text())


def _score(model: Any, tokens: Any, table: Any, ev: EvalSpec) -> Any:
    from golfmodel.eval import score

    model.eval()
    return score(
        model, tokens, table, seq_len=ev.seq_len, stride=ev.stride, rule=ev.rule, batch_size=ev.batch_size
    )


def _set_qat(model: Any, on: bool) -> None:
    from golfmodel.quant.q2linear import q2_linears

    for layer in q2_linears(model):
        layer.set_qat(on)


def _recalibrate(spec: ArmSpec, run_dir: Path) -> tuple[Path, dict[str, Any] | None]:
    """The pipeline's τ-recalibration stage on final.pt (q2-geode): (weights to pack, its record)."""
    if spec.kind != "q2-geode" or spec.recalibrate == "off":
        return run_dir / "final.pt", None
    from golfmodel.train.config import TrainJob
    from golfmodel.train.recalibrate import recalibrate

    out = run_dir / "recalibrated.pt"
    res = recalibrate(run_dir / "final.pt", TrainJob.from_dict(spec.job), mode=spec.recalibrate, out_path=out)  # type: ignore[arg-type]
    return out, res.to_dict()


def val_curve(run_dir: Path, global_batch_tokens: int) -> list[dict[str, float]]:
    """Periodic validation points of the trainer's metrics.jsonl: [{"step", "tokens", "val_bpb"}]."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        {"step": r["step"], "tokens": (r["step"] + 1) * global_batch_tokens, "val_bpb": r["val_bpb"]}
        for r in rows
        if r.get("kind") == "val"
    ]


def run_arm(spec: ArmSpec) -> dict[str, Any]:
    """Train, pack, reload and score one arm × seed; cached by `spec.key` in `spec.run_dir/result.json`."""
    hit = cached_result(spec)
    if hit is not None:
        return {**hit, "cached": True}
    import numpy as np
    import torch

    from golfmodel.train.checkpoint import load_final
    from golfmodel.train.validation import load_table, load_val_tokens

    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = _train(spec, run_dir)
    train_s = time.perf_counter() - t0

    vocab = int(spec.job["model"]["vocab_size"])
    tokens = load_val_tokens(spec.val_shards, spec.eval.max_tokens or 0, vocab)
    table = load_table(spec.tokenizer)
    model, _ = load_final(run_dir / "final.pt")
    params = int(sum(p.numel() for p in model.parameters()))
    with torch.no_grad():
        _set_qat(model, False)  # the full-precision (shadow) weights, before any rounding
        pre = _score(model, tokens, table, spec.eval)
    packed_from, recal = _recalibrate(spec, run_dir)
    model, _ = load_final(packed_from)  # QAT flags as the trainer left them (q2-geode: all on)
    art, load = _pack(model, spec, run_dir)
    reloaded = load(art)
    with torch.no_grad():
        final = _score(reloaded, tokens, table, spec.eval)
    result = {
        "key": spec.key,
        "name": spec.name,
        "kind": spec.kind,
        "group": spec.group,
        "ablation": spec.ablation,
        "seed": spec.seed,
        "params": params,
        "artifact_bytes": art.stat().st_size,
        "artifact": art.name,
        "steps": int(summary["steps"]),
        "tokens": int(summary["tokens"]),
        "tokens_per_param": summary["tokens"] / params,
        "tokens_per_s": float(summary["tokens_per_s"]),
        "train_seconds": float(summary["seconds"]),
        "prequant_bpb": pre.bpb,
        "prequant_nll": pre.nll_nats,
        "final_bpb": final.bpb,
        "final_nll": final.nll_nats,
        "recalibration": recal,
        "n_targets": final.n_targets,
        "n_bytes": final.n_bytes,
        "eval_mode": final.mode,
        "eval_rule": final.rule,
        "curve": val_curve(run_dir, int(spec.job["train"]["global_batch_tokens"])),
        "model": spec.job["model"],
        "wall_seconds": time.perf_counter() - t0,
        "train_wall_seconds": train_s,
        "extra": spec.extra,
    }
    if not (np.isfinite(result["prequant_bpb"]) and np.isfinite(result["final_bpb"])):
        raise ArmFailed(f"{spec.name} seed {spec.seed}: non-finite bpb in {run_dir}")
    atomic_write_json(run_dir / "result.json", result)
    return {**result, "cached": False}


def _pack(model: Any, spec: ArmSpec, run_dir: Path) -> tuple[Path, Any]:
    """Write the arm's artifact; returns (path, loader path -> eval-mode model)."""
    vocab = int(spec.job["model"]["vocab_size"])
    tok_id = "byte260" if spec.tokenizer == "byte260" else f"sentencepiece:{Path(spec.tokenizer).name}"
    meta = {"tokenizer": {"id": tok_id, "vocab_size": vocab}, "settings_hash": spec.key}
    kind = PACKERS[spec.kind]
    if kind == "int8zlib":
        from golfmodel.q2bn.int8zlib import Int8ZlibConfig, load_int8zlib, pack_int8zlib

        path = run_dir / "model.int8.ptz"
        icfg = Int8ZlibConfig(keep_float_max_numel=int(spec.pack_options.get("keep_float", 65_536)))
        pack_int8zlib(model, path, meta=meta, cfg=icfg)
        return path, lambda p: load_int8zlib(p)[0]
    from golfmodel.q2bn.artifact import load_model, pack_model

    path = run_dir / ("model.q2bn" if kind == "q2" else "model.fp32.q2bn")
    pack_model(model, path, meta=meta, linear_kind=kind)
    return path, lambda p: load_model(p)[0]
