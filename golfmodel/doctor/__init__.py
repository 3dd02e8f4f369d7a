"""`golf doctor gpu`: the one-shot check a session runs when it is lent a GPU (≤ 5 minutes).

    PYTHONPATH=. python -m golfmodel.doctor gpu [--smoke] [--out DIR]      # on the lent machine
    golf doctor gpu [--smoke] [--out DIR]                                  # where golf is installed

Imports only golfmodel + torch (+ numpy): the lent machine has torch, Triton, numpy and
sentencepiece, but no pydantic, Prefect or zstandard, and `../shared` does not travel, so every
token is synthetic. Each part is one small function calling the library's public entry points;
after each part `DIR/doctor.json` is rewritten (atomically) with every result so far, so a run
cut short still leaves what it measured. Exit status 1 if any part failed.

Parts (`parts.py`: correctness and compile; `perf.py`: timings, and the part list with caps):
device and versions; matmul TFLOP/s and copy GB/s; the fused CfC scan (`scan_check.self_check`
against the chunked torch scan) and QLinear's fake-quant on the device against the CPU; compile
of the full h100x8 model with zero recompiles across a QAT switch (`set_qat`); ~50 steady
optimiser steps at the per-rank h100x8 shape (65,536 tokens: 4 micro-batches of 16 x 1024) with
step time, peak memory and compile time; Muon (`time_muon_step`); τ (exact refit, one Lloyd
step eager and compiled); bf16 evaluation throughput (`eval_throughput`); the step-cost model's
one-GPU projection beside the measured step, with the ratio. Every part runs under a time cap
(5 minutes in all); a part stopped at its cap is recorded as skipped, a FAIL. --smoke runs the
same logic at toy sizes on the CPU (dynamo's eager backend; the fused scan in Triton's
interpreter, which `python -m golfmodel.doctor` switches on) and is in the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

# the parts module imports golfmodel.model.config only (no Triton kernels are built by importing it)
from golfmodel.doctor.parts import SMOKE_MODEL, SMOKE_SEQ_LEN, h100x8_model

if TYPE_CHECKING:
    from golfmodel.doctor.parts import Ctx

__all__ = ["SMOKE_MODEL", "SMOKE_SEQ_LEN", "h100x8_model", "main", "register", "run_gpu"]


class PartTimeout(Exception):
    """A part ran into its time cap."""


def _write(ctx: Ctx) -> None:
    from golfmodel.atomic import atomic_write_text

    atomic_write_text(ctx.out / "doctor.json", json.dumps(ctx.results, indent=2, default=str) + "\n")


@contextlib.contextmanager
def _cap(seconds: float) -> Iterator[None]:
    """Raise PartTimeout in the main thread after `seconds` (SIGALRM); a no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise PartTimeout(f"over its {seconds:.0f} s cap")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_gpu(
    *,
    smoke: bool,
    out: str | Path,
    cache_dir: str | Path | None = None,
    calibration_ratio: float | None = None,
    total_cap_s: float | None = None,
) -> int:
    """Run every part in order under its time cap, rewriting doctor.json after each; 0 if none failed.

    calibration_ratio: the step-cost model's ratio (printed by `golf bench step`) instead of
    counting the baseline on the device's host CPU.
    """
    from golfmodel.doctor import perf
    from golfmodel.doctor.parts import Ctx

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
        calibration_ratio=calibration_ratio,
        **sizes,
    )
    total = perf.TOTAL_CAP_S if total_cap_s is None else total_cap_s
    t_all = time.perf_counter()
    for name, part, cap in perf.PARTS:
        t0 = time.perf_counter()
        budget = min(cap, total - (t0 - t_all))
        if budget <= 0.0:
            res: dict[str, Any] = {"status": "fail", "skipped": f"no time left of the {total:.0f} s total"}
        else:
            ctx.deadline = t0 + budget
            try:
                with _cap(budget):
                    res = part(ctx)
            except PartTimeout as e:  # recorded as skipped: a FAIL
                res = {"status": "fail", "skipped": str(e)}
            except Exception as e:  # a crashed part is a failed part; the others still run
                res = {"status": "fail", "error": f"{type(e).__name__}: {e}"}
        res["cap_seconds"] = round(budget, 1)
        res["part_seconds"] = round(time.perf_counter() - t0, 3)
        ctx.results[name] = res
        ctx.results["total_seconds"] = round(time.perf_counter() - t_all, 3)
        _write(ctx)
        print(f"{name:<12} {res['status']:<5} {res['part_seconds']:>8.1f} s  " + _brief(res), flush=True)
    failed = [k for k, v in ctx.results.items() if isinstance(v, dict) and v.get("status") == "fail"]
    print(f"doctor: {len(failed)} failed {failed} -> {ctx.out / 'doctor.json'}")
    return 1 if failed else 0


def _brief(res: dict[str, Any]) -> str:
    keys = [k for k in res if k not in ("status", "part_seconds", "cap_seconds", "rows_ms", "shapes")][:4]
    return ", ".join(f"{k}={res[k]:.4g}" if isinstance(res[k], float) else f"{k}={res[k]}" for k in keys)


def register(sub: Any) -> None:
    """`golf doctor gpu [--smoke] [--out DIR]` (the golf CLI's library-command hook)."""
    p = sub.add_parser("doctor", help="one-shot checks of a machine (gpu)")
    _add_args(p)
    p.set_defaults(func=_run_args)


def _run_args(args: argparse.Namespace) -> int:
    return run_gpu(
        smoke=args.smoke, out=args.out, cache_dir=args.cache_dir, calibration_ratio=args.calibration_ratio
    )


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("gpu",))
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (the test suite's run)")
    p.add_argument(
        "--out", default="artifacts/doctor", help="folder for doctor.json (default artifacts/doctor)"
    )
    p.add_argument("--cache-dir", default=None, help="step-cost count cache (default OUT/step_cost)")
    p.add_argument(
        "--calibration-ratio",
        type=float,
        default=None,
        help="the step-cost model's ratio from `golf bench step` (default: count the baseline here)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m golfmodel.doctor", description=__doc__.split("\n")[0])
    _add_args(p)
    return _run_args(p.parse_args(argv))
