"""Dry run of a training job: size, memory, FLOPs and time on a stated GPU, without training.

    report = dry_run(job, world_size=8, device_name="H100")
    print(report.format())

The model is built on the meta device (no memory, no init). Packed bytes come from
`golfmodel.model.param_report` (payload at each tensor's storage kind, before zstd, without
record headers). The rest are estimates, stated as such:
- memory per GPU = fp32 weights + fp32 grads + optimiser state (Muon momentum; AdamW m, v)
  + the averaged copy + activations of one micro-batch in bf16 (a per-block rule of thumb,
  fp32 CfC scan tensors, fp32 logits and their gradient);
- training FLOPs per token = 6·N + 12·L_attn·d·T (PaLM's count, N = matrix parameters used per
  token including the head; no causal discount);
- time = FLOPs / (GPUs · peak · MFU);
- sliding-window evaluation: every `stride` tokens a window of `eval_seq_len` tokens is run
  forward (2·N + 4·L_attn·d·T per token), against the challenge's 10-minute evaluation limit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from golfmodel.train.config import TrainJob
from golfmodel.train.muon import split_params

# dense bf16 tensor-core peaks (no sparsity), FLOP/s
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}
GPU_MEMORY_GB = {"H100": 80.0, "H200": 141.0, "A100": 80.0, "L40S": 48.0}
FINEWEB_VAL_TOKENS = 62_000_000  # ≈ the challenge's sp1024 validation split (50,000 documents)
EVAL_LIMIT_S = 600.0  # the challenge's evaluation time limit


@dataclass(frozen=True, kw_only=True)
class DryRunReport:
    """Projected size, memory, compute and time of a job on `world_size` GPUs of `device_name`."""

    arm: str
    params: int
    matrix_params: int  # block matrices (Q2Linear / Linear) — Muon's share
    packed_bytes: int  # payload before compression
    bytes_by_kind: dict[str, int]
    world_size: int
    device_name: str
    grad_accum: int
    micro_batch_tokens: int
    memory_gb: dict[str, float]  # per GPU
    memory_total_gb: float
    gpu_memory_gb: float
    flops_per_token: float
    flops_per_step: float
    mfu: float
    step_seconds: float
    wallclock_seconds: float | None
    max_steps: int | None
    projected_steps: int
    projected_tokens: int
    eval_tokens: int
    eval_seq_len: int
    eval_stride: int
    eval_flops: float
    eval_seconds: float
    eval_limit_seconds: float
    command: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A readable table."""
        gb = self.memory_gb
        rows = [
            ("arm", self.arm),
            ("parameters", f"{self.params:,} ({self.matrix_params:,} in block matrices)"),
            (
                "raw payload (pre-zstd)",
                f"{self.packed_bytes:,} B ("
                + ", ".join(f"{k} {v:,}" for k, v in self.bytes_by_kind.items())
                + ")",
            ),
            (
                "GPUs",
                f"{self.world_size} x {self.device_name}, grad accum {self.grad_accum}, micro-batch {self.micro_batch_tokens:,} tok",
            ),
            (
                "memory / GPU",
                f"{self.memory_total_gb:.2f} GB of {self.gpu_memory_gb:.0f} GB ("
                + ", ".join(f"{k} {v:.2f}" for k, v in gb.items())
                + ")",
            ),
            ("FLOPs", f"{self.flops_per_token:.3e} / token, {self.flops_per_step:.3e} / step"),
            ("step time", f"{self.step_seconds * 1e3:.1f} ms at {self.mfu:.0%} MFU"),
            (
                "budget",
                f"{self.projected_steps:,} steps, {self.projected_tokens:,} tokens"
                + (f" in {self.wallclock_seconds:.0f} s" if self.wallclock_seconds else "")
                + (f" (max_steps {self.max_steps:,})" if self.max_steps else ""),
            ),
            (
                "sliding eval",
                f"{self.eval_tokens:,} tok, window {self.eval_seq_len}, stride {self.eval_stride}: "
                f"{self.eval_flops:.3e} FLOPs, {self.eval_seconds:.1f} s of {self.eval_limit_seconds:.0f} s limit"
                + (" (OK)" if self.eval_seconds <= self.eval_limit_seconds else " (OVER)"),
            ),
            ("command", self.command),
        ]
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def _meta_model(job: TrainJob) -> nn.Module:
    from golfmodel.model import build_model

    with torch.device("meta"):
        return build_model(job.model)


def _activation_bytes_per_token(job: TrainJob) -> float:
    """Rough saved-activation bytes per token for one forward+backward (bf16 autocast)."""
    cfg = job.model
    d, h, V = cfg.d_model, cfg.mlp_hidden, cfg.vocab_size
    letters = cfg.pattern * cfg.depth if cfg.arm == "q2-geode" else "G" * cfg.depth
    per = 0.0
    for k in letters:
        per += 2 * (4 * d + 3 * h)  # norms, residual inputs, MLP in/gate/up/act (bf16)
        if k == "G":
            per += 2 * 6 * d  # q, k, v, attention out, rope copies (flash attention: no T² scores)
        else:
            per += 2 * 3 * d + 4 * 6 * d  # projections (bf16) + fp32 gates, decay, c, scan state
    return per + 10 * V  # fp32 logits, their gradient, bf16 head output


def dry_run(
    job: TrainJob,
    world_size: int,
    device_name: str = "H100",
    *,
    mfu: float = 0.4,
    eval_tokens: int = FINEWEB_VAL_TOKENS,
    eval_seq_len: int | None = None,
    eval_stride: int = 64,
) -> DryRunReport:
    """Project a job onto `world_size` GPUs of `device_name` (see the module docstring for the model)."""
    if device_name not in PEAK_BF16:
        raise ValueError(f"dry_run: unknown device {device_name!r}; known: {sorted(PEAK_BF16)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"dry_run: mfu must be in (0, 1], got {mfu}")
    from golfmodel.model import param_report

    cfg, t = job.model, job.train
    model = _meta_model(job)
    rows = param_report(model)
    by_kind: dict[str, int] = {}
    for r in rows:
        by_kind[r.kind] = by_kind.get(r.kind, 0) + r.bytes
    n_params = sum(p.numel() for p in model.parameters())  # tied tensors once
    muon_p, _, _ = split_params(model)
    matrix = n_muon = sum(p.numel() for p in muon_p)  # block matrices
    n_adam = n_params - n_muon
    n_q2 = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and hasattr(m, "set_qat")
    )

    accum = t.grad_accum(world_size)
    micro_tokens = t.micro_batch_seqs * t.seq_len
    gib = 1e9  # decimal GB, as GPU memory is quoted
    memory = {
        "weights": 4 * n_params / gib,
        "grads": 4 * n_params / gib,
        "optimiser": (4 * n_muon + 8 * n_adam) / gib,
        "averaging": (4 * n_params / gib) if job.averaging.kind != "none" else 0.0,
        "qat": 5 * n_q2 / gib,  # dequantised forward weights (fp32) + STE masks
        "activations": _activation_bytes_per_token(job) * micro_tokens / gib,
    }
    n_attn = cfg.depth * cfg.pattern.count("G") if cfg.arm == "q2-geode" else cfg.depth
    n_flop = matrix + cfg.vocab_size * cfg.d_model  # block matrices + the head matmul
    flops_token = 6 * n_flop + 12 * n_attn * cfg.d_model * t.seq_len
    flops_step = flops_token * t.global_batch_tokens
    peak = PEAK_BF16[device_name]
    step_s = flops_step / (world_size * peak * mfu)
    wall = t.max_wallclock_seconds or None
    steps = math.inf
    if wall:
        steps = wall / step_s
    if t.max_steps:
        steps = min(steps, t.max_steps)
    steps_i = int(steps)
    L = eval_seq_len or t.seq_len
    n_windows = max(1, math.ceil((eval_tokens - L) / eval_stride) + 1)
    eval_flops = n_windows * L * (2 * n_flop + 4 * n_attn * cfg.d_model * L)
    eval_s = eval_flops / (world_size * peak * mfu)
    return DryRunReport(
        arm=cfg.arm,
        params=n_params,
        matrix_params=matrix,
        packed_bytes=sum(by_kind.values()),
        bytes_by_kind=by_kind,
        world_size=world_size,
        device_name=device_name,
        grad_accum=accum,
        micro_batch_tokens=micro_tokens,
        memory_gb={k: round(v, 4) for k, v in memory.items()},
        memory_total_gb=round(sum(memory.values()), 4),
        gpu_memory_gb=GPU_MEMORY_GB[device_name],
        flops_per_token=float(flops_token),
        flops_per_step=float(flops_step),
        mfu=mfu,
        step_seconds=step_s,
        wallclock_seconds=wall,
        max_steps=t.max_steps or None,
        projected_steps=steps_i,
        projected_tokens=steps_i * t.global_batch_tokens,
        eval_tokens=eval_tokens,
        eval_seq_len=L,
        eval_stride=eval_stride,
        eval_flops=float(eval_flops),
        eval_seconds=eval_s,
        eval_limit_seconds=EVAL_LIMIT_S,
        command=f"torchrun --standalone --nproc_per_node={world_size} -m golfmodel.train --job {job.out_dir}/RUN.json",
    )
