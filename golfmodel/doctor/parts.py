"""The parts of `golf doctor gpu` that check correctness and compile: one function each, `part(ctx) -> dict`.

device, rates, scan (`scan_check.self_check`), fake_quant (QLinear on the device vs the CPU),
compile (the full model, zero recompiles across a QAT switch), steps (steady optimiser steps at
the per-rank shape). The timing parts (Muon, τ, evaluation, the projection) are in `perf.py`.
Each part calls the library's public entry points and returns {"status": "ok" | "fail", ...}.
"""

from __future__ import annotations

import importlib
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from golfmodel.model.config import BOS_ID, ModelConfig, geode


@dataclass
class Ctx:
    """What the parts share: device, sizes, the compiled model and the measurements so far."""

    smoke: bool
    device: torch.device
    out: Path
    cache_dir: Path | None
    cfg: ModelConfig
    micro_seqs: int
    micro_batches: int
    seq_len: int
    steps: int
    calibration_ratio: float | None = None  # None: count the baseline (projection part)
    results: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    fwd: Any = None
    backend_calls: list[int] = field(default_factory=lambda: [0])
    deadline: float = float("inf")  # time.perf_counter() past which the running part stops early


# --smoke's toy model: one GQA and one CfC block (the tests count its units once and share them)
SMOKE_MODEL = ModelConfig(
    arm="q2-geode", vocab_size=1024, d_model=32, depth=1, pattern="GC", n_heads=4, n_kv_heads=2, mlp_mult=2.0,
    max_seq_len=64,
)  # fmt: skip
SMOKE_SEQ_LEN = 64


def h100x8_model() -> ModelConfig:
    """The h100x8 preset's model: the budget solver's 16,000,000-byte plan (d 640, 4 x GCCC, SwiGLU x2.2).

    The solver needs zstandard (it confirms with the real packer), which the lent machine lacks,
    so its result is written here; `golf train --dry-run --preset h100x8` prints the solver's
    (63,598,760 parameters). Re-copy it when the preset or the solver changes.
    """
    return geode(1024, d_model=640, groups=4, mlp_mult=2.2)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn: Callable[[], Any], dev: torch.device, iters: int) -> float:
    """Median seconds of `fn()` after one warm-up."""
    fn()
    _sync(dev)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _tokens(ctx: Ctx, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(4, ctx.cfg.vocab_size, (batch, ctx.seq_len + 1), generator=g)
    idx[:, ::397] = BOS_ID  # documents of a few hundred tokens
    return idx.to(ctx.device)


def part_device(ctx: Ctx) -> dict[str, Any]:
    import numpy

    info: dict[str, Any] = {
        "device": str(ctx.device),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    for mod in ("triton", "sentencepiece"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except ImportError:
            info[mod] = None
    if ctx.device.type == "cuda":
        p = torch.cuda.get_device_properties(ctx.device)
        info.update(name=p.name, memory_gb=round(p.total_memory / 1e9, 1), capability=f"{p.major}.{p.minor}")
        info["cuda"] = torch.version.cuda
    ok = ctx.smoke or (ctx.device.type == "cuda" and info["triton"] is not None)
    return {"status": "ok" if ok else "fail", **info}


def part_rates(ctx: Ctx) -> dict[str, Any]:
    n = 256 if ctx.smoke else 8192
    dtype = torch.float32 if ctx.smoke else torch.bfloat16
    a = torch.randn(n, n, device=ctx.device, dtype=dtype)
    b = torch.randn(n, n, device=ctx.device, dtype=dtype)
    s = _timed(lambda: a @ b, ctx.device, 3 if ctx.smoke else 10)
    x = torch.empty(1 << (20 if ctx.smoke else 28), device=ctx.device, dtype=torch.float32)  # 4 MB / 1 GB
    y = torch.empty_like(x)
    c = _timed(lambda: y.copy_(x), ctx.device, 3 if ctx.smoke else 10)
    return {
        "status": "ok",
        "matmul_tflops": 2 * n**3 / s / 1e12,
        "matmul_n": n,
        "matmul_dtype": str(dtype),
        "copy_gbps": 2 * x.numel() * 4 / c / 1e9,  # read + write
    }


def _scan_in_subprocess(shape: tuple[int, int, int]) -> dict[str, Any]:
    """self_check in a fresh process with TRITON_INTERPRET=1 (this process built compiled kernels)."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "scan.json"
        cmd = [sys.executable, "-m", "golfmodel.model.scan_check", "--device", "cpu", "--repeats", "1"]
        cmd += ["--shape", *map(str, shape), "--json", str(out)]
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False)
        if not out.exists():
            raise RuntimeError("scan_check subprocess wrote no result")
        return json.loads(out.read_text())[0]


def part_scan(ctx: Ctx) -> dict[str, Any]:
    """The fused CfC scan (`scan_check.self_check`) against the chunked torch scan; which scan the model runs."""
    from golfmodel.model import scan_triton as st
    from golfmodel.model.cfc import resolve_scan

    use = resolve_scan("auto", ctx.device)
    if not st.available():
        return {"status": "fail", "fused": f"skipped: {st.unavailable_reason()}", "scan_in_use": use}
    shape = (1, 40, 8) if ctx.smoke else (8, 1024, ctx.cfg.d_model)
    if ctx.device.type == "cuda" or st.interpreted():
        from golfmodel.model.scan_check import self_check

        rep = self_check(*shape, device=ctx.device, repeats=1 if ctx.smoke else 10)
    else:  # a CPU process whose kernels were compiled, not interpreted
        rep = _scan_in_subprocess(shape)
    B, T, D = shape
    traffic = st.scan_traffic_bytes(B, T, D, io_bytes=2 if ctx.device.type == "cuda" else 4)
    errs = {k: v for k, v in rep.items() if k.startswith("max_abs_err_")}
    out: dict[str, Any] = {
        "scan_in_use": use,  # "auto" on this device: the fused kernel on CUDA
        "shape": list(shape),
        **errs,
        "fused_fwd_bwd_ms": rep.get("fused_fwd_bwd_ms"),
        "torch_fwd_bwd_ms": rep.get("torch_fwd_bwd_ms"),
        "fused_fwd_bwd_GBps": rep.get("fused_fwd_bwd_GBps"),
        "fp32_passes_per_layer": round(traffic.fp32_passes, 3),
        "traffic_bytes": traffic.total_bytes,
    }
    ok = bool(rep["ok"]) and (ctx.smoke or use == "triton")
    return {"status": "ok" if ok else "fail", **out}


def part_norm(ctx: Ctx) -> dict[str, Any]:
    """The candidate fused residual add + RMSNorm (not in the model) against its torch reference; times on CUDA."""
    from golfmodel.model import norm_triton as nt

    if not nt.available() or (ctx.device.type != "cuda" and not nt.interpreted()):
        return {"status": "ok" if ctx.smoke else "fail", "fused": "skipped: not runnable here"}
    rows, D = (8, 24) if ctx.smoke else (16 * 1024, ctx.cfg.d_model)
    g = torch.Generator().manual_seed(0)
    x, m, gs, gy = (torch.randn(rows, D, generator=g).to(ctx.device) for _ in range(4))
    w = (1 + 0.1 * torch.randn(D, generator=g)).to(ctx.device)

    def run(fn: Callable[..., Any], backward: bool = True) -> tuple[torch.Tensor, ...]:
        leaves = [t.clone().requires_grad_() for t in (x, m, w)]
        s, y = fn(*leaves, None)
        if backward:
            ((s * gs).sum() + (y.float() * gy).sum()).backward()
        return s.detach(), y.detach(), *(t.grad for t in leaves)

    fused, ref = run(nt.fused_add_rms_norm), run(nt.add_rms_norm_reference)
    errs = {
        f"max_abs_err_{k}": (a.float() - b.float()).abs().max().item()
        for k, a, b in zip(("s", "y", "dx", "dm", "dw"), fused, ref, strict=True)
    }
    out: dict[str, Any] = {"shape": [rows, D], **errs}
    if ctx.device.type == "cuda":
        fwd, bwd = nt.add_norm_traffic_bytes(rows, D, io_bytes=4)
        out["fused_fwd_bwd_ms"] = _timed(lambda: run(nt.fused_add_rms_norm), ctx.device, 10) * 1e3
        out["torch_fwd_bwd_ms"] = _timed(lambda: run(nt.add_rms_norm_reference), ctx.device, 10) * 1e3
        out["fused_GBps"] = (
            (fwd + bwd) / (out["fused_fwd_bwd_ms"] * 1e-3) / 1e9
        )  # incl. the harness's own ops
    return {"status": "ok" if max(errs.values()) < 1e-3 else "fail", **out}


def part_fake_quant(ctx: Ctx) -> dict[str, Any]:
    """QLinear's fake-quant (levels·τ, masked STE) on the device equals the CPU's bit for bit; its forward agrees."""
    from golfmodel.quant.qlinear import Q2Linear

    torch.manual_seed(1)
    n_in, n_out = (32, 64) if ctx.smoke else (640, 1408)
    ref = Q2Linear(n_in, n_out)  # τ fitted exactly at init (CPU)
    ref.set_qat(True)
    x = torch.randn(4, 16, n_in, generator=torch.Generator().manual_seed(2))
    g = torch.randn(n_out, n_in, generator=torch.Generator().manual_seed(3))
    outs = []
    for dev in (torch.device("cpu"), ctx.device):
        w = ref.weight.detach().to(dev).requires_grad_(True)
        t = ref.tau.detach().to(dev)
        q = ref.kind.fake_quant(w, t, masked=True)  # (out, in) = ℓ·τ
        (q * g.to(dev)).sum().backward()
        lv = ref.kind.levels(w.detach(), t)
        outs.append((q.detach().cpu(), w.grad.cpu(), lv.cpu()))
    layer = Q2Linear(n_in, n_out).to(ctx.device)
    layer.load_state_dict(ref.state_dict())
    layer.set_qat(True)
    with torch.no_grad():
        y_ref = ref(x)
        y_dev = layer(x.to(ctx.device)).float().cpu()  # fp32: W = ℓ·τ exactly
        rel = ((y_dev - y_ref).abs().max() / y_ref.abs().max()).item()
        out: dict[str, Any] = {"fp32_forward_rel_err": rel}
        if ctx.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y_bf = layer(x.to(ctx.device)).float().cpu()  # (x ℓᵀ)·τ, τ in fp32
            out["bf16_forward_rel_err"] = ((y_bf - y_ref).abs().max() / y_ref.abs().max()).item()
    out["weights_equal"] = torch.equal(outs[0][0], outs[1][0])
    out["ste_grad_equal"] = torch.equal(outs[0][1], outs[1][1])
    out["levels_equal"] = torch.equal(outs[0][2], outs[1][2])
    ok = out["weights_equal"] and out["ste_grad_equal"] and out["levels_equal"] and rel < 1e-4
    ok = ok and out.get("bf16_forward_rel_err", 0.0) < 3e-2
    return {"status": "ok" if ok else "fail", **out}


def _loss(ctx: Ctx, idx: torch.Tensor, fwd: Any = None) -> torch.Tensor:
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if ctx.device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    with amp:
        logits = (ctx.fwd if fwd is None else fwd)(idx[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())


def part_compile(ctx: Ctx) -> dict[str, Any]:
    """Compile the model with QAT on in all but the shallowest group, switch it on (`set_qat`): 0 recompiles.

    Recompiles are counted twice: calls of the compile backend after the first compile, and
    dynamo's own `counters["stats"]["unique_graphs"]`.
    """
    import torch._dynamo as dynamo
    from torch._dynamo.utils import counters

    from golfmodel.model import build_model
    from golfmodel.model.cfc import scan_in_use

    torch.manual_seed(0)
    ctx.model = build_model(ctx.cfg).to(ctx.device)
    groups = ctx.model.qat_groups()
    for grp in groups[1:]:
        for layer in grp:
            layer.set_qat(True)
    inner = "inductor" if ctx.device.type == "cuda" else "eager"

    def counting(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
        ctx.backend_calls[0] += 1
        if inner == "eager":
            return gm.forward
        from torch._inductor.compile_fx import compile_fx

        return compile_fx(gm, example_inputs)

    dynamo.reset()
    counters.clear()
    ctx.fwd = (
        None  # set only once compiled: a part stopped at its cap leaves the later parts nothing half-built
    )
    fwd = torch.compile(ctx.model, backend=counting)
    idx = _tokens(ctx, ctx.micro_seqs)
    t0 = time.perf_counter()
    _loss(ctx, idx, fwd).backward()
    _sync(ctx.device)
    compile_s = time.perf_counter() - t0
    first, graphs = ctx.backend_calls[0], counters["stats"]["unique_graphs"]
    for layer in groups[0]:
        layer.set_qat(True)  # the last QAT switch of a run
    t0 = time.perf_counter()
    _loss(ctx, idx, fwd).backward()
    _sync(ctx.device)
    after_s = time.perf_counter() - t0
    ctx.fwd = fwd
    recompiles = ctx.backend_calls[0] - first
    new_graphs = counters["stats"]["unique_graphs"] - graphs
    ctx.model.zero_grad(set_to_none=True)
    return {
        "status": "ok" if recompiles == 0 and new_graphs == 0 else "fail",
        "backend": inner,
        "scan_in_use": scan_in_use(ctx.model, ctx.device),
        "params": sum(p.numel() for p in ctx.model.parameters()),
        "compile_seconds": compile_s,
        "graphs": graphs,
        "recompiles_on_qat_switch": recompiles,
        "new_graphs_on_qat_switch": new_graphs,
        "after_switch_seconds": after_s,
    }


def part_steps(ctx: Ctx) -> dict[str, Any]:
    """Steady optimiser steps at the per-rank shape: grad accumulation, clip, Muon + AdamW, zero_grad.

    Stops early (and says so) when the part's time cap nears; peak memory from the allocator.
    """
    from golfmodel.train.config import OptimConfig
    from golfmodel.train.muon import build_optimizers

    if ctx.fwd is None:
        return {"status": "fail", "error": "needs the compile part"}
    opts = build_optimizers(ctx.model, OptimConfig())  # Muon compiles its NS graphs here (before the clock)
    batches = [_tokens(ctx, ctx.micro_seqs, seed=k) for k in range(ctx.micro_batches)]

    def step() -> None:
        for idx in batches:
            (_loss(ctx, idx) / ctx.micro_batches).backward()
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), 1.0)
        for o in opts:
            o.step()
        for o in opts:
            o.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    step()  # first full step: optimiser state, any leftover compile
    _sync(ctx.device)
    first_s = time.perf_counter() - t0
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    done, t0 = 0, time.perf_counter()
    while done < ctx.steps:
        step()
        done += 1
        if done % 5 == 0:  # a sync every 5 steps, to see the clock; the steps between run queued
            _sync(ctx.device)
            per = (time.perf_counter() - t0) / done
            if time.perf_counter() + 5 * per > ctx.deadline - 2.0:
                break
    _sync(ctx.device)
    ms = (time.perf_counter() - t0) / done * 1e3
    peak = torch.cuda.max_memory_allocated(ctx.device) / 1e9 if ctx.device.type == "cuda" else None
    tokens = ctx.micro_seqs * ctx.micro_batches * ctx.seq_len
    return {
        "status": "ok",
        "steps": done,
        "stopped_early": done < ctx.steps,
        "tokens_per_step": tokens,
        "step_ms": ms,
        "tokens_per_s": tokens / ms * 1e3,
        "first_step_seconds": first_s,
        "compile_seconds": ctx.results.get("compile", {}).get("compile_seconds"),
        "peak_memory_gb": peak,
    }
