"""Benchmark: the sharded Muon step and the scorer's throughput (issue 10 items 2 and 6).

    golf bench dist                                 # CPU-sized: h100x8 Muon shapes / 4, tiny LM scored
    golf bench dist --device cuda --shape-div 1     # the real h100x8 shapes on a GPU
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m golfmodel.bench.dist_bench

Rows: one Muon step with the matrices of each equal-shape bucket orthogonalised as one batch
(this repo's `Muon`, compiled on CUDA), the same Newton–Schulz work one matrix at a time (the
pre-batching implementation's loop, eager), and the sliding-window scorer's scored targets per
second on a synthetic slice (bf16 on CUDA, fp32 on CPU). Under torchrun every rank runs the
sharded step (its 1/W of each bucket plus the all-gather) and rank 0 prints. Wall-clock numbers
of whatever machine runs it: measurements, not projections.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import torch

from golfmodel.eval.run import eval_throughput
from golfmodel.train.muon import newton_schulz
from golfmodel.train.muon_timing import h100x8_shapes, time_muon_step


def _loop_ms(shapes: dict[tuple[int, int], int], device: torch.device, steps: int) -> float:
    """ms per step of Newton–Schulz on every matrix, one matrix at a time (eager)."""
    mats = [torch.randn(r, c, device=device) for (r, c), n in shapes.items() for _ in range(n)]
    for m in mats[:2]:
        newton_schulz(m)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        for m in mats:
            newton_schulz(m)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="golf bench dist", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--shape-div", type=int, default=4, help="divide the h100x8 matrix sides by this (CPU: 4)")
    p.add_argument("--steps", type=int, default=3, help="timed Muon steps")
    p.add_argument("--eval-tokens", type=int, default=4096, help="synthetic tokens scored")
    p.add_argument("--eval-d-model", type=int, default=128, help="width of the scored tiny q2-geode")
    p.add_argument("--json", dest="json_out", help="also write the rows here")
    args = p.parse_args(list(argv) if argv is not None else None)

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(args.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    d = args.shape_div
    shapes = {(r // d, c // d): n for (r, c), n in h100x8_shapes().items()}
    muon = time_muon_step(shapes, device=device, steps=args.steps, rank=rank, world_size=world)
    rows = [("Muon step, buckets batched" + (f", sharded over {world} ranks" if world > 1 else ""),
             f"{muon['step_ms']:.1f} ms ({muon['matrices']} matrices, {muon['params']:,} params, "
             f"first steps {muon['warmup_s']:.1f} s)")]  # fmt: skip
    if world == 1:
        rows.append(("Newton–Schulz one matrix at a time", f"{_loop_ms(shapes, device, args.steps):.1f} ms"))

    from golfmodel.model import build_model
    from golfmodel.model.config import geode

    torch.manual_seed(0)
    model = build_model(geode(1024, d_model=args.eval_d_model, groups=1))
    ev = eval_throughput(
        model, device=device, seq_len=1024, stride=64, batch_size=16, n_tokens=args.eval_tokens
    )
    rows.append((f"scorer, q2-geode d {args.eval_d_model} x1 GCCC, stride 64, {ev['autocast']}",
                 f"{ev['tokens_per_second']:,.0f} scored tok/s ({ev['targets']:,} targets, {ev['seconds']:.2f} s)"))  # fmt: skip
    if world > 1:
        from golfmodel.procgroup import end_process_group

        end_process_group(clean=True)
    if rank != 0:
        return 0
    print(f"golf bench dist on {device} ({world} process(es), {torch.get_num_threads()} threads)")
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    if args.json_out:
        from golfmodel.atomic import atomic_write_json

        atomic_write_json(args.json_out, {"muon": muon, "eval": ev, "world_size": world})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
