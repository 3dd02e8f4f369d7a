"""Benchmark: CPU training throughput of the q2-geode hybrid vs an all-attention twin, and the CfC scan.

    python -m golfmodel.bench.model_bench                  # d 192, 1 group, seq 1024, batch 1 (~1 min)
    python -m golfmodel.bench.model_bench --d-model 256 --groups 2 --seq 1024 --batch 2 --iters 5

Rows: forward+backward tokens/s at `--seq` for (a) q2-geode "GCCC" with QAT on (every Q2Linear
fake-quantises its weight), (b) the same model with QAT off, (c) the all-GQA ablation "GGGG"
at the same width (a GQA mixer and a CfC mixer both hold 3·d² weights, so the parameter counts
match to within the scalar gains); then the CfC scan alone (B x seq x d_model, fp32): the chunked
log-space `cfc_scan` against the token-by-token `cfc_scan_reference`, forward and
forward+backward. One torch thread by default (`--threads 0` for torch's default): on a shared
machine multi-threaded timings of small models mostly measure contention. Median of `--iters`
timed runs after one warm-up; the three models are timed
round-robin so that load changes on a shared machine hit them alike. Timings are wall-clock on
whatever machine runs it; docs/decisions/model.md records which.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from golfmodel.model import ModelConfig, build_model, head_shape
from golfmodel.model.cfc import cfc_gates, cfc_scan, cfc_scan_reference


def _median_seconds(fn: Callable[[], object], iters: int) -> float:
    fn()  # warm-up: first-call overheads are not timed
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _config(d: int, groups: int, pattern: str, vocab: int, seq: int, chunk: int) -> ModelConfig:
    n_heads, n_kv = head_shape(d)
    return ModelConfig(
        arm="q2-geode",
        vocab_size=vocab,
        d_model=d,
        depth=groups,
        pattern=pattern,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        mlp_mult=8 / 3,
        cfc_chunk=chunk,
        max_seq_len=seq,
    )


def make_step(cfg: ModelConfig, *, qat: bool, batch: int, seed: int = 0) -> tuple[int, Callable[[], None]]:
    """(parameters, one forward+backward step) of `cfg` on random tokens with a BOS every 200 tokens."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():  # non-zero output projections: a trained-like compute path
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and getattr(m, "_zero_init", False):
                torch.nn.init.normal_(m.weight, std=0.02)
    for layers in model.qat_groups():
        for layer in layers:
            layer.refresh_tau()
            layer.set_qat(qat)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(4, cfg.vocab_size, (batch, cfg.max_seq_len + 1), generator=g)
    idx[:, ::200] = 1
    x, y = idx[:, :-1], idx[:, 1:]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()

    return sum(p.numel() for p in model.parameters()), step


def interleaved_seconds(steps: Sequence[Callable[[], None]], iters: int) -> list[float]:
    """Median seconds per call of each step, timed round-robin (load changes hit every step alike)."""
    for step in steps:
        step()  # warm-up
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(iters):
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def scan_rates(batch: int, seq: int, d: int, chunk: int, iters: int) -> dict[str, float]:
    """Tokens/s of the chunked and the reference scan, forward and forward+backward."""
    g = torch.Generator().manual_seed(0)
    a = F.softplus(torch.randn(batch, seq, d, generator=g))
    b = torch.randn(batch, seq, d, generator=g)
    dt = torch.exp(torch.empty(d).uniform_(-4.6, 0.0, generator=g))
    log_decay, c = cfc_gates(a, b, dt)
    reset = torch.zeros(batch, seq, dtype=torch.bool)
    reset[:, ::200] = True
    fns = {
        "chunked": lambda ld, cc: cfc_scan(ld, cc, reset, chunk),
        "reference": lambda ld, cc: cfc_scan_reference(ld, cc, reset),
    }
    out: dict[str, float] = {}
    for name, fn in fns.items():
        with torch.no_grad():
            out[f"{name} fwd"] = batch * seq / _median_seconds(lambda fn=fn: fn(log_decay, c), iters)
        ld, cc = log_decay.clone().requires_grad_(True), c.clone().requires_grad_(True)
        out[f"{name} fwd+bwd"] = (
            batch * seq / _median_seconds(lambda fn=fn, ld=ld, cc=cc: fn(ld, cc).sum().backward(), iters)
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m golfmodel.bench.model_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--chunk", type=int, default=64, help="cfc_chunk")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: stable on a shared box; 0 = torch's)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"# model bench: d_model {args.d_model}, {args.groups} group(s), vocab {args.vocab}, seq {args.seq}, "
        f"batch {args.batch}, cfc_chunk {args.chunk}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    )
    print(f"{'model (fwd+bwd)':<32}{'params':>12}{'tokens/s':>12}")
    rows = [("q2-geode GCCC, QAT on", "GCCC", True), ("q2-geode GCCC, QAT off", "GCCC", False)]
    rows.append(("all-GQA GGGG, QAT on", "GGGG", True))
    built = [
        make_step(
            _config(args.d_model, args.groups, pattern, args.vocab, args.seq, args.chunk),
            qat=qat,
            batch=args.batch,
        )
        for _, pattern, qat in rows
    ]
    seconds = interleaved_seconds([step for _, step in built], args.iters)
    for (label, _, _), (n, _), sec in zip(rows, built, seconds, strict=True):
        print(f"{label:<32}{n:>12,}{args.batch * args.seq / sec:>12,.0f}")

    print()
    print(f"{'CfC scan (B x T x d fp32)':<32}{'':>12}{'tokens/s':>12}")
    for name, rate in scan_rates(args.batch, args.seq, args.d_model, args.chunk, args.iters).items():
        print(f"{name:<32}{'':>12}{rate:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
