"""Bigram model of the training shards: pair counts, add-k smoothed log-probabilities, its val bpb.

Counting (which pairs): within a shard every adjacent pair (t[i-1], t[i]) is
counted, including (last token of a document → BOS) and (BOS → first token of
the next document), so the table predicts every target the scorer scores. A
shard that does not start with BOS (a document cut by the previous shard) gets
one extra pair (BOS → t[0]): "document starts use prev = BOS" (SPEC §2). Shards
are counted independently, so the order in which they are given does not matter.

Smoothing: p(n | p) = (c(p, n) + k) / (Σ_m c(p, m) + k·V), natural log, stored
as float32 (V, V). k defaults to 0.1 (see docs/decisions/data.md).

Files (written atomically): `counts.npz` (`counts` uint32 — int64 if any count
overflows —, `vocab_size`, `k`, `n_pairs`) and `logprob.npy` (float32 (V, V));
or, given a `.npz` path, one file holding both (what a benchmark caches).
The bigram's own validation bpb is a floor every trained model must beat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from golfmodel.atomic import atomic_write
from golfmodel.data.shards import BOS_ID, CHECK_CHUNK, read_shard

if TYPE_CHECKING:
    from golfmodel.eval.bytes import ByteTable

DEFAULT_K = 0.1
MAX_VOCAB = 8192  # dense (V, V) tables: 8192² int64 counts = 512 MiB, the most worth holding
COUNTS_FILE = "counts.npz"
LOGPROB_FILE = "logprob.npy"


@dataclass(frozen=True, kw_only=True, eq=False)
class BigramTable:
    """Pair counts (V, V) int64, indexed [prev, next], and the add-k constant."""

    counts: np.ndarray
    k: float

    def __post_init__(self) -> None:
        c = self.counts
        if c.ndim != 2 or c.shape[0] != c.shape[1] or c.dtype != np.int64:
            raise ValueError(f"counts must be a square int64 array, got {c.dtype} {c.shape}")
        if not self.k > 0:
            raise ValueError(f"k must be > 0 (add-k smoothing), got {self.k}")

    @property
    def vocab_size(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(self.counts.sum())

    def logprob(self) -> np.ndarray:
        """log p(next | prev), float32 (V, V); each row sums to 1 in probability."""
        return smooth_logprob(self.counts, self.k)


def _check_vocab(vocab_size: int) -> None:
    if not 0 < vocab_size <= MAX_VOCAB:
        raise ValueError(
            f"bigram tables are dense (V, V): vocab_size must be in [1, {MAX_VOCAB}], got {vocab_size}"
        )


def count_pairs(tokens: np.ndarray, vocab_size: int, *, chunk_tokens: int = CHECK_CHUNK) -> np.ndarray:
    """Counts (V, V) int64 of the pairs of one token stream (a shard), BOS → t[0] if it opens mid-document."""
    _check_vocab(vocab_size)
    V = vocab_size
    counts = np.zeros(V * V, dtype=np.int64)  # flat (V·V,), index prev·V + next
    n = len(tokens)
    if n and int(tokens[0]) != BOS_ID:
        counts[BOS_ID * V + int(tokens[0])] += 1
    for a in range(1, n, chunk_tokens):
        b = min(a + chunk_tokens, n)
        prev = np.asarray(tokens[a - 1 : b - 1]).astype(np.int64)  # (b-a,)
        nxt = np.asarray(tokens[a:b]).astype(np.int64)  # (b-a,)
        counts += np.bincount(prev * V + nxt, minlength=V * V)
    return counts.reshape(V, V)


def count_bigrams(
    shard_paths: Iterable[str | Path], vocab_size: int, *, chunk_tokens: int = CHECK_CHUNK
) -> np.ndarray:
    """Sum of `count_pairs` over shards, streamed (each shard memory-mapped and read in chunks)."""
    _check_vocab(vocab_size)
    total = np.zeros((vocab_size, vocab_size), dtype=np.int64)
    n_shards = 0
    for path in shard_paths:
        total += count_pairs(read_shard(path, vocab_size=vocab_size), vocab_size, chunk_tokens=chunk_tokens)
        n_shards += 1
    if n_shards == 0:
        raise ValueError("no training shards to count")
    return total


def smooth_logprob(counts: np.ndarray, k: float) -> np.ndarray:
    """Add-k smoothed log p(next | prev) (natural log), computed in float64, returned float32 (V, V)."""
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k}")
    c = counts.astype(np.float64)  # (V, V)
    V = c.shape[1]
    log_den = np.log(c.sum(axis=1, keepdims=True) + k * V)  # (V, 1)
    return (np.log(c + k) - log_den).astype(np.float32)


def build_bigram(
    shard_paths: Iterable[str | Path], vocab_size: int, out: str | Path | None = None, *, k: float = DEFAULT_K
) -> BigramTable:
    """Count the training shards into a BigramTable; with `out`, also write it (see `save_bigram`)."""
    table = BigramTable(counts=count_bigrams(shard_paths, vocab_size), k=k)
    if out is not None:
        save_bigram(table, out)
    return table


def _counts_arrays(table: BigramTable) -> dict[str, np.ndarray]:
    counts = table.counts
    fits = int(counts.max(initial=0)) <= np.iinfo(np.uint32).max
    return {
        "counts": counts.astype(np.uint32) if fits else counts,
        "vocab_size": np.int64(table.vocab_size),
        "k": np.float64(table.k),
        "n_pairs": np.int64(table.n_pairs),
    }


def save_bigram(table: BigramTable, out: str | Path) -> tuple[Path, ...]:
    """Write the table atomically; return the paths written.

    `out` a folder: `counts.npz` and `logprob.npy` inside it (the bigram stage's layout).
    `out` a `.npz` path: one file holding the counts, k, vocab_size and `logprob` together.
    """
    out = Path(out)
    arrays = _counts_arrays(table)
    if out.suffix == ".npz":
        arrays["logprob"] = table.logprob()
        atomic_write(out, lambda f: np.savez_compressed(f, **arrays))
        return (out,)
    counts_path, logprob_path = out / COUNTS_FILE, out / LOGPROB_FILE
    atomic_write(counts_path, lambda f: np.savez_compressed(f, **arrays))
    logprob = table.logprob()
    atomic_write(logprob_path, lambda f: np.save(f, logprob))
    return counts_path, logprob_path


def load_bigram(path: str | Path) -> BigramTable:
    """Read the counts back (a folder's `counts.npz`, or a single `.npz`), checking the fields."""
    path = Path(path)
    path = path / COUNTS_FILE if path.is_dir() else path
    with np.load(path) as z:
        missing = {"counts", "vocab_size", "k"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}")
        counts, V, k = z["counts"].astype(np.int64), int(z["vocab_size"]), float(z["k"])
    if counts.shape != (V, V):
        raise ValueError(f"{path}: counts shape {counts.shape} != ({V}, {V})")
    return BigramTable(counts=counts, k=k)


def load_logprior(path: str | Path) -> np.ndarray:
    """The float32 (V, V) log-probability table: a folder, its `logprob.npy`, or a single `.npz`."""
    path = Path(path)
    if path.is_dir():
        path = path / LOGPROB_FILE
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "logprob" in z.files:
                table = z["logprob"]
            else:
                return load_bigram(path).logprob()
    else:
        table = np.load(path)
    if table.ndim != 2 or table.shape[0] != table.shape[1] or table.dtype != np.float32:
        raise ValueError(
            f"{path}: a log-prior must be a square float32 array, got {table.dtype} {table.shape}"
        )
    return table


def bigram_bpb(
    table: BigramTable | np.ndarray,
    val_tokens: np.ndarray,
    byte_table: ByteTable,
    *,
    chunk_tokens: int = CHECK_CHUNK,
) -> float:
    """Bits per byte of the bigram model over all N−1 targets of `val_tokens`, with the scorer's byte counts.

    bpb = Σ −log p(t_i | t_{i−1}) / ln 2 / Σ bytes(t_{i−1}, t_i), i = 1..N−1, sums in float64.
    `table` is a BigramTable or a float32 (V, V) log-probability array.
    """
    logprob = table.logprob() if isinstance(table, BigramTable) else np.asarray(table)
    V = logprob.shape[0]
    n = len(val_tokens)
    if n < 2:
        raise ValueError("need at least 2 validation tokens (one target)")
    if byte_table.vocab_size < V:
        raise ValueError(f"byte table covers {byte_table.vocab_size} ids, the bigram {V}")
    nll, n_bytes = 0.0, 0
    for a in range(1, n, chunk_tokens):
        b = min(a + chunk_tokens, n)
        prev = np.asarray(val_tokens[a - 1 : b - 1]).astype(np.int64)  # (b-a,)
        nxt = np.asarray(val_tokens[a:b]).astype(np.int64)  # (b-a,)
        if int(max(prev.max(), nxt.max())) >= V:
            raise ValueError(f"validation token id {int(max(prev.max(), nxt.max()))} >= bigram vocab {V}")
        nll -= float(logprob[prev, nxt].astype(np.float64).sum())
        n_bytes += int(byte_table.count(prev, nxt).sum())
    if n_bytes == 0:
        raise ValueError("validation targets stand for 0 bytes")
    return nll / math.log(2) / n_bytes
