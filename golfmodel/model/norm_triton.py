"""A fused residual add + RMSNorm for CUDA as a torch op, and its torch reference (docs/decisions/gpu.md).

    s, y = fused_add_rms_norm(x, m, weight, eps)     # s = x + m (fp32), y = rms_norm(s)·w in out_dtype
    s, y = add_rms_norm_reference(x, m, weight, eps) # the same in torch ops
    available() -> bool; add_norm_traffic_bytes(rows, D, io_bytes=2) -> (fwd, bwd)

Issue 10 item 5 asked for it where inductor leaves norm + residual at ~19 fp32 passes of the
stream per block against ~14 needed. It is NOT wired into the model: counted as an opaque op in
the block (the step-cost model's stand-in method), the kernel's own 7.0 passes replace ~7.2 ms of
inductor's norm + residual at h100x8 but the neighbours it cuts off (QLinear's τ scaling of the
mixer output, fused into the residual add by inductor; the sum of the MLP's two input gradients,
fused into the norm backward) cost more: "after" went from 101.7 to 104.0 ms. It stays as a
tested candidate for a kernel that also absorbs those neighbours; `golf doctor gpu` times it
against the torch ops on a lent GPU. Two `torch.library.triton_op`s (`golf::add_rms_norm_fwd`,
`_bwd`) joined by `register_autograd`, as the fused scan, so Dynamo would trace it without a break.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # optional: a CPU machine without triton still imports the library
    from golfmodel.model import norm_kernels as _k

    _IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - exercised only where triton is missing
    _k = None  # type: ignore[assignment]
    _IMPORT_ERROR = str(exc)

ROWS = 4  # rows per program (the backward's ∂w partials: one (D,) row per program)
NUM_WARPS = 4


def available() -> bool:
    """True where the fused kernel can be built: triton importable and torch.library.triton_op present."""
    return _k is not None and hasattr(torch.library, "triton_op")


def interpreted() -> bool:
    """True if the kernels were built by Triton's interpreter (TRITON_INTERPRET=1): they take CPU tensors."""
    return _k is not None and type(_k.add_rms_norm_fwd_kernel).__name__ == "InterpretedFunction"


def _block_d(D: int) -> int:
    return 1 << max(4, math.ceil(math.log2(D)))


if available():
    from torch._subclasses.fake_tensor import is_fake
    from torch.fx.experimental.proxy_tensor import get_proxy_mode
    from torch.library import triton_op, wrap_triton

    def _launch(kernel: Any, grid: tuple[int], *args: Any, **meta: Any) -> None:
        """wrap_triton(kernel)[grid](...); under the interpreter fake tensors skip the launch (as the scan)."""
        if interpreted() and any(is_fake(a) for a in args if isinstance(a, Tensor)):
            if get_proxy_mode() is not None:
                raise RuntimeError("the Triton interpreter's kernels cannot be traced into a graph")
            return
        wrap_triton(kernel)[grid](*args, **meta)

    @triton_op("golf::add_rms_norm_fwd", mutates_args=())
    def _fwd(
        x: Tensor, m: Tensor, w: Tensor, eps: float, out_dtype: torch.dtype
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(s (N, D) fp32, y (N, D) out_dtype, rstd (N,) fp32) for rows N of x, m."""
        N, D = x.shape
        s = torch.empty((N, D), dtype=torch.float32, device=x.device)
        y = torch.empty((N, D), dtype=out_dtype, device=x.device)
        rstd = torch.empty((N,), dtype=torch.float32, device=x.device)
        grid = ((N + ROWS - 1) // ROWS,)
        _launch(
            _k.add_rms_norm_fwd_kernel, grid, x, m, w, s, y, rstd, N, D, eps,
            ROWS=ROWS, BLOCK_D=_block_d(D), num_warps=NUM_WARPS,
        )  # fmt: skip
        return s, y, rstd

    @triton_op("golf::add_rms_norm_bwd", mutates_args=())
    def _bwd(
        gy: Tensor, gs: Tensor, s: Tensor, rstd: Tensor, w: Tensor, m_dtype: torch.dtype
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(∂x fp32, ∂m in m_dtype, ∂w (D,) fp32)."""
        N, D = s.shape
        n_prog = (N + ROWS - 1) // ROWS
        dx = torch.empty((N, D), dtype=torch.float32, device=s.device)
        dm = torch.empty((N, D), dtype=m_dtype, device=s.device)
        dw = torch.empty((n_prog, D), dtype=torch.float32, device=s.device)
        _launch(
            _k.add_rms_norm_bwd_kernel, (n_prog,), gy, gs, s, rstd, w, dx, dm, dw, N, D,
            ROWS=ROWS, BLOCK_D=_block_d(D), num_warps=NUM_WARPS,
        )  # fmt: skip
        return dx, dm, dw.sum(0)

    def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
        x, m, w, eps, out_dtype = inputs
        ctx.m_dtype, ctx.w_dtype = m.dtype, w.dtype
        ctx.save_for_backward(output[0], output[2], w)

    def _backward(ctx: Any, gs: Tensor | None, gy: Tensor | None, grstd: Tensor | None) -> tuple[Any, ...]:
        s, rstd, w = ctx.saved_tensors
        gs = torch.zeros_like(s) if gs is None else gs.float().contiguous()
        gy = torch.zeros_like(s) if gy is None else gy.contiguous()
        dx, dm, dw = torch.ops.golf.add_rms_norm_bwd(gy, gs, s, rstd, w, ctx.m_dtype)
        return dx, dm, dw.to(ctx.w_dtype), None, None

    _fwd.register_autograd(_backward, setup_context=_setup_context)


def add_rms_norm_reference(x: Tensor, m: Tensor, weight: Tensor, eps: float | None) -> tuple[Tensor, Tensor]:
    """(s, y): s = x + m, y = rms_norm(s)·weight, in torch ops (what the block runs off CUDA)."""
    s = x + m
    return s, F.rms_norm(s, (s.shape[-1],), weight=weight.to(s.dtype), eps=eps)


def fused_add_rms_norm(
    x: Tensor, m: Tensor, weight: Tensor, eps: float | None, out_dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """(s, y) of `add_rms_norm_reference` in one kernel each way: x (..., D) fp32, m (..., D) any float.

    s is fp32; y is `out_dtype` (default: the autocast dtype when autocast is on, else fp32), the
    dtype its consumer (a linear layer) would cast it to anyway.
    """
    if not available():
        raise RuntimeError(
            f"fused_add_rms_norm: triton is not usable here ({_IMPORT_ERROR or 'no triton_op'})"
        )
    if x.shape != m.shape or weight.shape != (x.shape[-1],):
        raise ValueError(
            f"fused_add_rms_norm: x and m must match and weight be (D,), got {tuple(x.shape)}, "
            f"{tuple(m.shape)}, {tuple(weight.shape)}"
        )
    if x.device.type != "cuda" and not interpreted():
        raise RuntimeError(f"fused_add_rms_norm: tensors on {x.device} need TRITON_INTERPRET=1")
    if out_dtype is None:
        on = torch.is_autocast_enabled(x.device.type)
        out_dtype = torch.get_autocast_dtype(x.device.type) if on else torch.float32
    D = x.shape[-1]
    e = float(torch.finfo(torch.float32).eps if eps is None else eps)
    s, y, _ = torch.ops.golf.add_rms_norm_fwd(
        x.float().reshape(-1, D).contiguous(), m.reshape(-1, D).contiguous(), weight.float().contiguous(), e,
        out_dtype,
    )  # fmt: skip
    return s.view(x.shape), y.view(x.shape)


def add_norm_traffic_bytes(
    rows: int, D: int, *, io_bytes: int = 2, rows_per_program: int = ROWS
) -> tuple[int, int]:
    """(forward, backward) HBM bytes of one fused add + RMSNorm over `rows` rows of width D.

    io_bytes: bytes per element of m, y and their gradients (2 under bf16 autocast). Forward: read
    x (4) and m, write s (4), y and rstd. Backward: read ∂y, ∂s (4), s (4) and rstd, write ∂x (4),
    ∂m and the per-program ∂w partials (read again by their sum).
    """
    n = rows * D
    partials = 4 * math.ceil(rows / rows_per_program) * D
    fwd = (4 + io_bytes + 4 + io_bytes) * n + 4 * rows
    bwd = (io_bytes + 4 + 4 + 4 + io_bytes) * n + 4 * rows + 2 * partials
    return fwd, bwd
