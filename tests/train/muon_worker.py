"""Worker of the sharded-Muon test: a few Muon steps on seeded matrices, under torchrun or alone.

    python tests/train/muon_worker.py OUT_DIR                                  # one process
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/train/muon_worker.py OUT_DIR

Every rank sees the same gradients (what DDP's averaged gradients are) and writes
OUT_DIR/rank_<r>.pt: the final weights and how many matrix slots its Newton–Schulz calls took.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import golfmodel.train.muon as muon_mod

SHAPES = {(24, 16): 3, (16, 40): 2, (8, 8): 1}  # odd counts: padded shares on 2 ranks
STEPS = 3


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    slots = [0]
    eager = muon_mod.ns_function

    def counting(device: torch.device):  # noqa: ANN202 - wraps the real implementation
        fn = eager(device)

        def call(g: torch.Tensor, steps: int) -> torch.Tensor:
            slots[0] += g.shape[0]
            return fn(g, steps)

        return call

    muon_mod.ns_function = counting
    gen = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(r, c, generator=gen)) for (r, c), n in SHAPES.items() for _ in range(n)
    ]
    opt = muon_mod.Muon(params, lr=0.05, momentum=0.9, weight_decay=0.1, rank=rank, world_size=world)
    for _ in range(STEPS):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"params": [p.detach().clone() for p in params], "slots": slots[0]}, out / f"rank_{rank}.pt")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
