"""Self-check of the fused CfC scan against the chunked torch scan, for `golf doctor gpu` (docs/decisions/scan.md).

    from golfmodel.model.scan_check import self_check
    report = self_check(8, 1024, 576)                 # on CUDA: max abs errors, timings, GB/s
    report = self_check(1, 40, 8, repeats=1)          # on CPU: under TRITON_INTERPRET=1, toy size

Kept apart from `scan_triton` so the exported submission script (which embeds the modules the
model imports) does not carry it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from golfmodel.model.scan_triton import BLOCK_T, fused_cfc_scan, interpreted, scan_traffic_bytes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(fn: Any, device: torch.device, repeats: int) -> float:
    """Median wall time of fn() in ms, after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def self_check(
    B: int = 8, T: int = 1024, D: int = 576, *, device: str | torch.device | None = None, seed: int = 0,
    repeats: int = 10, rtol: float = 1e-4,
) -> dict[str, Any]:  # fmt: skip
    """Fused scan vs the chunked torch scan (the reference) at (B, T, D): max abs errors and timings.

    Correctness in fp32 inputs (so the errors are the kernel's, not bf16 rounding): h, ∂x, ∂b,
    ∂log_dt against `cfc_gates` + `cfc_scan` under autograd, with BOS resets at t = 0 and mid-chunk;
    `ok` is every max abs error ≤ rtol·max(1, max |reference|).
    Timing (ms, median of `repeats`) of forward and forward + backward for both, with bf16 inputs on
    CUDA (fp32 elsewhere), and the fused kernel's achieved GB/s from `scan_traffic_bytes`. On CPU
    it needs the interpreter (slow: use a toy shape, e.g. B=1, T=40, D=8, repeats=1).
    """
    from golfmodel.model.cfc import cfc_gates, cfc_scan

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(B, T, D, generator=g).to(dev)
    b = torch.randn(B, T, D, generator=g).to(dev)
    log_dt = (torch.rand(D, generator=g) * math.log(100.0) + math.log(0.01)).to(dev)
    reset = torch.rand(B, T, generator=g).lt(0.02)
    reset[:, 0] = True
    reset[0, min(T - 1, BLOCK_T // 2)] = True
    reset = reset.to(dev)
    gh = torch.randn(B, T, D, generator=g).to(dev)

    def torch_path(xx: Tensor, bb: Tensor, ld: Tensor) -> Tensor:
        log_decay, c = cfc_gates(torch.nn.functional.softplus(xx.float()), bb.float(), torch.exp(ld))
        return cfc_scan(log_decay, c, reset, 64)

    def grads(fn: Any, dtype: torch.dtype) -> tuple[Tensor, ...]:
        xx = x.to(dtype).clone().requires_grad_()  # fresh leaves: no gradient shared between the two paths
        bb = b.to(dtype).clone().requires_grad_()
        ld = log_dt.clone().requires_grad_()
        h = fn(xx, bb, ld)
        h.backward(gh)
        return h.detach(), xx.grad, bb.grad, ld.grad

    fused = grads(lambda xx, bb, ld: fused_cfc_scan(xx, bb, ld, reset), torch.float32)
    ref = grads(torch_path, torch.float32)
    names = ("h", "dx", "db", "dlog_dt")
    out: dict[str, Any] = {"shape": [B, T, D], "device": str(dev), "interpreted": interpreted()}
    ok = True
    for name, f, r in zip(names, fused, ref, strict=True):
        err, scale = (f.float() - r.float()).abs().max().item(), r.float().abs().max().item()
        out[f"max_abs_err_{name}"], out[f"max_abs_{name}"] = err, scale
        ok = ok and err <= rtol * max(1.0, scale)  # fp32 vs fp32: only summation order differs
    out["ok"] = ok

    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    xt, bt = x.to(dtype).clone().requires_grad_(), b.to(dtype).clone().requires_grad_()
    ldt = log_dt.clone().requires_grad_()

    def run(fn: Any, backward: bool) -> Any:
        def go() -> None:
            h = fn(xt, bt, ldt)
            if backward:
                h.backward(gh)

        return go

    fused_fn = lambda xx, bb, ld: fused_cfc_scan(xx, bb, ld, reset)  # noqa: E731
    out["timing_dtype"] = str(dtype).removeprefix("torch.")
    out["fused_fwd_ms"] = _time_ms(run(fused_fn, False), dev, repeats)
    out["fused_fwd_bwd_ms"] = _time_ms(run(fused_fn, True), dev, repeats)
    out["torch_fwd_ms"] = _time_ms(run(torch_path, False), dev, repeats)
    out["torch_fwd_bwd_ms"] = _time_ms(run(torch_path, True), dev, repeats)
    traffic = scan_traffic_bytes(B, T, D, io_bytes=xt.element_size())
    out["fused_traffic_bytes"] = traffic.total_bytes
    out["fused_fp32_passes"] = round(traffic.fp32_passes, 3)
    out["fused_fwd_bwd_GBps"] = traffic.total_bytes / (out["fused_fwd_bwd_ms"] * 1e-3) / 1e9
    return out


def compile_for_gpu(arch: int = 90, io_dtype: str = "bf16") -> dict[str, Any]:
    """Compile both kernels with Triton's own compiler for CUDA sm_<arch> (PTX + ptxas), no GPU needed.

    The interpreter runs the kernels' Python, not Triton's compiler, so this is the CPU-side check
    that the GPU build type-checks, lowers (the reverse associative_scan included) and assembles.
    Needs compiled kernels: TRITON_INTERPRET unset when golfmodel was imported (run it in a fresh
    process). Returns {kernel: {"num_warps", "shared_bytes"}} at the sizes `fused_cfc_scan` launches.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile

    from golfmodel.model import scan_kernels as k
    from golfmodel.model.scan_triton import BLOCK_D, BWD_WARPS, FWD_WARPS

    if interpreted():
        raise RuntimeError(
            "compile_for_gpu: the kernels were built by the interpreter (unset TRITON_INTERPRET)"
        )
    io, f32 = f"*{io_dtype}", "*fp32"
    blocks = {"T": "i32", "D": "i32", "BLOCK_T": "constexpr", "BLOCK_D": "constexpr"}
    kernels = {
        "forward": (k.cfc_scan_fwd_kernel, FWD_WARPS, dict(
            x_ptr=io, b_ptr=io, logdt_ptr=f32, reset_ptr="*u8", h_ptr=f32, ckpt_ptr=f32, **blocks)),
        "backward": (k.cfc_scan_bwd_kernel, BWD_WARPS, dict(
            x_ptr=io, b_ptr=io, logdt_ptr=f32, reset_ptr="*u8", ckpt_ptr=f32, gh_ptr=f32, dx_ptr=io,
            db_ptr=io, dlogdt_ptr=f32, **blocks)),
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name, (fn, warps, sig) in kernels.items():
        src = ASTSource(fn=fn, signature=sig, constexprs={"BLOCK_T": BLOCK_T, "BLOCK_D": BLOCK_D})
        binary = compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
        if not binary.asm.get("cubin"):
            raise RuntimeError(f"compile_for_gpu: ptxas produced no cubin for the {name} kernel")
        out[name] = {"num_warps": binary.metadata.num_warps, "shared_bytes": binary.metadata.shared}
    return out
