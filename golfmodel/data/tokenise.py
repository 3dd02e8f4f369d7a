"""Documents → token shards: the parallel, streaming pipeline; sp → byte260 conversion.

The parent reads batches of documents (`golfmodel.data.sources`) and feeds an
ordered `multiprocessing.Pool.imap` (spawned workers, each with its own
single-threaded encoder from `golfmodel.data.encoders`), with a bounded number of
batches in flight so memory stays flat; it streams the returned uint16 arrays
into one `ShardWriter` per split. Validation is the first `num_val_docs`
documents in source order, the rest is train (SPEC §2).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from golfmodel.data.encoders import (
    BYTE260_VOCAB,
    SP_RECIPE,
    Byte260Encoder,
    SentencePieceEncoder,
    bytes_to_tokens,
    load_sentencepiece,
    make_encoder,
    parse_variant,
    train_sentencepiece,
)
from golfmodel.data.shards import BOS_ID, ShardWriter, document_bounds, read_shard
from golfmodel.data.sources import (
    DatasetsSource,
    DocBatch,
    DocumentError,
    DocumentSource,
    IterableSource,
    JsonlSource,
    ParquetSource,
    iter_texts,
    open_source,
)

__all__ = [  # sources and encoders are re-exported: `tokenise` is the data plane's front door
    "BYTE260_VOCAB",
    "SP_RECIPE",
    "Byte260Encoder",
    "DatasetsSource",
    "DocBatch",
    "DocumentError",
    "DocumentSource",
    "IterableSource",
    "JsonlSource",
    "ParquetSource",
    "SentencePieceEncoder",
    "TokeniseConfig",
    "TokeniseResult",
    "convert_sp_to_byte260",
    "iter_texts",
    "load_sentencepiece",
    "open_source",
    "tokenise",
    "train_sentencepiece",
]

NUM_VAL_DOCS = 50_000  # the challenge's validation split
SHARD_TOKENS = 10**8  # tokens per official shard


# ---------------------------------------------------------------------------
# Worker functions (one encoder per worker process)


_WORKER: dict[str, Any] = {}


def _init_encoder(model_path: str | None) -> None:
    _WORKER["encoder"] = make_encoder(model_path)


def _encode_batch(batch: DocBatch) -> tuple[np.ndarray, int, int]:
    """Worker: (tokens uint16, documents, UTF-8 text bytes) of a batch."""
    texts = batch.resolve_texts()
    tokens = _WORKER["encoder"].encode_docs(texts)
    return tokens, len(texts), sum(len(t.encode("utf-8", errors="replace")) for t in texts)


def _init_sp_decoder(model_path: str) -> None:
    _WORKER["sp"] = load_sentencepiece(model_path)


def _sp_docs_to_byte260(docs: list[np.ndarray]) -> tuple[np.ndarray, int, int]:
    """Worker: decode sp documents (BOS-led, or a leading partial one) and re-encode them as byte260."""
    sp = _WORKER["sp"]
    with_bos = [bool(d.size) and int(d[0]) == BOS_ID for d in docs]
    ids = [(d[1:] if b else d).tolist() for d, b in zip(docs, with_bos, strict=True)]
    chunks = [t.encode("utf-8") for t in sp.decode(ids)]
    return bytes_to_tokens(chunks, with_bos), len(docs), sum(map(len, chunks))


# ---------------------------------------------------------------------------
# The pipeline


@dataclass(kw_only=True)
class _Counts:
    docs: dict[str, int] = field(default_factory=lambda: {"val": 0, "train": 0})
    text_bytes: int = 0


def _run_pipeline(
    tasks: Iterable[tuple[str, Any]],
    fn: Callable[[Any], tuple[np.ndarray, int, int]],
    init: Callable[..., None],
    initargs: tuple[Any, ...],
    writers: dict[str, ShardWriter],
    *,
    workers: int,
    progress: bool,
    desc: str,
) -> _Counts:
    """Run `fn` over `(split, payload)` tasks in order and stream the token arrays into `writers[split]`."""
    counts = _Counts()
    bar = tqdm(desc=desc, unit="doc", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def consume(split: str, result: tuple[np.ndarray, int, int]) -> None:
        tokens, n_docs, n_bytes = result
        writers[split].write(tokens)
        counts.docs[split] += n_docs
        counts.text_bytes += n_bytes
        bar.update(n_docs)

    try:
        if workers == 0:  # in-process: for debugging and tiny inputs
            init(*initargs)
            for split, payload in tasks:
                consume(split, fn(payload))
            return counts
        in_flight = threading.BoundedSemaphore(4 * workers)  # bounds memory: the pool reads its input eagerly
        stop = threading.Event()
        splits: deque[str] = deque()

        def feed() -> Iterator[Any]:  # runs in the pool's task-handler thread
            for split, payload in tasks:
                while not in_flight.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                splits.append(split)
                yield payload

        with mp.get_context("spawn").Pool(workers, initializer=init, initargs=initargs) as pool:
            try:
                for result in pool.imap(fn, feed()):
                    in_flight.release()
                    consume(splits.popleft(), result)
            finally:
                stop.set()
        return counts
    finally:
        bar.close()


def _split_tasks(
    batches: Iterable[DocBatch], *, num_val_docs: int, max_docs: int | None
) -> Iterator[tuple[str, DocBatch]]:
    """Tag batches val/train: the first `num_val_docs` documents are validation; stop after `max_docs`."""
    seen = 0
    for batch in batches:
        n = len(batch)
        if max_docs is not None:
            if seen >= max_docs:
                return
            if seen + n > max_docs:
                batch, n = batch.slice(0, max_docs - seen), max_docs - seen
        cut = min(max(num_val_docs - seen, 0), n)  # documents of this batch that are validation
        if cut:
            yield "val", (batch if cut == n else batch.slice(0, cut))
        if cut < n:
            yield "train", (batch if cut == 0 else batch.slice(cut, n))
        seen += n


_SHARD_RE = re.compile(r"fineweb_(val|train)_\d{6}\.bin")


def _clear_stale_shards(out_dir: Path) -> None:
    """Remove shards of a previous run, so a glob never mixes runs (as the official exporter does)."""
    for p in out_dir.glob("fineweb_*_*.bin"):
        if _SHARD_RE.fullmatch(p.name):
            p.unlink()


@dataclass(frozen=True, kw_only=True)
class TokeniseConfig:
    """How to tokenise documents into shards."""

    variant: str  # "sp<V>" or "byte260"
    tokenizer_path: Path | None = None  # sp model; None with sp<V> → train one on the train documents
    num_val_docs: int = NUM_VAL_DOCS
    shard_tokens: int = SHARD_TOKENS
    workers: int | None = None  # None → os.cpu_count(); 0 → in this process
    batch_docs: int = 512
    max_docs: int | None = None  # stop after this many documents (None: the whole source)
    tokenizer_train_docs: int | None = None  # cap on documents used to train an sp tokenizer
    progress: bool = True

    def __post_init__(self) -> None:
        v = parse_variant(self.variant)
        if v is None and self.tokenizer_path is not None:
            raise ValueError("byte260 takes no tokenizer_path")
        if self.num_val_docs < 0:
            raise ValueError(f"num_val_docs must be >= 0, got {self.num_val_docs}")
        if self.batch_docs < 1:
            raise ValueError(f"batch_docs must be >= 1, got {self.batch_docs}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


@dataclass(frozen=True, kw_only=True)
class TokeniseResult:
    """What a tokenise (or conversion) run wrote, with counts and throughput."""

    out_dir: Path
    variant: str
    vocab_size: int
    tokenizer_path: Path | None
    val_paths: tuple[Path, ...]
    train_paths: tuple[Path, ...]
    docs_val: int
    docs_train: int
    tokens_val: int
    tokens_train: int
    text_bytes: int  # UTF-8 bytes of the documents' text
    seconds: float
    workers: int

    @property
    def docs_mb_per_s(self) -> float:
        return self.text_bytes / 1e6 / max(self.seconds, 1e-9)

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens_val + self.tokens_train) / max(self.seconds, 1e-9)


def tokenise(source: DocumentSource, out_dir: str | Path, cfg: TokeniseConfig) -> TokeniseResult:
    """Tokenise a document source into `out_dir/fineweb_{val,train}_NNNNNN.bin` (stale shards removed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if cfg.workers is None else cfg.workers
    t0 = time.perf_counter()
    vocab = parse_variant(cfg.variant)
    model_path = cfg.tokenizer_path
    if vocab is not None and model_path is None:
        model_path = out_dir / f"fineweb_{vocab}_bpe.model"
        texts = iter_texts(source, skip=cfg.num_val_docs, limit=cfg.tokenizer_train_docs)
        train_sentencepiece(texts, model_path, vocab_size=vocab, num_threads=max(1, workers))
    encoder = make_encoder(model_path)  # validates the model before any worker starts
    if vocab is not None and encoder.vocab_size != vocab:
        raise ValueError(
            f"{model_path}: vocab size {encoder.vocab_size} does not match variant {cfg.variant}"
        )
    _clear_stale_shards(out_dir)
    writers = {s: ShardWriter(out_dir, f"fineweb_{s}", cfg.shard_tokens) for s in ("val", "train")}
    try:
        tasks = _split_tasks(
            source.batches(cfg.batch_docs), num_val_docs=cfg.num_val_docs, max_docs=cfg.max_docs
        )
        initargs = (None if model_path is None else str(model_path),)
        counts = _run_pipeline(
            tasks, _encode_batch, _init_encoder, initargs, writers,
            workers=workers, progress=cfg.progress, desc=f"tokenise {cfg.variant}",
        )  # fmt: skip
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    val_paths, train_paths = writers["val"].close(), writers["train"].close()
    if counts.docs["val"] < cfg.num_val_docs:
        raise DocumentError(
            f"{source.name}: only {counts.docs['val']} documents, fewer than num_val_docs={cfg.num_val_docs}"
        )
    return TokeniseResult(
        out_dir=out_dir,
        variant=cfg.variant,
        vocab_size=encoder.vocab_size,
        tokenizer_path=None if model_path is None else Path(model_path),
        val_paths=tuple(val_paths),
        train_paths=tuple(train_paths),
        docs_val=counts.docs["val"],
        docs_train=counts.docs["train"],
        tokens_val=writers["val"].n_tokens,
        tokens_train=writers["train"].n_tokens,
        text_bytes=counts.text_bytes,
        seconds=time.perf_counter() - t0,
        workers=workers,
    )


def _iter_sp_docs(paths: Sequence[Path], vocab_size: int, batch_docs: int) -> Iterator[list[np.ndarray]]:
    """Whole documents across shards in order (a document cut at a file boundary is re-joined)."""
    pending: list[np.ndarray] = []
    carry: np.ndarray | None = None
    for path in paths:
        tokens = read_shard(path, vocab_size=vocab_size)
        starts, ends = document_bounds(tokens)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            doc = np.array(tokens[s:e])
            if carry is not None and int(doc[0]) != BOS_ID:  # continuation of the previous shard's last doc
                carry = np.concatenate([carry, doc])
                continue
            if carry is not None:
                pending.append(carry)
                if len(pending) == batch_docs:
                    yield pending
                    pending = []
            carry = doc
    if carry is not None:
        pending.append(carry)
    if pending:
        yield pending


def convert_sp_to_byte260(
    val_shards: Sequence[Path],
    train_shards: Sequence[Path],
    sp_model: str | Path,
    out_dir: str | Path,
    *,
    shard_tokens: int = SHARD_TOKENS,
    workers: int | None = None,
    batch_docs: int = 512,
    progress: bool = True,
) -> TokeniseResult:
    """Re-tokenise sp shards as byte260 by decoding each document (its NFKC-normalised text) to UTF-8."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    t0 = time.perf_counter()
    vocab = int(load_sentencepiece(sp_model).get_piece_size())
    _clear_stale_shards(out_dir)
    writers = {s: ShardWriter(out_dir, f"fineweb_{s}", shard_tokens) for s in ("val", "train")}
    tasks = (
        (split, docs)
        for split, paths in (("val", val_shards), ("train", train_shards))
        for docs in _iter_sp_docs([Path(p) for p in paths], vocab, batch_docs)
    )
    try:
        counts = _run_pipeline(
            tasks, _sp_docs_to_byte260, _init_sp_decoder, (str(sp_model),), writers,
            workers=n_workers, progress=progress, desc="sp → byte260",
        )  # fmt: skip
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    val_paths, train_paths = writers["val"].close(), writers["train"].close()
    return TokeniseResult(
        out_dir=out_dir,
        variant="byte260",
        vocab_size=BYTE260_VOCAB,
        tokenizer_path=None,
        val_paths=tuple(val_paths),
        train_paths=tuple(train_paths),
        docs_val=counts.docs["val"],
        docs_train=counts.docs["train"],
        tokens_val=writers["val"].n_tokens,
        tokens_train=writers["train"].n_tokens,
        text_bytes=counts.text_bytes,
        seconds=time.perf_counter() - t0,
        workers=n_workers,
    )
