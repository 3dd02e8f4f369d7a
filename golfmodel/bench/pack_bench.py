"""Benchmark: Q2BN pack and unpack throughput for a 16 MB-class model.

    python -m golfmodel.bench.pack_bench                       # 4 × 4096×4096 Q2Linear = 64 M 2-bit weights
    python -m golfmodel.bench.pack_bench --matrices 2 --rows 1024 --cols 1024 --threads 0 2

Stages timed: τ fitting (exact solve, all rows), record encoding (symbols + Gray packing),
zstd compression (level 22, one frame with checksum) per thread setting, and on the way back
decompression + parsing + checks, decoding to fp32 tensors, and loading into a model. MB/s
are given against the raw (decompressed) and the compressed size. Also reports whether the
compressed bytes depend on the thread setting. Timings are wall-clock on whatever machine runs
it; the numbers in docs/decisions/quant.md say which.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from golfmodel.q2bn.artifact import model_records, state_from_records
from golfmodel.q2bn.format import (
    ZSTD_LEVEL,
    atomic_write_bytes,
    compress_raw,
    decompress,
    dumps_raw,
    parse_raw,
)
from golfmodel.quant.q2linear import Q2Linear, q2_linears

META = {"model": {"bench": True}, "tokenizer": {"id": "bench", "vocab_size": 0}, "settings_hash": "bench"}


def build(matrices: int, rows: int, cols: int, seed: int = 0) -> nn.Module:
    """A stack of Q2Linear layers with N(0, 0.02²) weights; τ is not fitted yet."""
    model = nn.Sequential(*(Q2Linear(cols, rows, device="meta") for _ in range(matrices)))
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in q2_linears(model):
            layer.weight.copy_(torch.randn(rows, cols, generator=g) * 0.02)
    return model


def _warm_up() -> None:
    """One tiny pass through every stage, so first-call overheads of torch ops are not timed."""
    model = build(1, 8, 12)
    for layer in q2_linears(model):
        layer.refresh_tau()
    contents = parse_raw(decompress(compress_raw(dumps_raw(META, model_records(model)), level=1)))
    model.load_state_dict(state_from_records(contents.records))


def _timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m golfmodel.bench.pack_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--matrices", type=int, default=4)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--level", type=int, default=ZSTD_LEVEL)
    p.add_argument(
        "--threads", type=int, nargs="+", default=[0], help="zstd worker counts to time (0 = single-threaded)"
    )
    args = p.parse_args(argv)

    _warm_up()
    model = build(args.matrices, args.rows, args.cols)
    n_weights = args.matrices * args.rows * args.cols
    rows_out: list[tuple[str, float, str]] = []

    _, t_tau = _timed(lambda: [layer.refresh_tau() for layer in q2_linears(model)])
    rows_out.append(("fit τ (exact, all rows)", t_tau, f"{n_weights / t_tau / 1e6:.1f} M weights/s"))
    records, t_enc = _timed(model_records, model)
    raw, t_raw = _timed(dumps_raw, META, records)
    mb_raw = len(raw) / 1e6
    rows_out.append(("encode records (symbols, Gray pack)", t_enc, f"{mb_raw / t_enc:.1f} MB/s raw"))
    rows_out.append(("assemble stream + body sha256", t_raw, f"{mb_raw / t_raw:.1f} MB/s raw"))

    blobs: dict[int, bytes] = {}
    for threads in args.threads:
        blob, t_c = _timed(compress_raw, raw, level=args.level, threads=threads)
        blobs[threads] = blob
        mb_c = len(blob) / 1e6
        rows_out.append(
            (
                f"zstd-{args.level} compress, threads={threads}",
                t_c,
                f"{mb_raw / t_c:.2f} MB/s raw, {mb_c / t_c:.2f} MB/s out",
            )
        )
    blob = blobs[args.threads[0]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.q2bn"
        _, t_w = _timed(atomic_write_bytes, path, blob)
        data, t_r = _timed(path.read_bytes)
    rows_out.append(("write (atomic, fsync)", t_w, f"{len(blob) / 1e6 / max(t_w, 1e-9):.0f} MB/s"))
    raw_back, t_d = _timed(decompress, data, "bench")
    rows_out.append(("zstd decompress + checksum", t_d, f"{mb_raw / t_d:.0f} MB/s raw"))
    contents, t_p = _timed(parse_raw, raw_back, "bench")
    rows_out.append(("parse + sha256 + field checks", t_p, f"{mb_raw / t_p:.0f} MB/s raw"))
    state, t_dec = _timed(state_from_records, contents.records)
    rows_out.append(("decode to fp32 tensors", t_dec, f"{n_weights / t_dec / 1e6:.0f} M weights/s"))
    target = build(args.matrices, args.rows, args.cols, seed=1)
    _, t_load = _timed(target.load_state_dict, state)
    rows_out.append(("load_state_dict", t_load, ""))

    t_pack = t_enc + t_raw + next(t for name, t, _ in rows_out if name.startswith("zstd-")) + t_w
    t_unpack = t_r + t_d + t_p + t_dec + t_load
    print(f"model: {args.matrices} × Q2Linear({args.cols}→{args.rows}) = {n_weights / 1e6:.1f} M weights")
    print(f"raw stream {len(raw):,} bytes, compressed {len(blob):,} bytes (ratio {len(blob) / len(raw):.4f})")
    print(f"torch threads {torch.get_num_threads()}")
    print()
    width = max(len(r[0]) for r in rows_out)
    print(f"{'stage':<{width}}  {'seconds':>8}  rate")
    for name, t, rate in rows_out:
        print(f"{name:<{width}}  {t:>8.3f}  {rate}")
    print()
    print(
        f"pack total (encode + zstd + write): {t_pack:.2f} s = {mb_raw / t_pack:.2f} MB/s raw, {len(blob) / 1e6 / t_pack:.2f} MB/s compressed"
    )
    print(
        f"unpack total (read → model):        {t_unpack:.2f} s = {mb_raw / t_unpack:.1f} MB/s raw, {len(blob) / 1e6 / t_unpack:.1f} MB/s compressed"
    )
    if len(blobs) > 1:
        same = len({bytes(b) for b in blobs.values()}) == 1
        sizes = ", ".join(f"threads={k}: {len(v):,}" for k, v in blobs.items())
        print(f"compressed bytes identical across thread settings: {same} ({sizes})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
