"""Analytic rows of the step-cost model: work a CPU count cannot see (fused scan, Muon, τ, optimiser traffic).

`golfmodel.bench.step_cost.project` adds what these return to its table.
The constants are the stated assumptions (docs/gpu.md, "Analytic rows").
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from golfmodel.bench.step_cost import GPUProfile, Row

TAU_EXACT_BYTES_PER_WEIGHT = 120  # float64 copy, per-row sort, prefix sums and searches of fit_tau
TAU_EXACT_OPS_PER_MATRIX = 61  # eager ops of one exact refit (issue 10), each matrix
TAU_LLOYD_KERNELS_PER_MATRIX = 2  # compiled Lloyd step: one fused two-sum reduction + the fp16 round/copy
ADAM_BYTES_PER_PARAM = 28  # foreach AdamW: read p, g, m, v, write p, m, v (fp32)
CLIP_BYTES_PER_PARAM = 12  # grad-norm read + the scale's read/write (fp32)
# Muon's elementwise bytes per element of EVERY matrix on every rank (muon.py: the momentum of
# every matrix is kept on every rank and every rank applies every update), fp32 shadows:
# buf *= mu (r+w 8), buf += g (r+r+w 12), nesterov g + mu*buf (12), gathered bf16 update -> fp32
# (2 + 4), p += -lr*s*upd (12); weight decay p *= 1 - lr*wd adds 8
MUON_ELEMENTWISE_BYTES = 8 + 12 + 12 + 6 + 12
MUON_WD_BYTES = 8
MUON_HOST_OPS_PER_BUCKET = (
    10  # eager: 3 foreach on the momentum, stack/zeros, gather, slice+cast, unbind, 1-2 foreach
)


def scan_traffic(batch: int, seq_len: int, d: int) -> tuple[float, float, str]:
    """(forward + backward bytes, forward bytes, note) of the fused CfC scan for one layer, bf16 inputs.

    The kernel's own analytic count (`scan_triton.scan_traffic_bytes`, io_bytes=2: it reads the
    W1/W2 outputs in bf16 and computes softplus, the gates, the scan and their backward inside).
    """
    from golfmodel.model.scan_triton import scan_traffic_bytes

    t = scan_traffic_bytes(batch, seq_len, d, io_bytes=2)
    note = f"fused kernel: {t.fp32_passes:.2f} fp32 passes/layer fwd+bwd (scan_traffic_bytes, bf16 in)"
    return float(t.total_bytes), float(t.forward_bytes), note


def model_matrices(job: Any) -> tuple[list[tuple[int, int]], int, int, int]:
    """(Muon matrix shapes, AdamW params, Q2Linear weights, all params) of the job's model, on meta."""
    import torch
    from torch import nn

    from golfmodel.model import build_model
    from golfmodel.train.muon import split_params

    with torch.device("meta"):
        model = build_model(job.model)
    muon, decay, no_decay = split_params(model)
    n_q2 = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and hasattr(m, "tau"))
    n_all = sum(p.numel() for p in model.parameters())
    return [tuple(p.shape) for p in muon], sum(p.numel() for p in decay + no_decay), n_q2, n_all


def muon_rows(
    shapes: list[tuple[int, int]],
    ns: int,
    world: int,
    gpu: GPUProfile,
    sharded: bool,
    weight_decay: float = 0.0,
) -> tuple[Row, Row | None]:
    """Newton–Schulz rows: per matrix 3 matmuls x ns iterations on the wide orientation.

    sharded (golfmodel/train/muon.py as it is): equal shapes stacked into one bucket, each rank
    orthogonalises ceil(n / world) of a bucket (zero-padded), one bf16 all-gather per bucket;
    the momentum and the update run on every matrix on every rank. Not sharded (the code before
    issue 10): every rank orthogonalises every matrix, eagerly.
    """

    def ns_flops(m: int, n: int) -> float:
        r, c = min(m, n), max(m, n)
        return ns * (4.0 * r * r * c + 2.0 * r**3)

    from golfmodel.bench.step_cost import Row

    mk = gpu.min_kernel_s
    if not sharded:  # every rank orthogonalises every matrix, eager: ~10 + 8·ns ops each
        dev = host = 0.0
        for m, n in shapes:
            f = ns_flops(m, n)
            dev += 3 * ns * max(mk, f / (3 * ns) / gpu.matmul_flops)
            dev += (10 + 5 * ns) * max(mk, 12.0 * m * n / gpu.hbm_bytes)
            host += (10 + 8 * ns) * gpu.eager_op_s
        note = f"{len(shapes)} matrices on every rank, eager (~{10 + 8 * ns} ops each)"
        return Row(component="Muon (Newton–Schulz)", device_s=dev, host_s=host, note=note), None
    groups: dict[tuple[int, int], int] = {}
    for s in shapes:
        groups[s] = groups.get(s, 0) + 1
    dev = host = 0.0
    n_el = gathered = 0
    for (m, n), k in groups.items():
        mine = math.ceil(
            k / world
        )  # muon.shard_bounds: this rank's share, the stack zero-padded to mine * world
        r, c = min(m, n), max(m, n)
        # compiled batched Newton–Schulz: normalise, then per iteration 3 batched matmuls and 2
        # fused elementwise kernels (b*A + c*A@A; a*X + B@X), bf16
        kernels = 2 + 5 * ns
        ew = mine * 2.0 * (2 * r * c + ns * (3 * r * r + 3 * r * c))
        work = mine * ns_flops(m, n) / gpu.matmul_flops + ew / gpu.hbm_bytes
        dev += max(kernels * mk, work)
        host += kernels * gpu.launch_s + MUON_HOST_OPS_PER_BUCKET * gpu.eager_op_s
        n_el += k * m * n
        gathered += mine * world * m * n
    per_el = MUON_ELEMENTWISE_BYTES + (MUON_WD_BYTES if weight_decay else 0)
    dev += max(len(groups) * MUON_HOST_OPS_PER_BUCKET * mk, per_el * n_el / gpu.hbm_bytes)
    gather = 0.0
    if world > 1:  # one bf16 all-gather per bucket of the padded stack
        gather = 2.0 * gathered * (world - 1) / world / gpu.bus_bytes + len(groups) * gpu.collective_latency_s
    row = Row(
        component="Muon (Newton–Schulz)",
        device_s=dev,
        host_s=host,
        note=f"{len(groups)} shapes batched, ceil(n/{world}) per rank, compiled NS; momentum+update on all",
    )
    return row, Row(
        component="Muon all-gather",
        device_s=gather,
        host_s=len(groups) * gpu.launch_s,
        note=f"bf16, {len(groups)} padded stacks, NVLink",
    )


def tau_exact_refit_s(n_q2: int, n_mat: int, gpu: GPUProfile) -> float:
    """Seconds of one exact refit of every quantised matrix (sort-based fit_tau, a host sync per matrix).

    Nothing overlaps a host sync, so its device and host time both count in full.
    """
    dev = (
        TAU_EXACT_BYTES_PER_WEIGHT * n_q2 / gpu.hbm_bytes
        + n_mat * TAU_EXACT_OPS_PER_MATRIX * gpu.min_kernel_s
    )
    host = n_mat * TAU_EXACT_OPS_PER_MATRIX * gpu.eager_op_s + n_mat * gpu.sync_s
    return dev + host


def tau_lloyd_row(n_q2: int, n_mat: int, gpu: GPUProfile) -> Row:
    """One Lloyd step per quantised matrix per step (kind.update_scale), compiled into the step.

    Per matrix: the levels of (w, τ) kept, Σ w·ℓ and Σ ℓ² per row (two reductions, one fused
    kernel reading the fp32 shadow once), then τ = num/den rounded to fp16 (a tiny kernel).
    """
    from golfmodel.bench.step_cost import Row

    kernels = TAU_LLOYD_KERNELS_PER_MATRIX * n_mat
    return Row(
        component="τ update",
        device_s=max(kernels * gpu.min_kernel_s, 4.0 * n_q2 / gpu.hbm_bytes),
        host_s=kernels * gpu.launch_s,
        note=f"one Lloyd step x {n_mat} matrices (2 reductions each), compiled, no sync",
    )
