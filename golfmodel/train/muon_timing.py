"""Timing entry points for Muon (the one-shot GPU check and benches call these; never timed in tests).

    shapes = muon_shapes(model_config)                 # {(rows, cols): count} of the Muon matrices
    row = time_muon_step(shapes, device="cuda")        # one Muon step on those shapes, ms per step

`h100x8_shapes()` gives the Muon matrices of the h100x8-scale q2-geode (d 640, 4 × GCCC: four
shapes, 100 matrices) without building a model. Gradients are random; the point is the step's
cost (momentum, batched Newton–Schulz, the all-gather when a process group is up, the update).
"""

from __future__ import annotations

import collections
import time
from typing import Any

import torch
from torch import nn

from golfmodel.train.muon import Muon, split_params


def muon_shapes(model_config: Any) -> dict[tuple[int, int], int]:
    """{(rows, cols): count} of the matrices Muon would take in a model (built on the meta device)."""
    from golfmodel.model import build_model

    with torch.device("meta"):
        model = build_model(model_config)
    muon, _, _ = split_params(model)
    return dict(collections.Counter(tuple(p.shape) for p in muon))


def h100x8_shapes() -> dict[tuple[int, int], int]:
    """Muon matrices of the h100x8-scale q2-geode (d 640, 10/5 heads, SwiGLU ×3, 4 × GCCC)."""
    from golfmodel.model.config import ModelConfig

    cfg = ModelConfig(
        arm="q2-geode", vocab_size=1024, d_model=640, depth=4, pattern="GCCC", n_heads=10, n_kv_heads=5,
        mlp_mult=3.0,
    )  # fmt: skip
    return muon_shapes(cfg)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_muon_step(
    shapes: dict[tuple[int, int], int],
    *,
    device: str | torch.device = "cpu",
    steps: int = 10,
    warmup: int = 3,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean wall time of one Muon step over `steps` (after `warmup`, which absorbs compilation), in ms.

    Pass rank/world_size inside an initialised process group to time the sharded step.
    """
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    params = [
        nn.Parameter(torch.randn(r, c, generator=gen).to(device) * 0.02)
        for (r, c), n in sorted(shapes.items())
        for _ in range(n)
    ]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    opt = Muon(params, lr=0.02, rank=rank, world_size=world_size)
    t_first = time.perf_counter()
    for _ in range(max(1, warmup)):
        opt.step()
    _sync(device)
    first_s = time.perf_counter() - t_first
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    _sync(device)
    ms = (time.perf_counter() - t0) / steps * 1e3
    return {
        "device": str(device),
        "world_size": world_size,
        "matrices": len(params),
        "shapes": {f"{r}x{c}": n for (r, c), n in sorted(shapes.items())},
        "params": sum(p.numel() for p in params),
        "warmup_s": first_s,
        "step_ms": ms,
        "steps": steps,
    }
