"""Storage-kind benchmark: bytes per weight, reconstruction error, and the cost of each scale operation.

    python -m golfmodel.bench.quant_bench                 # 1024 x 1024 Gaussian rows, every kind
    python -m golfmodel.bench.quant_bench --rows 4096 --cols 4096 --specs q2,int4g64,ternary

Per spec: stored bytes per weight (payload incl. scales, before zstd), the relative squared error
‖ŵ − w‖² / ‖w‖² after the exact fit and after one Lloyd step from a 1.3× mis-scaled start, and
wall times (median of `--repeat`) of fit_scale, update_scale (one Lloyd step), fake_quant forward,
encode and decode. CPU timings on a shared box are indicative only; the hot-path number that
matters on a GPU is update_scale vs fit_scale.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from golfmodel.quant.kinds import kind_for
from golfmodel.quant.spec import QuantSpec

DEFAULT_SPECS = "q2,q2g64,ternary,int3,int4,int4g64,int6,int8:absmax,fp8,fp8g64,fp16"


def _time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rel_err(kind, w: torch.Tensor, t: torch.Tensor) -> float:
    return float((kind.dequant(w, t) - w).double().pow(2).sum() / w.double().pow(2).sum())


def bench(rows: int, cols: int, specs: list[str], repeat: int, seed: int = 0) -> list[dict[str, float | str]]:
    """One result row per spec (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    out = []
    for label in specs:
        kind = kind_for(QuantSpec.parse(label))
        t = kind.fit_scale(w)
        start = kind.round_scale(t * 1.3) if kind.spec.has_scale else t
        payload = kind.encode(w, t)
        out.append(
            {
                "spec": label,
                "bytes_per_weight": kind.stored_bytes((rows, cols)) / (rows * cols),
                "rel_err_fit": _rel_err(kind, w, t),
                "rel_err_lloyd1": _rel_err(kind, w, kind.lloyd(w, start)) if kind.spec.has_scale else 0.0,
                "fit_ms": 1e3 * _time(lambda k=kind: k.fit_scale(w), repeat),
                "update_ms": 1e3 * _time(lambda k=kind, s=start: k.update_scale(w, s), repeat),
                "fake_quant_ms": 1e3 * _time(lambda k=kind, s=t: k.fake_quant(w, s), repeat),
                "encode_ms": 1e3 * _time(lambda k=kind, s=t: k.encode(w, s), repeat),
                "decode_ms": 1e3 * _time(lambda k=kind, b=payload: k.decode(b, (rows, cols)), repeat),
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--cols", type=int, default=1024)
    p.add_argument("--specs", default=DEFAULT_SPECS, help="comma-separated spec labels")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = bench(args.rows, args.cols, args.specs.split(","), args.repeat)
    print(f"{args.rows} x {args.cols} N(0, 0.02²) weights, {args.threads} thread(s), median of {args.repeat}")
    head = f"{'spec':<13} {'B/weight':>8} {'err fit':>9} {'err lloyd1':>10} {'fit ms':>8} {'update ms':>9} {'fq ms':>7} {'enc ms':>7} {'dec ms':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['spec']:<13} {r['bytes_per_weight']:>8.4f} {r['rel_err_fit']:>9.5f} {r['rel_err_lloyd1']:>10.5f} "
            f"{r['fit_ms']:>8.1f} {r['update_ms']:>9.1f} {r['fake_quant_ms']:>7.1f} {r['encode_ms']:>7.1f} {r['decode_ms']:>7.1f}"
        )


if __name__ == "__main__":
    main()
