"""Self-check of the fused CfC scan against the chunked torch scan, for `golf doctor gpu` (docs/decisions/scan.md).

    from golfmodel.model.scan_check import self_check
    report = self_check(8, 1024, 576)                 # on CUDA: max abs errors, timings, GB/s
    report = self_check(1, 40, 8, repeats=1)          # on CPU: under TRITON_INTERPRET=1, toy size

    PYTHONPATH=. python -m golfmodel.model.scan_check [--shape B T D] [--sweep] [--json FILE]
        prints the check as a table; --sweep times tile sizes and warps (CUDA), to tune
        scan_triton.BLOCK_T / BLOCK_D / FWD_WARPS / BWD_WARPS.

Kept apart from `scan_triton` so the exported submission script (which embeds the modules the
model imports) does not carry it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from golfmodel.model import scan_triton as st


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
    `ok` is every max abs error ≤ rtol·max(1, max |reference|), and `max_abs_err_h_bf16` (the fused
    scan's bf16 h against its fp32 h cast by torch: the store's rounding) exactly 0.
    Timing (ms, median of `repeats`) of forward and forward + backward for both, with bf16 inputs
    on CUDA, the fused scan storing h in bf16 as the model runs it under autocast (fp32
    elsewhere), and the fused kernel's achieved GB/s from `scan_traffic_bytes`. On CPU
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
    reset[0, min(T - 1, st.BLOCK_T // 2)] = True  # mid-chunk
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

    fused = grads(lambda xx, bb, ld: st.fused_cfc_scan(xx, bb, ld, reset), torch.float32)
    ref = grads(torch_path, torch.float32)
    names = ("h", "dx", "db", "dlog_dt")
    out: dict[str, Any] = {"shape": [B, T, D], "device": str(dev), "interpreted": st.interpreted()}
    out["blocks"] = {
        "BLOCK_T": st.BLOCK_T,
        "BLOCK_D": st.BLOCK_D,
        "FWD_WARPS": st.FWD_WARPS,
        "BWD_WARPS": st.BWD_WARPS,
    }
    ok = True
    for name, f, r in zip(names, fused, ref, strict=True):
        err, scale = (f.float() - r.float()).abs().max().item(), r.float().abs().max().item()
        out[f"max_abs_err_{name}"], out[f"max_abs_{name}"] = err, scale
        ok = ok and err <= rtol * max(1.0, scale)  # fp32 vs fp32: only summation order differs
    with torch.no_grad():  # the bf16 store must round exactly as torch's cast of the fp32 h does
        h_bf16 = st.fused_cfc_scan(x, b, log_dt, reset, out_dtype=torch.bfloat16)
        out["max_abs_err_h_bf16"] = (h_bf16.float() - fused[0].bfloat16().float()).abs().max().item()
    out["ok"] = ok and out["max_abs_err_h_bf16"] == 0.0

    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    xt, bt = x.to(dtype).clone().requires_grad_(), b.to(dtype).clone().requires_grad_()
    ldt = log_dt.clone().requires_grad_()

    def run(fn: Any, backward: bool) -> Any:
        def go() -> None:
            h = fn(xt, bt, ldt)
            if backward:
                h.backward(gh.to(h.dtype))

        return go

    fused_fn = lambda xx, bb, ld: st.fused_cfc_scan(xx, bb, ld, reset, out_dtype=dtype)  # noqa: E731
    out["timing_dtype"] = str(dtype).removeprefix("torch.")
    out["fused_fwd_ms"] = _time_ms(run(fused_fn, False), dev, repeats)
    out["fused_fwd_bwd_ms"] = _time_ms(run(fused_fn, True), dev, repeats)
    out["torch_fwd_ms"] = _time_ms(run(torch_path, False), dev, repeats)
    out["torch_fwd_bwd_ms"] = _time_ms(run(torch_path, True), dev, repeats)
    traffic = st.scan_traffic_bytes(
        B, T, D, io_bytes=xt.element_size(), block_t=st.BLOCK_T, block_d=st.BLOCK_D
    )
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

    if st.interpreted():
        raise RuntimeError(
            "compile_for_gpu: the kernels were built by the interpreter (unset TRITON_INTERPRET)"
        )
    io, f32 = f"*{io_dtype}", "*fp32"  # h and ∂L/∂h in io_dtype too: bf16 under autocast
    blocks = {"T": "i32", "D": "i32", "BLOCK_T": "constexpr", "BLOCK_D": "constexpr"}
    kernels = {
        "forward": (k.cfc_scan_fwd_kernel, st.FWD_WARPS, dict(
            x_ptr=io, b_ptr=io, logdt_ptr=f32, reset_ptr="*u8", h_ptr=io, ckpt_ptr=f32, **blocks)),
        "backward": (k.cfc_scan_bwd_kernel, st.BWD_WARPS, dict(
            x_ptr=io, b_ptr=io, logdt_ptr=f32, reset_ptr="*u8", ckpt_ptr=f32, gh_ptr=io, dx_ptr=io,
            db_ptr=io, dlogdt_ptr=f32, **blocks)),
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name, (fn, warps, sig) in kernels.items():
        src = ASTSource(fn=fn, signature=sig, constexprs={"BLOCK_T": st.BLOCK_T, "BLOCK_D": st.BLOCK_D})
        binary = compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
        if not binary.asm.get("cubin"):
            raise RuntimeError(f"compile_for_gpu: ptxas produced no cubin for the {name} kernel")
        out[name] = {"num_warps": binary.metadata.num_warps, "shared_bytes": binary.metadata.shared}
    return out


SWEEP = [(bt, bd, fw, bw) for bt in (16, 32, 64) for bd in (32, 64) for fw, bw in ((4, 4), (4, 8), (8, 8))]


def sweep(B: int, T: int, D: int, *, device: str = "cuda", repeats: int = 10) -> list[dict[str, Any]]:
    """self_check at every (BLOCK_T, BLOCK_D, FWD_WARPS, BWD_WARPS) of SWEEP; restores the defaults after."""
    saved = (st.BLOCK_T, st.BLOCK_D, st.FWD_WARPS, st.BWD_WARPS)
    rows = []
    try:
        for st.BLOCK_T, st.BLOCK_D, st.FWD_WARPS, st.BWD_WARPS in SWEEP:
            rows.append(self_check(B, T, D, device=device, repeats=repeats))
    finally:
        st.BLOCK_T, st.BLOCK_D, st.FWD_WARPS, st.BWD_WARPS = saved
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = "| BLOCK_T | BLOCK_D | warps f/b | ok | err h | err dx | fused fwd ms | fused fwd+bwd ms | GB/s | torch fwd+bwd ms |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        b = r["blocks"]
        lines.append(
            f"| {b['BLOCK_T']} | {b['BLOCK_D']} | {b['FWD_WARPS']}/{b['BWD_WARPS']} | {r['ok']} "
            f"| {r['max_abs_err_h']:.1e} | {r['max_abs_err_dx']:.1e} | {r['fused_fwd_ms']:.3f} "
            f"| {r['fused_fwd_bwd_ms']:.3f} | {r['fused_fwd_bwd_GBps']:.0f} | {r['torch_fwd_bwd_ms']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the self-check (or the sweep) as a table; exit 1 if a check fails."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m golfmodel.model.scan_check", description=__doc__.splitlines()[0]
    )
    p.add_argument("--shape", type=int, nargs=3, default=(8, 1024, 576), metavar=("B", "T", "D"))
    p.add_argument(
        "--device", default=None, help="cuda (default where available) or cpu (needs TRITON_INTERPRET=1)"
    )
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--sweep", action="store_true", help="time every tile size / warp count in SWEEP")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    B, T, D = args.shape
    rows = (
        sweep(B, T, D, device=args.device or "cuda", repeats=args.repeats)
        if args.sweep
        else [self_check(B, T, D, device=args.device, repeats=args.repeats)]
    )
    print(f"fused CfC scan vs chunked torch scan at B={B} T={T} D={D} on {rows[0]['device']}")
    print(_table(rows))
    if args.json:
        from golfmodel.atomic import atomic_write_json

        atomic_write_json(args.json, rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
