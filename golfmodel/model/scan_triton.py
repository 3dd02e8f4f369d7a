"""The fused CfC scan on CUDA: gates + recurrence in one Triton kernel per pass, as a torch op (docs/decisions/scan.md).

    h = fused_cfc_scan(x, b, log_dt, reset, out_dtype=torch.float32)  # x = W1 x̂, b = W2 x̂ (B, T, D)
    available() -> bool; unavailable_reason() -> str
    scan_traffic_bytes(B, T, D, io_bytes=2, h_bytes=None) -> ScanTraffic  # analytic HBM bytes per layer

`fused_cfc_scan` computes exactly what `cfc.cfc_gates` + `cfc.cfc_scan` compute from softplus(x),
b and Δt = exp(log_dt), with the reset at BOS, but reads x and b in their own dtype (bf16 under
autocast) and keeps every gate and the state in fp32 registers. h is written in `out_dtype`:
fp32 by default (as the torch path), or the autocast dtype, in which case the kernel rounds only
the stored copy (round to nearest even, bit for bit `fused_cfc_scan(...).to(bf16)`) and the
backward takes ∂L/∂h in that dtype and upcasts it in registers, so neither pass has a separate
cast kernel around it. It is two `torch.library.triton_op`s
(`golf::cfc_scan_fwd`, `golf::cfc_scan_bwd`) joined by `register_autograd`, so Dynamo traces it
without a graph break (fullgraph) and inductor launches the kernels itself; the fake (meta)
implementation is the op's own Python body, which triton_op traces with fake tensors.

Triton is optional: without it (or without `torch.library.triton_op`) `available()` is False and
the model runs the chunked torch scan. On CPU tensors the kernels run only under Triton's
interpreter (TRITON_INTERPRET=1 in the environment before golfmodel is imported; the test suite's
conftest sets it on machines without CUDA). `golfmodel.model.scan_check.self_check` compares it
with the chunked torch scan on a device (for `golf doctor gpu`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

try:  # optional: a CPU machine without triton still imports the library
    from golfmodel.model import scan_kernels as _k

    _IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - exercised only where triton is missing
    _k = None  # type: ignore[assignment]
    _IMPORT_ERROR = str(exc)

BLOCK_T = 32  # tokens per associative_scan tile (the sequential loop runs T / BLOCK_T times per program)
BLOCK_D = 32  # channels per program
# Warps per program. ptxas for sm_90 at 32 x 32 tiles: forward 72 registers at 4 warps; backward
# 231 at 4 warps and 128 at 8 (no spills either way), so the backward takes 8 for occupancy.
FWD_WARPS, BWD_WARPS = 4, 8
# what the kernel may store h as (float64: an fp64 caller gets the fp32 state widened, as a cast did)
OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def unavailable_reason() -> str:
    """Why the fused scan cannot run here ('' if it can)."""
    if _k is None:
        return f"triton is not importable ({_IMPORT_ERROR})"
    if not hasattr(torch.library, "triton_op"):
        return f"torch {torch.__version__} has no torch.library.triton_op (needs torch >= 2.6)"
    return ""


def available() -> bool:
    """True where the fused scan can run: triton importable and torch new enough."""
    return not unavailable_reason()


def interpreted() -> bool:
    """True if the kernels were built by Triton's interpreter (TRITON_INTERPRET=1): they then take CPU tensors."""
    return _k is not None and type(_k.cfc_scan_fwd_kernel).__name__ == "InterpretedFunction"


def _n_chunks(T: int) -> int:
    return (T + BLOCK_T - 1) // BLOCK_T  # plain ints and SymInts alike


if available():
    from torch._subclasses.fake_tensor import is_fake
    from torch.fx.experimental.proxy_tensor import get_proxy_mode
    from torch.library import triton_op, wrap_triton

    def _launch(kernel: Any, grid: tuple[int, int], *args: Any, **meta: Any) -> None:
        """wrap_triton(kernel)[grid](...), which compiled kernels turn into a graph node when traced.

        Under the interpreter wrap_triton hands back the bare kernel, which cannot be put in a graph:
        Dynamo's shape propagation on fake tensors skips the launch (only shapes are wanted, and
        backend="eager" then calls the op itself), and a tracer that would record the body as the
        graph (AOTAutograd, inductor) is refused rather than left holding an empty output.
        """
        if interpreted() and any(is_fake(a) for a in args if isinstance(a, Tensor)):
            if get_proxy_mode() is not None:
                raise RuntimeError(
                    "the Triton interpreter's kernels cannot be traced into a graph: compile with "
                    "backend='eager' on CPU (a CUDA device traces the compiled kernels)"
                )
            return
        wrap_triton(kernel)[grid](*args, **meta)

    @triton_op("golf::cfc_scan_fwd", mutates_args=())
    def _scan_fwd(
        x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor, out_dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        """(h (B, T, D) in out_dtype, state entering each chunk (B, n_chunks, D) fp32)."""
        B, T, D = x.shape
        h = torch.empty((B, T, D), dtype=out_dtype, device=x.device)  # the fake impl's dtype too
        ckpt = torch.empty((B, _n_chunks(T), D), dtype=torch.float32, device=x.device)
        grid = (B, (D + BLOCK_D - 1) // BLOCK_D)
        _launch(
            _k.cfc_scan_fwd_kernel, grid, x, b, log_dt, reset, h, ckpt, T, D,
            BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, num_warps=FWD_WARPS,
        )  # fmt: skip
        return h, ckpt

    @triton_op("golf::cfc_scan_bwd", mutates_args=())
    def _scan_bwd(
        x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor, ckpt: Tensor, grad_h: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(∂x in x's dtype, ∂b in b's dtype, ∂log_dt (D,) fp32)."""
        B, T, D = x.shape
        dx = torch.empty_like(x)
        db = torch.empty_like(b)
        dlogdt = torch.empty((B, D), dtype=torch.float32, device=x.device)  # per-sequence partials
        grid = (B, (D + BLOCK_D - 1) // BLOCK_D)
        _launch(
            _k.cfc_scan_bwd_kernel, grid, x, b, log_dt, reset, ckpt, grad_h, dx, db, dlogdt, T, D,
            BLOCK_T=BLOCK_T, BLOCK_D=BLOCK_D, num_warps=BWD_WARPS,
        )  # fmt: skip
        return dx, db, dlogdt.sum(0)

    def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        x, b, log_dt, reset, _ = inputs
        ctx.save_for_backward(x, b, log_dt, reset, output[1])

    def _backward(ctx: Any, grad_h: Tensor, grad_ckpt: Tensor | None) -> tuple[Tensor | None, ...]:
        x, b, log_dt, reset, ckpt = ctx.saved_tensors
        # ∂L/∂h arrives in h's dtype (bf16 under autocast); the kernel upcasts it on load
        dx, db, dlogdt = torch.ops.golf.cfc_scan_bwd(x, b, log_dt, reset, ckpt, grad_h.contiguous())
        return dx, db, dlogdt, None, None

    _scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def fused_cfc_scan(
    x: Tensor, b: Tensor, log_dt: Tensor, reset: Tensor | None, *, out_dtype: torch.dtype = torch.float32
) -> Tensor:
    """h_t = decay_t·h_{t-1} + c_t from the CfC gate pre-activations, fused (module docstring).

    x: (B, T, D) W1 output (a = softplus(x)); b: (B, T, D) W2 output; log_dt: (D,); reset: (B, T)
    bool, True at BOS (or None). Returns h (B, T, D) in `out_dtype` (fp32, bf16, fp16, fp64; the state
    is fp32 either way, only the stored h is rounded). Gradients flow to x, b and log_dt.
    """
    if not available():
        raise RuntimeError(f"cfc_scan='triton': {unavailable_reason()}")
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"fused_cfc_scan: out_dtype must be one of {OUT_DTYPES}, got {out_dtype}")
    if x.dim() != 3 or b.shape != x.shape or log_dt.shape != (x.shape[2],):
        raise ValueError(
            f"fused_cfc_scan: x and b must be (B, T, D) and log_dt (D,), got {tuple(x.shape)}, "
            f"{tuple(b.shape)}, {tuple(log_dt.shape)}"
        )
    if x.device.type != "cuda" and not interpreted():
        raise RuntimeError(
            f"fused_cfc_scan: tensors on {x.device} need Triton's interpreter: set TRITON_INTERPRET=1 "
            "before golfmodel is imported (or use cfc_scan='torch' off CUDA)"
        )
    B, T, D = x.shape
    if reset is None:
        reset_u8 = torch.zeros((B, T), dtype=torch.uint8, device=x.device)
    else:
        if reset.shape != (B, T) or reset.dtype != torch.bool:
            raise ValueError(
                f"fused_cfc_scan: reset must be (B, T) bool, got {tuple(reset.shape)} {reset.dtype}"
            )
        reset_u8 = reset.contiguous().view(torch.uint8)
    h, _ = torch.ops.golf.cfc_scan_fwd(
        x.contiguous(), b.contiguous(), log_dt.float().contiguous(), reset_u8, out_dtype
    )
    return h


@dataclass(frozen=True, kw_only=True)
class ScanTraffic:
    """Analytic HBM traffic of one CfC layer's fused scan (bytes), assuming a shifted re-read hits cache."""

    forward_bytes: int
    backward_bytes: int
    tensor_bytes: int  # one full (B, T, D) fp32 pass, the unit the issue counts in

    @property
    def total_bytes(self) -> int:
        return self.forward_bytes + self.backward_bytes

    @property
    def fp32_passes(self) -> float:
        """Forward + backward traffic in full (B, T, D) fp32 passes (the SPEC's ≤ ~10 contract)."""
        return self.total_bytes / self.tensor_bytes


def scan_traffic_bytes(
    B: int,
    T: int,
    D: int,
    *,
    io_bytes: int = 2,
    h_bytes: int | None = None,
    block_t: int = BLOCK_T,
    block_d: int = BLOCK_D,
) -> ScanTraffic:
    """Bytes the fused scan reads and writes per CfC layer at (B, T, D), forward and backward.

    io_bytes: bytes per element of x = W1 x̂, b = W2 x̂ and of their gradients (2 under bf16
    autocast, 4 in fp32). h_bytes: bytes per element of h and ∂L/∂h (the `out_dtype`); None means
    io_bytes, as the model runs (bf16 h under autocast, fp32 h in fp32). Forward: read x, b, reset;
    write h and the fp32 chunk checkpoint. Backward: read x, b, reset, the checkpoint and ∂L/∂h;
    write ∂x, ∂b and the per-sequence ∂log Δt partials. Small terms (log Δt per program) are included.
    """
    hb = io_bytes if h_bytes is None else h_bytes
    n = B * T * D
    n_chunks = math.ceil(T / block_t)
    ckpt = 4 * B * n_chunks * D
    per_program_dt = 4 * B * math.ceil(D / block_d) * block_d
    forward = 2 * io_bytes * n + B * T + hb * n + ckpt + per_program_dt
    backward = 2 * io_bytes * n + 2 * B * T + ckpt + hb * n + 2 * io_bytes * n + 4 * B * D + per_program_dt
    return ScanTraffic(forward_bytes=forward, backward_bytes=backward, tensor_bytes=4 * n)
