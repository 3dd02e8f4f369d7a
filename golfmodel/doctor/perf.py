"""The timing parts of `golf doctor gpu` (Muon, τ, evaluation, the projection) and the part list with time caps.

    for name, part, cap_s in PARTS: ...          # golfmodel.doctor.run_gpu runs them in order

Each part calls the library's own timing entry points (`muon_timing.time_muon_step`,
`QLinear.update_scale` / `kind.update_scale`, `eval.run.eval_throughput`, the step-cost model)
and returns {"status": "ok" | "fail", ...}. The caps (seconds, on the lent GPU) keep the whole
check under 5 minutes (TOTAL_CAP_S): each part runs under min(its cap, what is left) and is
stopped at it; a part stopped, or with no time left to start, is recorded as skipped = FAIL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from golfmodel.doctor.parts import (
    Ctx,
    _sync,
    _timed,
    part_compile,
    part_device,
    part_fake_quant,
    part_norm,
    part_rates,
    part_scan,
    part_steps,
)

TOTAL_CAP_S = 300.0  # the "<= 5 minutes in all"


def part_muon(ctx: Ctx) -> dict[str, Any]:
    """One Muon step on the model's matrices (`time_muon_step`: batched, compiled Newton–Schulz on CUDA)."""
    from golfmodel.train.muon_timing import muon_shapes, time_muon_step

    shapes = muon_shapes(ctx.cfg)
    res = time_muon_step(
        shapes, device=ctx.device, steps=2 if ctx.smoke else 10, warmup=1 if ctx.smoke else 3
    )
    return {"status": "ok", **res}


def part_tau(ctx: Ctx) -> dict[str, Any]:
    """τ: the exact refit, one Lloyd step per matrix (eager and compiled), and the device's τ against the CPU's."""
    from golfmodel.quant.qlinear import qlinears

    if ctx.fwd is None:
        return {"status": "fail", "error": "needs the compile part"}
    layers = [m for m in qlinears(ctx.model) if m.tau is not None and not m.scale_learned]
    reps = 1 if ctx.smoke else 3

    def refit() -> None:
        for layer in layers:
            layer.refresh_tau()

    def lloyd() -> None:
        for layer in layers:
            layer.update_scale()

    out: dict[str, Any] = {"layers": len(layers), "exact_refit_ms": _timed(refit, ctx.device, reps) * 1e3}
    out["lloyd_eager_ms"] = _timed(lloyd, ctx.device, reps) * 1e3
    backend = "inductor" if ctx.device.type == "cuda" else "eager"
    compiled = torch.compile(lloyd, backend=backend)
    t0 = time.perf_counter()
    compiled()
    _sync(ctx.device)
    out["lloyd_compile_seconds"] = time.perf_counter() - t0
    out["lloyd_compiled_ms"] = _timed(compiled, ctx.device, reps + 2) * 1e3
    # the same Lloyd step on the CPU: τ is fp16-rounded, so summation order may move it by one fp16 step
    w, t = layers[0].weight.detach().float(), layers[0].tau.detach()
    dev_t = layers[0].kind.update_scale(w, t).cpu()
    cpu_t = layers[0].kind.update_scale(w.cpu(), t.cpu())
    rel = ((dev_t - cpu_t).abs() / cpu_t.abs().clamp_min(1e-8)).max().item()
    out["lloyd_device_vs_cpu_max_rel"] = rel
    return {"status": "ok" if rel <= 2**-10 else "fail", **out}  # <= one fp16 step


def part_eval(ctx: Ctx) -> dict[str, Any]:
    """`eval_throughput` (sliding window, stride 64, bf16 on CUDA) on a synthetic slice; the full split projected."""
    from golfmodel.bench.step_cost import VAL_TOKENS
    from golfmodel.eval.run import eval_throughput

    if ctx.fwd is None:
        return {"status": "fail", "error": "needs the compile part"}
    stride = ctx.seq_len // 4 if ctx.smoke else 64
    n = ctx.seq_len * (2 if ctx.smoke else 16)
    res = eval_throughput(
        ctx.model, device=ctx.device, seq_len=ctx.seq_len, stride=stride,
        batch_size=4 if ctx.smoke else 64, n_tokens=n, vocab_size=ctx.cfg.vocab_size,
    )  # fmt: skip
    ctx.model.train()
    tps = float(res["tokens_per_second"])
    # every window scores `stride` targets (the first all of its own): the split on 8 such GPUs
    full_8 = VAL_TOKENS / tps / 8 if tps > 0 else None
    return {"status": "ok" if tps > 0 else "fail", **res, "full_val_8gpu_seconds_at_this_rate": full_8}


def part_projection(ctx: Ctx) -> dict[str, Any]:
    """The step-cost model for this one GPU at the measured shape ("after" design), beside the measurement."""
    from golfmodel.bench.step_cost import AFTER, GPUS, baseline_job, calibration_ratio, project
    from golfmodel.bench.step_count import count_arm
    from golfmodel.train.config import TrainConfig, TrainJob

    tokens = ctx.micro_seqs * ctx.micro_batches * ctx.seq_len
    train = TrainConfig(
        seq_len=ctx.seq_len, global_batch_tokens=tokens, micro_batch_seqs=ctx.micro_seqs,
        max_wallclock_seconds=600,
    )  # fmt: skip
    job = TrainJob(model=ctx.cfg, train=train, train_shards=("<synthetic>",), out_dir="<none>")
    name = "H200" if "H200" in str(ctx.results.get("device", {}).get("name", "")) else "H100"
    counts = count_arm(ctx.cfg, seq_len=ctx.seq_len, cache_dir=ctx.cache_dir)
    ratio = ctx.calibration_ratio
    if ratio is None:
        ratio = 1.0
        if not ctx.smoke:  # the calibration counts the full-size baseline: a minute or two on the host
            b = baseline_job()
            ratio, _ = calibration_ratio(count_arm(b.model, seq_len=b.train.seq_len, cache_dir=ctx.cache_dir))
    proj = project(job, counts, world_size=1, gpu=GPUS[name], design=AFTER).calibrated(ratio)
    steps = ctx.results.get("steps", {}).get("step_ms")
    lloyd = ctx.results.get("tau", {}).get("lloyd_compiled_ms") or 0.0
    measured = steps + lloyd if steps else None  # the step as the trainer runs it: optimiser step + τ update
    rows = {r.component: r.device_s * 1e3 * ratio for r in proj.rows}
    muon_meas = ctx.results.get("muon", {}).get("step_ms")
    muon_proj = rows.get("Muon (Newton–Schulz)")
    out = {
        "gpu_profile": name,
        "design": proj.design,
        "projected_step_ms": proj.step_ms,
        "uncalibrated_step_ms": proj.uncalibrated_step_ms,
        "calibration_ratio": ratio,
        "measured_step_ms": measured,
        "measured_over_projected": measured / proj.step_ms if measured else None,
        "muon_measured_over_projected": muon_meas / muon_proj if muon_meas and muon_proj else None,
        "rows_ms": rows,  # calibrated
    }
    return {"status": "ok" if measured else "fail", **out}


# (name, part, cap in seconds on the lent GPU; --smoke uses the same caps)
PARTS: list[tuple[str, Callable[[Ctx], dict[str, Any]], float]] = [
    ("device", part_device, 10),
    ("rates", part_rates, 15),
    ("scan", part_scan, 30),
    ("norm", part_norm, 15),
    ("fake_quant", part_fake_quant, 15),
    ("compile", part_compile, 110),
    ("steps", part_steps, 45),
    ("muon", part_muon, 25),
    ("tau", part_tau, 40),
    ("eval", part_eval, 25),
    ("projection", part_projection, 90),
]
