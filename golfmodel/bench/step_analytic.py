"""Analytic rows of the step-cost model: work a CPU count cannot see (fused scan, Muon, τ, optimiser traffic).

`golfmodel.bench.step_cost.project` adds what these return to its table.
The constants are the stated assumptions (docs/gpu.md, "Analytic rows").
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from golfmodel.bench.step_cost import GPUProfile, Row

SCAN_PASSES_FUSED = 9  # full (B, T, d) fp32 passes per CfC layer, forward + backward, of a fused scan
TAU_EXACT_BYTES_PER_WEIGHT = 120  # float64 copy, per-row sort, prefix sums and searches of fit_tau
TAU_EXACT_OPS_PER_MATRIX = 61  # eager ops of one exact refit (issue 10), each matrix
ADAM_BYTES_PER_PARAM = 28  # foreach AdamW: read p, g, m, v, write p, m, v (fp32)
CLIP_BYTES_PER_PARAM = 12  # grad-norm read + the scale's read/write (fp32)


def scan_traffic(batch: int, seq_len: int, d: int) -> tuple[float, str]:
    """(bytes, source) of the fused CfC scan's forward + backward for one layer."""
    try:
        from golfmodel.model.scan_triton import scan_traffic_bytes  # the fused kernel's own count

        return float(scan_traffic_bytes(batch, seq_len, d)), "scan_triton.scan_traffic_bytes"
    except (ImportError, TypeError):
        # TODO(scan): use scan_triton.scan_traffic_bytes once it lands (signature assumed (B, T, d)).
        return float(
            SCAN_PASSES_FUSED * batch * seq_len * d * 4
        ), f"{SCAN_PASSES_FUSED} fp32 passes (analytic)"


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
    shapes: list[tuple[int, int]], ns: int, world: int, gpu: GPUProfile, sharded: bool
) -> tuple[Row, Row | None]:
    """Newton–Schulz rows: per matrix 3 matmuls x ns iterations on the wide orientation."""

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
    n_el = 0
    for (m, n), k in groups.items():
        mine = math.ceil(k / world)  # this rank's share of the equal-shaped stack
        kernels = 4 * ns + 4  # 3 batched matmuls + 1 fused elementwise per iteration, compiled
        work = mine * (ns_flops(m, n) / gpu.matmul_flops + (10 + 5 * ns) * 12.0 * m * n / gpu.hbm_bytes)
        dev += max(kernels * mk, work)
        host += kernels * gpu.launch_s
        n_el += k * m * n
    gather = 2.0 * n_el * (world - 1) / world / gpu.bus_bytes + gpu.collective_latency_s if world > 1 else 0.0
    row = Row(
        component="Muon (Newton–Schulz)",
        device_s=dev,
        host_s=host,
        note=f"{len(groups)} shapes batched, 1/{world} per rank, compiled",
    )
    return row, Row(
        component="Muon all-gather", device_s=gather, host_s=gpu.launch_s, note="bf16 updates, NVLink"
    )
