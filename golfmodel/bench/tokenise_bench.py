"""Tokenisation throughput: the streaming pipeline (read → workers → shards) against sentencepiece alone.

    python -m golfmodel.bench.tokenise_bench --docs DOCS.jsonl --model fineweb_1024_bpe.model \
        [--repeat 20] [--workers 1,2] [--batch-docs 512]

The documents are repeated `repeat` times into a temporary JSONL. The reference is
sentencepiece's own batch encode, one thread, on the same texts in this process
(no reading, no writing). Each pipeline row runs `tokenise` on the first half
and on all of the repeated file and reports steady-state rates, Δbytes/Δseconds,
which cancel the fixed costs (pool start-up, model loading); the wall-clock rate
of the whole full run is shown too. Wall-clock rates need idle cores (workers + 1
for the reading/writing parent); CPU rates do not: `MB/CPU-s` is text per
CPU-second of the workers, and `per worker / sp` divides it by sentencepiece's
own text per CPU-second (target ≥ 0.9); `parent CPU-s/MB` is the parent's cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from golfmodel.data.tokenise import JsonlSource, TokeniseConfig, iter_texts, load_sentencepiece, tokenise


def _repeat_file(src: Path, dst: Path, times: int) -> None:
    data = src.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    with dst.open("wb") as f:
        for _ in range(times):
            f.write(data)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def reference_rate(texts: list[str], model: Path, batch_docs: int) -> tuple[float, float, float]:
    """(wall MB/s of text, tokens/s, CPU MB/s) of sentencepiece's single-thread batch encode over `texts`."""
    sp = load_sentencepiece(model)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch_docs):
        ids = sp.encode_as_numpy(texts[i : i + batch_docs], add_bos=True, num_threads=1)
        n_tokens += sum(len(x) for x in ids)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return n_bytes / 1e6 / dt, n_tokens / dt, n_bytes / 1e6 / dc


def _pipeline_run(
    src: Path, out: Path, model: Path, workers: int, batch_docs: int
) -> tuple[float, int, int, float, float]:
    """(wall s, text bytes, tokens, worker CPU s, parent CPU s) of one tokenise run."""
    cfg = TokeniseConfig(
        variant=f"sp{load_sentencepiece(model).get_piece_size()}",
        tokenizer_path=model,
        num_val_docs=0,
        workers=workers,
        batch_docs=batch_docs,
        progress=False,
    )
    c_kids, c_self, t0 = _children_cpu(), time.process_time(), time.perf_counter()
    res = tokenise(JsonlSource(path=src), out, cfg)
    wall = time.perf_counter() - t0
    return wall, res.text_bytes, res.tokens_train, _children_cpu() - c_kids, time.process_time() - c_self


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--docs", type=Path, required=True, help="JSONL documents (e.g. the sample's docs_selected.jsonl)"
    )
    p.add_argument("--model", type=Path, required=True, help="sentencepiece model")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--batch-docs", type=int, default=512)
    p.add_argument("--trials", type=int, default=3, help="best of N for every measurement (noisy machines)")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    half = max(1, args.repeat // 2)

    with tempfile.TemporaryDirectory(prefix="tokbench-") as tmp:
        tmpd = Path(tmp)
        full, part = tmpd / "full.jsonl", tmpd / "half.jsonl"
        _repeat_file(args.docs, full, args.repeat)
        _repeat_file(args.docs, part, half)
        texts = list(iter_texts(JsonlSource(path=full)))
        refs = [reference_rate(texts, args.model, args.batch_docs) for _ in range(args.trials)]
        ref_mb, ref_tok, ref_cpu = max(r[0] for r in refs), max(r[1] for r in refs), max(r[2] for r in refs)
        del texts
        rows = [("sentencepiece, 1 thread, encode only", 1, ref_mb, ref_tok, ref_mb, ref_cpu, 1.0, 0.0)]
        for w in workers:
            runs = {
                src: min(
                    (
                        _pipeline_run(src, tmpd / f"out{w}", args.model, w, args.batch_docs)
                        for _ in range(args.trials)
                    ),
                    key=lambda r: r[0],
                )  # fmt: skip
                for src in (part, full)
            }
            a, b = runs[part], runs[full]
            mb = (b[1] - a[1]) / 1e6
            wall_mb, tok = mb / (b[0] - a[0]), (b[2] - a[2]) / (b[0] - a[0])
            cpu_mb = mb / max(b[3] - a[3], 1e-9)  # MB per worker CPU-second, steady state
            parent_s_per_mb = (b[4] - a[4]) / mb
            rows.append((f"pipeline, {w} worker(s), reading + writing", w, wall_mb, tok, b[1] / 1e6 / b[0], cpu_mb,
                         cpu_mb / ref_cpu, parent_s_per_mb))  # fmt: skip

    print(
        f"documents: {args.docs} x{args.repeat}; model {args.model.name}; {os.cpu_count()} cores; best of {args.trials}"
    )
    head = ("workers", "MB/s", "tokens/s", "MB/s wall", "MB/CPU-s", "per worker / sp", "parent CPU-s/MB")
    print(f"{'':<40} " + " ".join(f"{h:>{max(len(h), 9)}}" for h in head))
    for name, w, mb, tok, wall, cpu, ratio, par in rows:
        print(
            f"{name:<40} {w:>9} {mb:>9.2f} {tok:>9,.0f} {wall:>9.2f} {cpu:>9.2f} {ratio:>15.2f} {par:>15.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
