"""Score an artifact on validation shards: the engine behind `python -m golfmodel.eval` and `golf eval`.

    result = score_artifact(ArtifactEval(artifact=..., val=(...), tokenizer=...), rank=r, world_size=W)
    cmd = eval_command(spec, nproc=8, json_out="val.json")    # torchrun ... -m golfmodel.eval ...
    row = eval_throughput(model, device="cuda")                # tokens/s on a synthetic slice (GPU check)

Plain Python + torch (+ sentencepiece for the byte table): it runs on a GPU box without Prefect
or pydantic. The model is rebuilt from the artifact alone (Q2BN, or the gpt-int8 arm's
int8 + zlib file, told apart by the first byte), so the score is the reloaded model's (SPEC §3).
On CUDA the forward runs under bf16 autocast (as the challenge's baseline evaluates); on CPU in
fp32. With several processes every rank scores its share of the windows (`golfmodel.eval.sharded`).
"""

from __future__ import annotations

import glob
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from golfmodel.eval.bpb import RULES, BpbResult, check_audit, score
from golfmodel.eval.bytes import ByteTable, make_audit
from golfmodel.eval.loading import Dtype, load_artifact, model_fn_for

Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True, kw_only=True)
class ArtifactEval:
    """What to score and how; the defaults are the validate stage's (`EvalSettings`)."""

    artifact: str
    val: tuple[str, ...]  # shard paths or glob patterns, in order
    tokenizer: str = "byte260"  # a sentencepiece .model path, or "byte260"
    seq_len: int = 1024
    stride: int | None = 64  # None = non-overlapping windows
    rule: str = "all"
    batch_size: int = 16
    max_tokens: int | None = None
    device: Device = "auto"
    dtype: Dtype = "auto"  # auto = bf16 on CUDA, fp32 on CPU
    audit: bool = True  # decoded-text byte audit; a mismatch is an error
    extra: dict[str, Any] = field(default_factory=dict)  # copied into the JSON record

    def __post_init__(self) -> None:
        if not self.val:
            raise ValueError("val: give at least one shard path or glob")
        if self.rule not in RULES:
            raise ValueError(f"rule: must be one of {RULES}, got {self.rule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: must be auto, cpu or cuda, got {self.device!r}")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise ValueError(f"dtype: must be auto, bf16 or fp32, got {self.dtype!r}")
        if self.tokenizer != "byte260" and not Path(self.tokenizer).is_file():
            raise FileNotFoundError(f"tokenizer: {self.tokenizer} is not a file (a sentencepiece .model)")


def resolve_device(device: Device, local_rank: int = 0) -> torch.device:
    """cuda:<local_rank> for cuda (or auto with a GPU), else cpu."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device: cuda was asked for but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def expand_val(patterns: Sequence[str]) -> list[str]:
    """Shard paths from paths/globs: each pattern's matches sorted, patterns in order, duplicates once."""
    out: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if glob.has_magic(pat) else ([pat] if Path(pat).exists() else [])
        if not hits:
            raise FileNotFoundError(f"--val {pat}: no such shard")
        out.extend(h for h in hits if h not in out)
    return out


def load_tokens(paths: Sequence[str], vocab_size: int, max_tokens: int | None) -> np.ndarray:
    """The concatenated shards (checked against the vocab), cut to `max_tokens`; uint16 or int64 (N,)."""
    from golfmodel.data.shards import read_shard

    parts, n = [], 0
    for p in paths:
        t = read_shard(p, vocab_size=vocab_size)
        if max_tokens is not None:
            t = t[: max_tokens - n]
        parts.append(np.asarray(t))
        n += len(t)
        if max_tokens is not None and n >= max_tokens:
            break
    return np.concatenate(parts)


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def score_artifact(
    spec: ArtifactEval, *, rank: int = 0, world_size: int = 1, local_rank: int = 0
) -> dict[str, Any]:
    """Load, score (this rank's share; all ranks get the totals), audit; the JSON record of the score.

    Raises `AuditError` when the decoded-text bytes disagree with the byte table (spec.audit).
    """
    t0 = time.perf_counter()
    device = resolve_device(spec.device, local_rank)
    table = (
        ByteTable.byte260() if spec.tokenizer == "byte260" else ByteTable.from_sentencepiece(spec.tokenizer)
    )
    paths = expand_val(spec.val)
    tokens = load_tokens(paths, table.vocab_size, spec.max_tokens)
    model, fmt = load_artifact(spec.artifact)
    model.to(device)
    load_s = time.perf_counter() - t0
    audit = make_audit(spec.tokenizer) if spec.audit and rank == 0 else None
    res: BpbResult = score(
        model_fn_for(model, device, spec.dtype), tokens, table, seq_len=spec.seq_len, stride=spec.stride,
        rule=spec.rule, batch_size=spec.batch_size, device=device, audit=audit, rank=rank,
        world_size=world_size,
    )  # fmt: skip
    if audit is not None:
        check_audit(res)
    return {
        "bpb": res.bpb,
        "loss": res.nll_nats,
        "tokens": res.n_targets,
        "bytes": res.n_bytes,
        "audit_bytes": res.audit_bytes,
        "windows": res.n_windows,
        "rank_windows": list(res.rank_windows),
        "seq_len": res.seq_len,
        "stride": res.stride,
        "mode": res.mode,
        "rule": res.rule,
        "nproc": world_size,
        "device": device.type,
        "autocast": "bf16" if device.type == "cuda" and spec.dtype != "fp32" else "fp32",
        "seconds": res.seconds,
        "load_seconds": load_s,
        "tokens_per_second": res.tokens_per_second,
        "artifact": str(spec.artifact),
        "artifact_format": fmt,
        "artifact_sha256": _sha256(spec.artifact),
        "val": paths,
        "tokenizer": spec.tokenizer,
        **spec.extra,
    }


def eval_command(
    spec: ArtifactEval, *, nproc: int = 1, json_out: str | Path | None = None, python: str = sys.executable
) -> list[str]:
    """The command that scores `spec`: `python -m golfmodel.eval` (nproc 1) or under `torchrun --standalone`."""
    if nproc < 1:
        raise ValueError(f"nproc: must be >= 1, got {nproc}")
    launcher = (
        [python]
        if nproc == 1
        else [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    )
    args = [spec.artifact, "--val", *spec.val]
    args += ["--variant", "byte260"] if spec.tokenizer == "byte260" else ["--tokenizer", spec.tokenizer]
    args += ["--seq-len", str(spec.seq_len), "--stride", "none" if spec.stride is None else str(spec.stride)]
    args += ["--rule", spec.rule, "--batch-size", str(spec.batch_size)]
    args += ["--device", spec.device, "--dtype", spec.dtype]
    if spec.max_tokens is not None:
        args += ["--max-tokens", str(spec.max_tokens)]
    if not spec.audit:
        args.append("--no-audit")
    if json_out is not None:
        args += ["--json", str(json_out)]
    return [*launcher, "-m", "golfmodel.eval", *args]


def eval_throughput(
    model: nn.Module,
    *,
    device: str | torch.device = "cuda",
    seq_len: int = 1024,
    stride: int = 64,
    batch_size: int = 64,
    n_tokens: int = 65_536,
    vocab_size: int | None = None,
    dtype: Dtype = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Scored targets per second of the sliding-window scorer on a synthetic slice (bf16 on CUDA).

    One warm-up pass on a short slice first (kernel selection, allocator), then the timed pass.
    For the one-shot GPU check; the model is any eval-mode LM (no artifact or tokenizer needed).
    """
    device = torch.device(device)
    V = vocab_size or int(getattr(getattr(model, "config", None), "vocab_size", 0) or 1024)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, V, size=n_tokens + 1).astype(np.int64)
    tokens[0] = 1
    table = ByteTable(
        base_bytes=np.ones(V, dtype=np.int16),
        has_space=np.zeros(V, dtype=np.bool_),
        is_boundary=np.zeros(V, dtype=np.bool_),
        vocab_size=V,
        kind="synthetic",
    )
    model.eval().to(device)
    fn = model_fn_for(model, device, dtype)
    kw = dict(seq_len=seq_len, stride=stride, batch_size=batch_size, device=device)
    score(fn, tokens[: min(len(tokens), seq_len * 4 + 1)], table, **kw)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    res = score(fn, tokens, table, **kw)  # its final read-back waits for the device
    return {
        "device": str(device),
        "autocast": "bf16" if device.type == "cuda" and dtype != "fp32" else "fp32",
        "seq_len": seq_len,
        "stride": stride,
        "batch_size": batch_size,
        "targets": res.n_targets,
        "windows": res.n_windows,
        "seconds": res.seconds,
        "tokens_per_second": res.tokens_per_second,
    }
