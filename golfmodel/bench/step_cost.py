"""The step-cost model: a training step's time on a named GPU, component by component, calibrated.

    counts = count_arm(job.model, seq_len=job.train.seq_len)          # golfmodel.bench.step_count
    proj = project(job, counts, world_size=8, gpu=GPUS["H100"], design=TODAY)
    ratio, _ = calibration_ratio(count_arm(baseline_job().model, seq_len=1024))  # 43.54 ms / projected
    print(format_table([proj.calibrated(ratio), ...]))                 # golfmodel.bench.step_bench

Device time per component (docs/gpu.md has the method and today's table):
- matmuls: FLOPs counted by `FlopCounterMode` on the real blocks / the achievable bf16 rate;
  attention: analytic FLOPs, halved for the causal skip, at the flash-attention rate;
- elementwise: inductor's bytes (per sequence x sequences per rank + per call x micro-batches) /
  the HBM bandwidth, by category; the CfC scan is the chunked scan counted alone (today) or the
  fused kernel's analytic traffic (after);
- optimiser, τ update, collectives, host syncs: analytic (kernels a CPU cannot run), stated.
A kernel never takes less than `min_kernel_s`; host time is launches x their cost; the step is
max(device, host) plus the drained queues (host syncs), which nothing overlaps.

Everything is a projection until a GPU measures it (`golf doctor gpu` puts the two side by side).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from golfmodel.bench.step_analytic import (
    ADAM_BYTES_PER_PARAM,
    CLIP_BYTES_PER_PARAM,
    model_matrices,
    muon_rows,
    scan_traffic,
    tau_exact_refit_s,
    tau_lloyd_row,
)
from golfmodel.bench.step_count import ArmCounts

BASELINE_STEP_MS = 43.54  # naive baseline, 8xH100, 524,288 tokens/step (anchors/naive_baseline_train.log)
VAL_TOKENS = 63_779_840  # the challenge's validation split (the baseline log's val_loader tokens)


@dataclass(frozen=True, kw_only=True)
class GPUProfile:
    """Achievable rates of one GPU (not the datasheet peaks) and the host-side costs around it."""

    name: str
    matmul_flops: float = 750e12  # bf16 dense GEMM achievable (peak 989)
    attention_flops: float = 450e12  # flash attention fwd+bwd achievable at head_dim 64
    hbm_bytes: float = 3.0e12  # achievable of 3.35 TB/s
    bus_bytes: float = 360e9  # NCCL bus bandwidth for all-reduce / all-gather over NVLink
    collective_latency_s: float = 30e-6
    min_kernel_s: float = 4e-6  # one small kernel, launch gap included
    launch_s: float = 5e-6  # host time to launch one compiled kernel
    eager_op_s: float = 12e-6  # host time of one eager torch op (dispatch + launch)
    sync_s: float = 0.5e-3  # one drained queue: the GPU idles while the host restarts it
    triton_kernel_s: float = 1.0  # compiling one generated kernel (Triton), before parallelism
    compile_workers: int = 8
    memory_gb: float = 80.0


GPUS = {
    "H100": GPUProfile(name="H100 SXM"),
    "H200": GPUProfile(name="H200", hbm_bytes=4.2e12, memory_gb=141.0),  # same matmul, ~1.4x bandwidth
}


@dataclass(frozen=True, kw_only=True)
class Design:
    """How the step is run: the choices that issue 10 changes."""

    name: str
    fused_scan: bool  # CfC scan: the fused kernel (after) or the chunked Hillis–Steele scan (today)
    muon_sharded: bool  # Muon batched by shape, split over ranks, compiled (+ an all-gather)
    tau_lloyd: bool  # τ: one compiled Lloyd step per step (after) or exact refits at the cadence (today)
    host_syncs: int  # drained queues per step
    one_graph: bool  # one compiled graph for every QAT state (after) or one per state (today)


TODAY = Design(
    name="today", fused_scan=False, muon_sharded=False, tau_lloyd=False, host_syncs=1, one_graph=False
)
AFTER = Design(name="after", fused_scan=True, muon_sharded=True, tau_lloyd=True, host_syncs=0, one_graph=True)
# The challenge baseline's own loop (its train_gpt.py): Muon split over ranks and compiled, one
# graph, and the wall-clock check's all-reduce read back every step.
BASELINE = Design(
    name="baseline", fused_scan=False, muon_sharded=True, tau_lloyd=True, host_syncs=1, one_graph=True
)


@dataclass(frozen=True, kw_only=True)
class Row:
    component: str
    device_s: float
    host_s: float
    note: str


@dataclass(frozen=True, kw_only=True)
class Projection:
    """One arm x design x GPU: component rows, the step, the budget and the evaluation."""

    arm: str
    design: str
    gpu: str
    world_size: int
    params: int
    tokens_per_step: int
    rows: tuple[Row, ...]
    uncalibrated_step_ms: float
    calibration_ratio: float
    step_ms: float
    wallclock_seconds: float
    steps_in_budget: int
    tokens_in_budget: int
    eval_tokens: int
    eval_stride: int
    uncalibrated_eval_seconds: float
    eval_seconds: float
    graphs: int
    compile_warmup_seconds: float

    def calibrated(self, ratio: float) -> Projection:
        """The same projection with `ratio` applied to the step and the evaluation."""
        step = self.uncalibrated_step_ms * ratio
        steps = int(self.wallclock_seconds * 1e3 / step) if step > 0 else 0
        return replace(
            self,
            calibration_ratio=ratio,
            step_ms=step,
            steps_in_budget=steps,
            tokens_in_budget=steps * self.tokens_per_step,
            eval_seconds=self.uncalibrated_eval_seconds * ratio,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [
            {
                "component": r.component,
                "device_ms": r.device_s * 1e3,
                "host_ms": r.host_s * 1e3,
                "note": r.note,
            }
            for r in self.rows
        ]
        return d


def project(
    job: Any,
    counts: ArmCounts,
    *,
    world_size: int,
    gpu: GPUProfile,
    design: Design,
    eval_tokens: int = VAL_TOKENS,
    eval_stride: int = 64,
) -> Projection:
    """The uncalibrated projection of `job` on `world_size` x `gpu` under `design` (ratio 1)."""
    t, cfg = job.train, job.model
    if counts.seq_len != t.seq_len:
        raise ValueError(f"counts: counted at seq_len {counts.seq_len}, job trains at {t.seq_len}")
    tokens_rank = t.global_batch_tokens // world_size
    seqs = tokens_rank / t.seq_len
    micro = t.grad_accum(world_size)
    bw, mk = gpu.hbm_bytes, gpu.min_kernel_s
    rows: list[Row] = []
    U, M = counts.units, counts.multiplicity

    mm = sum(U[k].mm_flops * M[k] for k in U) * seqs
    rows.append(
        Row(component="matmuls", device_s=mm / gpu.matmul_flops, host_s=0.0, note="FlopCounterMode, bf16")
    )
    attn = sum(U[k].attn_flops * M[k] for k in U) * seqs * 0.5
    if attn:
        rows.append(
            Row(
                component="attention (SDPA)",
                device_s=attn / gpu.attention_flops,
                host_s=0.0,
                note="causal: half the FLOPs",
            )
        )

    # the fused design: the CfC unit as counted with the fused scan opaque (step_count's stand-in)
    fused_units = {"C"} if design.fused_scan and "C" in U else set()
    for k in fused_units:
        if not U[k].fused_bytes_per_seq:
            raise ValueError(f"counts: unit {k} has no fused-kernel count (recount with this step_count)")
    fused = bool(fused_units)

    def unit_bytes(k: str) -> dict[str, float]:
        return U[k].fused_bytes_per_seq if k in fused_units else U[k].bytes_per_seq

    cats: dict[str, float] = {}
    for k, u in U.items():
        for cat, b in unit_bytes(k).items():
            cats[cat] = cats.get(cat, 0.0) + b * M[k] * seqs
        cats["weights (fake-quant, casts)"] = (
            cats.get("weights (fake-quant, casts)", 0.0) + u.bytes_per_call * M[k] * micro
        )
    scan_fwd = 0.0  # the fused kernel's forward bytes per sequence and layer (evaluation)
    if "C" in U:
        n_c = M["C"]
        if fused:
            per_layer, scan_fwd, scan_note = scan_traffic(1, t.seq_len, cfg.d_model)
            scan_b = per_layer * n_c * seqs
        else:
            scan_b = U["C"].scan_bytes_per_seq * n_c * seqs
            cats["CfC gates + scan"] = max(0.0, cats.get("CfC gates + scan", 0.0) - scan_b)
            scan_note = "chunked Hillis–Steele scan, inductor count"
        rows.append(Row(component="CfC scan", device_s=scan_b / bw, host_s=0.0, note=scan_note))
    for cat, b in cats.items():
        if b:
            label, note = cat, "inductor bytes"
            if cat == "CfC gates + scan":
                label = "CfC mixer around the kernel" if fused else "CfC gates"
                note = "inductor bytes, fused op opaque (fused_standins)" if fused else note
            rows.append(Row(component=f"elementwise: {label}", device_s=b / bw, host_s=0.0, note=note))

    def unit_kernels(k: str) -> int:
        return U[k].fused_kernels if k in fused_units else U[k].kernels

    kernels = sum(unit_kernels(k) * M[k] for k in U) * micro
    launch_host = kernels * gpu.launch_s  # the compiled forward + backward's launches

    shapes, n_adam, n_q2, n_all = model_matrices(job)
    muon, gather = muon_rows(
        shapes, job.optim.ns_steps, world_size, gpu, design.muon_sharded, job.optim.weight_decay
    )
    rows.append(muon)
    if gather is not None:
        rows.append(gather)
    opt_b = n_adam * ADAM_BYTES_PER_PARAM + n_all * CLIP_BYTES_PER_PARAM
    rows.append(
        Row(
            component="AdamW + grad clip",
            device_s=max(20 * mk, opt_b / bw),
            host_s=20 * gpu.launch_s,
            note="foreach kernels",
        )
    )

    n_refits = 0
    if n_q2:
        n_mat = len(shapes)
        if design.tau_lloyd:
            rows.append(tau_lloyd_row(n_q2, n_mat, gpu))
            # exact refits only at the G QAT switches, the start of phase 3 and the end: amortised below
            n_refits = (cfg.depth + 2) if cfg.arm == "q2-geode" else 0
        else:
            every = job.qat.tau_refresh_steps
            if every:
                rows.append(
                    Row(
                        component="τ exact refit",
                        device_s=tau_exact_refit_s(n_q2, n_mat, gpu) / every,
                        host_s=0.0,
                        note=f"every {every} step(s), {n_mat} host syncs each",
                    )
                )

    if world_size > 1:
        ar = 2.0 * 4 * n_all * (world_size - 1) / world_size / gpu.bus_bytes + gpu.collective_latency_s
        rows.append(
            Row(
                component="gradient all-reduce",
                device_s=ar,
                host_s=0.0,
                note="fp32 grads, counted unoverlapped",
            )
        )
    if design.host_syncs:
        rows.append(
            Row(
                component="host syncs",
                device_s=design.host_syncs * gpu.sync_s,
                host_s=0.0,
                note=f"{design.host_syncs} drained queue(s) per step",
            )
        )

    device = sum(r.device_s for r in rows)
    host = sum(r.host_s for r in rows) + launch_host
    if host > device:
        rows.append(
            Row(
                component="host-bound excess",
                device_s=host - device,
                host_s=0.0,
                note="launches outrun the GPU",
            )
        )
    step_s = max(device, host)
    wall = float(t.max_wallclock_seconds or 0.0)
    total = n_refits * tau_exact_refit_s(n_q2, len(shapes), gpu) if n_refits else 0.0
    if total and wall > total:  # (G + 2) refits take `total` of the wall clock: the steps share it
        extra = step_s * total / (wall - total)
        rows.append(
            Row(
                component="τ exact refits (amortised)",
                device_s=extra,
                host_s=0.0,
                note=f"{n_refits} refits per run ({total:.2f} s) over {wall:.0f} s",
            )
        )
        step_s += extra
    step_ms = step_s * 1e3

    L = t.seq_len
    windows = max(1, math.ceil((eval_tokens - L) / eval_stride) + 1)
    per_rank = math.ceil(windows / world_size)
    fwd = sum(
        (
            u.fwd_mm_flops / gpu.matmul_flops
            + 0.5 * u.fwd_attn_flops / gpu.attention_flops
            + (u.fused_fwd_bytes_per_seq + scan_fwd if k in fused_units else u.fwd_bytes_per_seq) / bw
        )
        * M[k]
        for k, u in U.items()
    )
    eval_s = per_rank * fwd

    graphs = 1 if (design.one_graph or not cfg.arm == "q2-geode") else cfg.depth + 1
    lower = sum(u.lowering_seconds * M[k] for k, u in U.items())
    per_graph = lower + sum(unit_kernels(k) * M[k] for k in U) * gpu.triton_kernel_s / gpu.compile_workers
    proj = Projection(
        arm=cfg.arm,
        design=design.name,
        gpu=gpu.name,
        world_size=world_size,
        params=n_all,
        tokens_per_step=t.global_batch_tokens,
        rows=tuple(rows),
        uncalibrated_step_ms=step_ms,
        calibration_ratio=1.0,
        step_ms=step_ms,
        wallclock_seconds=wall,
        steps_in_budget=0,
        tokens_in_budget=0,
        eval_tokens=eval_tokens,
        eval_stride=eval_stride,
        uncalibrated_eval_seconds=eval_s,
        eval_seconds=eval_s,
        graphs=graphs,
        compile_warmup_seconds=graphs * per_graph,
    )
    return proj.calibrated(1.0)


def baseline_job(vocab: int = 1024) -> Any:
    """The challenge baseline's run: naive_baseline at 524,288 tokens/step, one 64-sequence micro-batch per rank."""
    from golfmodel.model import naive_baseline
    from golfmodel.train.config import TrainConfig, TrainJob

    train = TrainConfig(
        seq_len=1024, global_batch_tokens=524_288, micro_batch_seqs=64, max_wallclock_seconds=600
    )
    return TrainJob(
        model=naive_baseline(vocab), train=train, train_shards=("<train shards>",), out_dir="<none>"
    )


def calibration_ratio(counts: ArmCounts, *, gpu: GPUProfile = GPUS["H100"]) -> tuple[float, Projection]:
    """(measured 43.54 ms / projected, the baseline's projection) on 8 x `gpu` (the anchor ran on H100)."""
    proj = project(baseline_job(), counts, world_size=8, gpu=gpu, design=BASELINE)
    return BASELINE_STEP_MS / proj.uncalibrated_step_ms, proj
