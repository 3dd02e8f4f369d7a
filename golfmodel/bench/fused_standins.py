"""Opaque stand-ins for the CUDA-only fused kernels, so inductor can count what each kernel leaves around it.

    with fused_standins():              # CfCMixer now calls the stand-in op
        counts = count_step(block, inputs, seq_len=1024, autocast_dtype=torch.bfloat16)

The kernel counted this way is the fused CfC scan. (The same construction counted the fused
residual add + RMSNorm of `norm_triton` as a net loss, so that kernel is not selected:
docs/decisions/gpu.md.)

The fused kernel (`golfmodel.model.scan_triton.fused_cfc_scan`) reads the W1/W2 outputs in their
autocast dtype and computes softplus, the CfC gates, the recurrence and all their gradients
inside; a CPU compile cannot lower it (the Triton interpreter's kernels cannot be traced). The
stand-in is two `torch.library.custom_op`s with exactly the fused op's signature, dtypes and
shapes (forward: x, b, log Δt, reset as uint8 → h fp32 and the chunk checkpoint; backward: the
same plus ∂L/∂h in fp32 → ∂x, ∂b in their dtypes and per-sequence ∂log Δt partials), wrapped
like `fused_cfc_scan` (contiguous inputs, `log_dt.float()`, `grad_h.float()`). Inductor treats a
custom op as an extern call, so the generated kernels it counts are what the real run keeps
outside the kernel (the h cast to bf16, its gradient, the sum of the ∂log Δt partials); the
kernel's own traffic is `scan_traffic_bytes`, analytic. The ops' CPU bodies return zeros: the
count only runs the graph eagerly, it never reads the values.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any
from unittest import mock

import torch
from torch import Tensor

from golfmodel.model.scan_triton import BLOCK_T


def _chunks(T: int) -> int:
    return (T + BLOCK_T - 1) // BLOCK_T


@torch.library.custom_op("golfcount::cfc_scan_fwd", mutates_args=())
def _fwd(x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
    B, T, D = x.shape
    return x.new_zeros((B, T, D), dtype=torch.float32), x.new_zeros((B, _chunks(T), D), dtype=torch.float32)


@_fwd.register_fake
def _fwd_fake(x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
    B, T, D = x.shape
    return x.new_empty((B, T, D), dtype=torch.float32), x.new_empty((B, _chunks(T), D), dtype=torch.float32)


@torch.library.custom_op("golfcount::cfc_scan_bwd", mutates_args=())
def _bwd(
    x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor, ckpt: Tensor, grad_h: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    return (
        torch.zeros_like(x),
        torch.zeros_like(b),
        x.new_zeros((x.shape[0], x.shape[2]), dtype=torch.float32),
    )


@_bwd.register_fake
def _bwd_fake(
    x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor, ckpt: Tensor, grad_h: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    return (
        torch.empty_like(x),
        torch.empty_like(b),
        x.new_empty((x.shape[0], x.shape[2]), dtype=torch.float32),
    )


def _setup(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, Tensor]) -> None:
    x, b, log_dt, reset = inputs
    ctx.save_for_backward(x, b, log_dt, reset, output[1])


def _backward(ctx: Any, grad_h: Tensor, grad_ckpt: Tensor | None) -> tuple[Tensor | None, ...]:
    x, b, log_dt, reset, ckpt = ctx.saved_tensors
    dx, db, dlogdt = torch.ops.golfcount.cfc_scan_bwd(x, b, log_dt, reset, ckpt, grad_h.float().contiguous())
    return dx, db, dlogdt.sum(0), None


_fwd.register_autograd(_backward, setup_context=_setup)


def standin_cfc_scan(x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor | None) -> Tensor:
    """`fused_cfc_scan`'s wrapper around the stand-in op: same argument handling, h (B, T, D) fp32."""
    B, T, D = x.shape
    if reset is None:
        reset_u8 = torch.zeros((B, T), dtype=torch.uint8, device=x.device)
    else:
        reset_u8 = reset.contiguous().view(torch.uint8)
    h, _ = torch.ops.golfcount.cfc_scan_fwd(
        x.contiguous(), b.contiguous(), log_dt.float().contiguous(), reset_u8
    )
    return h


@contextlib.contextmanager
def fused_standins() -> Iterator[None]:
    """Inside: every CfCMixer takes its fused-scan branch, with the stand-in op as the kernel."""
    from golfmodel.model import cfc

    scan = types.SimpleNamespace(fused_cfc_scan=standin_cfc_scan)
    with (
        mock.patch.object(cfc, "resolve_scan", lambda choice, device: "triton"),
        mock.patch.object(cfc, "scan_triton", scan),
    ):
        yield
