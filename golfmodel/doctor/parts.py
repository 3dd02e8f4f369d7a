"""The parts of `golf doctor gpu`: one small function each, `part(ctx) -> {"status": ..., ...}`.

Each part calls the library's public entry points, so a part is retargeted by editing one
function when a piece lands (the fused scan `golfmodel.model.scan_triton`, the Lloyd τ update).
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
    results: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    fwd: Any = None
    backend_calls: list[int] = field(default_factory=lambda: [0])


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


def part_scan(ctx: Ctx) -> dict[str, Any]:
    """The CfC scan on the device against the token-by-token CPU reference (chunked scan; fused if present)."""
    from golfmodel.model.cfc import cfc_gates, cfc_scan, cfc_scan_reference

    B, T, d = (2, 128, 16) if ctx.smoke else (4, 1024, 640)
    g = torch.Generator().manual_seed(0)
    a, b = F.softplus(torch.randn(B, T, d, generator=g)), torch.randn(B, T, d, generator=g)
    ld, c = cfc_gates(a, b, torch.exp(torch.empty(d).uniform_(-4.6, 0.0, generator=g)))
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[:, ::200] = True
    ref = cfc_scan_reference(ld, c, reset)
    dev = [t.to(ctx.device) for t in (ld, c, reset)]
    chunked = (cfc_scan(*dev, 64).cpu() - ref).abs().max().item()
    out: dict[str, Any] = {"chunked_max_abs_err": chunked}
    try:
        mod = importlib.import_module("golfmodel.model.scan_triton")
    except ImportError:
        mod = None
    fused = getattr(mod, "cfc_scan_fused", None) or getattr(mod, "cfc_scan", None) if mod else None
    if fused is None or ctx.device.type != "cuda":
        out["fused"] = "skipped: not available" if fused is None else "skipped: needs CUDA"
        ok = chunked < 1e-4 and (ctx.smoke or fused is not None)
        return {"status": "ok" if ok else "fail", **out}
    err = (fused(*dev).float().cpu() - ref).abs().max().item()
    out["fused_max_abs_err"] = err
    out["fused_seconds"] = _timed(lambda: fused(*dev), ctx.device, 10)
    out["chunked_seconds"] = _timed(lambda: cfc_scan(*dev, 64), ctx.device, 10)
    return {"status": "ok" if chunked < 1e-4 and err < 1e-4 else "fail", **out}


def part_fake_quant(ctx: Ctx) -> dict[str, Any]:
    """Q2Linear's fake-quant forward and masked-STE backward on the device equal the CPU's bit for bit."""
    from golfmodel.quant.q2 import fake_quant, fit_tau

    w = torch.randn(
        64 if ctx.smoke else 1712, 640 if not ctx.smoke else 32, generator=torch.Generator().manual_seed(1)
    )
    tau = fit_tau(w)
    outs = []
    for dev in (torch.device("cpu"), ctx.device):
        wd = w.to(dev).requires_grad_(True)
        q = fake_quant(wd, tau.to(dev))
        q.backward(torch.ones_like(q))
        outs.append((q.detach().cpu(), wd.grad.cpu()))
    fwd_eq = torch.equal(outs[0][0], outs[1][0])
    bwd_eq = torch.equal(outs[0][1], outs[1][1])
    return {
        "status": "ok" if fwd_eq and bwd_eq else "fail",
        "forward_equal": fwd_eq,
        "backward_equal": bwd_eq,
    }


def _loss(ctx: Ctx, idx: torch.Tensor) -> torch.Tensor:
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if ctx.device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    with amp:
        logits = ctx.fwd(idx[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())


def part_compile(ctx: Ctx) -> dict[str, Any]:
    """Compile the model with QAT on in all but the shallowest group, then switch it on: count recompiles."""
    from golfmodel.model import build_model

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

    import torch._dynamo as dynamo

    dynamo.reset()
    ctx.fwd = torch.compile(ctx.model, backend=counting)
    idx = _tokens(ctx, ctx.micro_seqs)
    t0 = time.perf_counter()
    _loss(ctx, idx).backward()
    _sync(ctx.device)
    compile_s = time.perf_counter() - t0
    first = ctx.backend_calls[0]
    for layer in groups[0]:
        layer.set_qat(True)  # the last QAT switch of a run
    t0 = time.perf_counter()
    _loss(ctx, idx).backward()
    _sync(ctx.device)
    recompiles = ctx.backend_calls[0] - first
    ctx.model.zero_grad(set_to_none=True)
    return {
        "status": "ok" if recompiles == 0 else "fail",
        "backend": inner,
        "params": sum(p.numel() for p in ctx.model.parameters()),
        "compile_seconds": compile_s,
        "recompiles_on_qat_switch": recompiles,
        "after_switch_seconds": time.perf_counter() - t0,
    }


def part_steps(ctx: Ctx) -> dict[str, Any]:
    """Steady optimiser steps at the per-rank shape: grad accumulation, clip, Muon + AdamW, zero_grad."""
    from golfmodel.train.config import OptimConfig
    from golfmodel.train.muon import build_optimizers

    if ctx.fwd is None:
        return {"status": "fail", "error": "needs the compile part"}
    opts = build_optimizers(ctx.model, OptimConfig())
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
    t0 = time.perf_counter()
    for _ in range(ctx.steps):
        step()
    _sync(ctx.device)
    ms = (time.perf_counter() - t0) / ctx.steps * 1e3
    peak = torch.cuda.max_memory_allocated(ctx.device) / 1e9 if ctx.device.type == "cuda" else None
    muon = opts[0]
    for idx in batches[:1]:
        _loss(ctx, idx).backward()
    muon_s = _timed(muon.step, ctx.device, 3)
    for o in opts:
        o.zero_grad(set_to_none=True)
    tokens = ctx.micro_seqs * ctx.micro_batches * ctx.seq_len
    return {
        "status": "ok",
        "steps": ctx.steps,
        "tokens_per_step": tokens,
        "step_ms": ms,
        "tokens_per_s": tokens / ms * 1e3,
        "first_step_seconds": first_s,
        "peak_memory_gb": peak,
        "muon_step_ms": muon_s * 1e3,
    }


def part_tau(ctx: Ctx) -> dict[str, Any]:
    """τ exact refit of every Q2Linear (today's path) and the Lloyd step if the library has it."""
    from golfmodel.quant.q2linear import q2_linears

    layers = q2_linears(ctx.model)

    def refit() -> None:
        for layer in layers:
            layer.refresh_tau()

    out: dict[str, Any] = {
        "layers": len(layers),
        "exact_refit_ms": _timed(refit, ctx.device, 1 if ctx.smoke else 3) * 1e3,
    }
    q2 = importlib.import_module("golfmodel.quant.q2")
    lloyd = getattr(q2, "lloyd_tau", None)
    if lloyd is None:
        out["lloyd"] = "skipped: not available"
        return {"status": "ok" if ctx.smoke else "fail", **out}

    def step() -> None:
        for layer in layers:
            layer.tau.copy_(lloyd(layer.weight.detach(), layer.tau))

    out["lloyd_ms"] = _timed(step, ctx.device, 3) * 1e3
    return {"status": "ok", **out}


def part_eval(ctx: Ctx) -> dict[str, Any]:
    """The evaluator's sliding-window bpb (stride 64) on a synthetic slice, bf16 on CUDA: windows and tokens per second."""
    import numpy as np

    from golfmodel.eval import ByteTable, score

    V = ctx.cfg.vocab_size
    base = np.ones(V, dtype=np.int16)
    base[:4] = 0
    table = ByteTable(
        base_bytes=base,
        has_space=np.zeros(V, dtype=np.bool_),
        is_boundary=base == 0,
        vocab_size=V,
        kind="synthetic",
    )
    n = ctx.seq_len * (2 if ctx.smoke else 16)
    toks = _tokens(ctx, 1).flatten().cpu().numpy()
    toks = np.resize(toks, n)
    ctx.model.eval()
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if ctx.device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )

    def model_fn(idx: torch.Tensor) -> torch.Tensor:
        with amp:
            return ctx.model(idx)

    stride = 64 if not ctx.smoke else ctx.seq_len // 4
    t0 = time.perf_counter()
    res = score(
        model_fn,
        toks,
        table,
        seq_len=ctx.seq_len,
        stride=stride,
        batch_size=64 if not ctx.smoke else 4,
        device=ctx.device,
    )
    _sync(ctx.device)
    s = time.perf_counter() - t0
    ctx.model.train()
    windows = int(np.ceil((n - ctx.seq_len) / stride)) + 1
    return {
        "status": "ok" if np.isfinite(res.bpb) else "fail",
        "stride": stride,
        "windows": windows,
        "seconds": s,
        "windows_per_s": windows / s,
        "bpb": res.bpb,
    }


def part_projection(ctx: Ctx) -> dict[str, Any]:
    """The step-cost model for this one GPU at the measured shape, beside the measurement."""
    from golfmodel.bench.step_cost import GPUS, TODAY, calibration_ratio, project
    from golfmodel.bench.step_count import count_arm
    from golfmodel.train.config import TrainConfig, TrainJob

    tokens = ctx.micro_seqs * ctx.micro_batches * ctx.seq_len
    train = TrainConfig(
        seq_len=ctx.seq_len,
        global_batch_tokens=tokens,
        micro_batch_seqs=ctx.micro_seqs,
        max_wallclock_seconds=600,
    )
    job = TrainJob(model=ctx.cfg, train=train, train_shards=("<synthetic>",), out_dir="<none>")
    name = "H200" if "H200" in str(ctx.results.get("device", {}).get("name", "")) else "H100"
    counts = count_arm(ctx.cfg, seq_len=ctx.seq_len, cache_dir=ctx.cache_dir)
    ratio = 1.0
    if not ctx.smoke:  # the calibration counts the full-size baseline: minutes on a small CPU
        from golfmodel.bench.step_cost import baseline_job

        b = baseline_job()
        ratio, _ = calibration_ratio(count_arm(b.model, seq_len=b.train.seq_len, cache_dir=ctx.cache_dir))
    proj = project(job, counts, world_size=1, gpu=GPUS[name], design=TODAY).calibrated(ratio)
    measured = ctx.results.get("steps", {}).get("step_ms")
    out = {
        "gpu_profile": name,
        "projected_step_ms": proj.step_ms,
        "uncalibrated_step_ms": proj.uncalibrated_step_ms,
        "calibration_ratio": ratio,
        "measured_step_ms": measured,
        "measured_over_projected": measured / proj.step_ms if measured else None,
        "rows_ms": {r.component: r.device_s * 1e3 for r in proj.rows},
    }
    return {"status": "ok" if measured else "fail", **out}


PARTS: list[tuple[str, Callable[[Ctx], dict[str, Any]]]] = [
    ("device", part_device),
    ("rates", part_rates),
    ("scan", part_scan),
    ("fake_quant", part_fake_quant),
    ("compile", part_compile),
    ("steps", part_steps),
    ("tau", part_tau),
    ("eval", part_eval),
    ("projection", part_projection),
]
