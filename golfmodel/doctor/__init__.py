"""`golf doctor gpu`: the one-shot check a session runs when it is lent a GPU (≤ 5 minutes).

    PYTHONPATH=. python -m golfmodel.doctor gpu [--smoke] [--out DIR]      # on the lent machine
    golf doctor gpu [--smoke] [--out DIR]                                  # where golf is installed

Imports only golfmodel + torch (+ numpy): the lent machine has torch, Triton, numpy and
sentencepiece, but no pydantic, Prefect or zstandard, and `../shared` does not travel, so every
token is synthetic. Each part is one small function calling the library's public entry points;
after each part `DIR/doctor.json` is rewritten (atomically) with every result so far, so a run
cut short still leaves what it measured. Exit status 1 if any part failed.

Parts (`golfmodel/doctor/parts.py`): device and versions; matmul TFLOP/s and copy GB/s; the fused CfC scan and fake-quant on
the device against the CPU reference; compile of the full h100x8 model and the recompiles a QAT
switch causes (must be 0); ~50 steady optimiser steps at the per-rank h100x8 shape (65,536
tokens: 4 micro-batches of 16 x 1024) with step time, peak memory and compile time; Muon and
τ-update time; bf16 evaluation throughput on a slice; the step-cost model's one-GPU projection
beside the measured step, with the ratio. A part whose library piece is not there yet (the fused
scan `golfmodel.model.scan_triton`, the Lloyd τ update) is "skipped: not available": a FAIL on
CUDA, fine in --smoke, which runs the same logic at toy sizes on the CPU (compiles with dynamo's
eager backend there: an inductor CPU build would take minutes) and is in the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from golfmodel.doctor.parts import PARTS, SMOKE_MODEL, SMOKE_SEQ_LEN, Ctx, h100x8_model

__all__ = ["PARTS", "SMOKE_MODEL", "SMOKE_SEQ_LEN", "main", "register", "run_gpu"]


def _write(ctx: Ctx) -> None:
    from golfmodel.atomic import atomic_write_text

    atomic_write_text(ctx.out / "doctor.json", json.dumps(ctx.results, indent=2, default=str) + "\n")


def run_gpu(*, smoke: bool, out: str | Path, cache_dir: str | Path | None = None) -> int:
    """Run every part in order, rewriting doctor.json after each; 0 if none failed."""
    dev = torch.device("cpu") if smoke else torch.device("cuda", 0)
    if not smoke and not torch.cuda.is_available():
        print("error: golf doctor gpu needs CUDA (use --smoke on a CPU)", file=sys.stderr)
        return 2
    if smoke:
        cfg = SMOKE_MODEL
        sizes = dict(micro_seqs=2, micro_batches=2, seq_len=SMOKE_SEQ_LEN, steps=2)
        torch.set_num_threads(1)
    else:
        cfg = h100x8_model()
        sizes = dict(micro_seqs=16, micro_batches=4, seq_len=1024, steps=50)
    ctx = Ctx(
        smoke=smoke,
        device=dev,
        out=Path(out),
        cache_dir=Path(cache_dir) if cache_dir else Path(out) / "step_cost",
        cfg=cfg,
        **sizes,
    )
    t_all = time.perf_counter()
    for name, part in PARTS:
        t0 = time.perf_counter()
        try:
            res = part(ctx)
        except Exception as e:  # a crashed part is a failed part; the others still run
            res = {"status": "fail", "error": f"{type(e).__name__}: {e}"}
        res["part_seconds"] = round(time.perf_counter() - t0, 3)
        ctx.results[name] = res
        ctx.results["total_seconds"] = round(time.perf_counter() - t_all, 3)
        _write(ctx)
        print(f"{name:<12} {res['status']:<5} {res['part_seconds']:>8.1f} s  " + _brief(res), flush=True)
    failed = [k for k, v in ctx.results.items() if isinstance(v, dict) and v.get("status") == "fail"]
    print(f"doctor: {len(failed)} failed {failed} -> {ctx.out / 'doctor.json'}")
    return 1 if failed else 0


def _brief(res: dict[str, Any]) -> str:
    keys = [k for k in res if k not in ("status", "part_seconds", "rows_ms")][:4]
    return ", ".join(f"{k}={res[k]:.4g}" if isinstance(res[k], float) else f"{k}={res[k]}" for k in keys)


def register(sub: Any) -> None:
    """`golf doctor gpu [--smoke] [--out DIR]` (the golf CLI's library-command hook)."""
    p = sub.add_parser("doctor", help="one-shot checks of a machine (gpu)")
    _add_args(p)
    p.set_defaults(func=lambda args: run_gpu(smoke=args.smoke, out=args.out, cache_dir=args.cache_dir))


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("gpu",))
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (the test suite's run)")
    p.add_argument(
        "--out", default="artifacts/doctor", help="folder for doctor.json (default artifacts/doctor)"
    )
    p.add_argument("--cache-dir", default=None, help="step-cost count cache (default OUT/step_cost)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m golfmodel.doctor", description=__doc__.split("\n")[0])
    _add_args(p)
    args = p.parse_args(argv)
    return run_gpu(smoke=args.smoke, out=args.out, cache_dir=args.cache_dir)
