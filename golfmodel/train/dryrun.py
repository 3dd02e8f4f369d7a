"""Dry run of a training job: size, memory, FLOPs and time on a stated GPU, without training.

    report = dry_run(job, world_size=8, device_name="H100")
    print(report.format())

The model is built on the meta device (no memory, no init). Packed bytes come from
`golfmodel.model.param_report` (payload at each tensor's storage kind, before zstd, without
record headers). Memory per GPU is an estimate: fp32 weights + fp32 grads + optimiser state
(Muon momentum; AdamW m, v) + the averaged copy + activations of one micro-batch in bf16 (a
per-block rule of thumb, fp32 CfC scan tensors, fp32 logits and their gradient).

Step time, tokens in the budget, the sliding-window evaluation (stride `eval_stride`, the full
validation split, all ranks) and the compile warm-up are the step-cost model's
(`golfmodel.bench.step_bench.step_cost`: FLOPs and inductor's bytes counted on the real blocks,
calibrated on the challenge baseline), for today's code and for the fused design; projections.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from golfmodel.train.config import TrainJob
from golfmodel.train.muon import split_params

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
    step_cost: Any  # golfmodel.bench.step_bench.StepCost: today's and the fused design, calibrated
    step_seconds: float  # today's code, calibrated
    wallclock_seconds: float | None
    max_steps: int | None
    projected_steps: int
    projected_tokens: int
    eval_tokens: int
    eval_stride: int
    eval_seconds: float
    eval_limit_seconds: float
    command: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["step_cost"] = self.step_cost.summary()
        return d

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
            (
                "step time",
                f"{self.step_seconds * 1e3:.1f} ms today, {self.step_cost.after.step_ms:.1f} ms after the fused "
                f"design (projection, calibration ratio {self.step_cost.ratio:.3f})",
            ),
            (
                "budget",
                f"{self.projected_steps:,} steps, {self.projected_tokens:,} tokens"
                + (f" in {self.wallclock_seconds:.0f} s" if self.wallclock_seconds else "")
                + (f" (max_steps {self.max_steps:,})" if self.max_steps else ""),
            ),
            (
                "sliding eval",
                f"{self.eval_tokens:,} tok, stride {self.eval_stride}, {self.world_size} ranks: "
                f"{self.eval_seconds:.1f} s of {self.eval_limit_seconds:.0f} s limit"
                + (" (OK)" if self.eval_seconds <= self.eval_limit_seconds else " (OVER)"),
            ),
            (
                "compile warm-up",
                f"{self.step_cost.today.graphs} graph(s), ~{self.step_cost.today.compile_warmup_seconds:.0f} s "
                f"(after: {self.step_cost.after.graphs}, ~{self.step_cost.after.compile_warmup_seconds:.0f} s)",
            ),
            ("command", self.command),
        ]
        w = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows) + "\n\n" + self.step_cost.format()


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
    cache_dir: str | None = None,
    eval_stride: int = 64,
    calibration_ratio: float | None = None,
) -> DryRunReport:
    """Project a job onto `world_size` GPUs of `device_name` (see the module docstring).

    cache_dir: the step-cost counts' cache; calibration_ratio: given instead of counting the baseline.
    """
    from golfmodel.bench.step_bench import step_cost
    from golfmodel.bench.step_cost import GPUS
    from golfmodel.model import param_report

    if device_name not in GPUS:
        raise ValueError(f"dry_run: unknown device {device_name!r}; known: {sorted(GPUS)}")
    t = job.train
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
    sc = step_cost(
        job, world_size=world_size, gpu=device_name, cache_dir=cache_dir, eval_stride=eval_stride,
        ratio=calibration_ratio,
    )  # fmt: skip
    today = sc.today
    steps = today.steps_in_budget if t.max_wallclock_seconds else t.max_steps
    if t.max_steps:
        steps = min(steps, t.max_steps)
    return DryRunReport(
        arm=job.model.arm,
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
        gpu_memory_gb=GPUS[device_name].memory_gb,
        step_cost=sc,
        step_seconds=today.step_ms / 1e3,
        wallclock_seconds=t.max_wallclock_seconds or None,
        max_steps=t.max_steps or None,
        projected_steps=int(steps),
        projected_tokens=int(steps) * t.global_batch_tokens,
        eval_tokens=today.eval_tokens,
        eval_stride=today.eval_stride,
        eval_seconds=today.eval_seconds,
        eval_limit_seconds=EVAL_LIMIT_S,
        command=f"torchrun --standalone --nproc_per_node={world_size} -m golfmodel.train --job {job.out_dir}/RUN.json",
    )
