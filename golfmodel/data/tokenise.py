"""Documents → token shards: document sources, the sp<V> and byte260 encoders, the parallel pipeline.

Sources (read in source order, streamed, never whole): JSONL with a text field
(the challenge's `docs_selected.jsonl`), Parquet with a text column (pyarrow
record batches) and a `datasets` streaming source (`HuggingFaceFW/fineweb`).
Validation is the first `num_val_docs` documents, the rest is train (SPEC §2).

Variants: `sp<V>` — a sentencepiece model (the hub's, or trained here with the
official recipe); `byte260` — UTF-8 bytes, id = byte + 4, pad/bos/eos/unk =
0/1/2/3. Each document becomes BOS (= 1) + its tokens, no EOS.

Parallelism: the parent reads batches of documents and feeds an ordered
`multiprocessing.Pool.imap` (spawned workers, each with its own single-threaded
encoder), with a bounded number of batches in flight so memory stays flat; the
parent streams the returned uint16 arrays into `ShardWriter`s.
"""

from __future__ import annotations

import io
import json
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
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from golfmodel.data.shards import (
    BOS_ID,
    ShardWriter,
    atomic_write,
    document_bounds,
    read_shard,
)

PAD_ID, EOS_ID, UNK_ID = 0, 2, 3
BYTE_OFFSET = 4
BYTE260_VOCAB = 260
NUM_VAL_DOCS = 50_000  # the challenge's validation split
SHARD_TOKENS = 10**8  # tokens per official shard

# The challenge's sentencepiece recipe (openai/parameter-golf data/download_hf_docs_and_tokenize.py).
SP_RECIPE: dict[str, Any] = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": PAD_ID,
    "bos_id": BOS_ID,
    "eos_id": EOS_ID,
    "unk_id": UNK_ID,
    "hard_vocab_limit": False,
}


class DocumentError(ValueError):
    """A document source is malformed; the message names the file and the line or row."""


# ---------------------------------------------------------------------------
# Document sources


@dataclass(frozen=True, kw_only=True)
class DocBatch:
    """Documents in source order: decoded `texts`, or raw JSONL `lines` that the worker parses."""

    texts: list[str] | None = None
    lines: list[bytes] | None = None
    line_numbers: list[int] | None = None  # 1-based, parallel to `lines`
    source: str = "<texts>"
    text_field: str = "text"

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.lines or [])

    def slice(self, a: int, b: int) -> DocBatch:
        if self.texts is not None:
            return DocBatch(texts=self.texts[a:b], source=self.source, text_field=self.text_field)
        assert self.lines is not None and self.line_numbers is not None
        return DocBatch(
            lines=self.lines[a:b],
            line_numbers=self.line_numbers[a:b],
            source=self.source,
            text_field=self.text_field,
        )

    def resolve_texts(self) -> list[str]:
        """The documents' texts (parsing JSONL lines here, so the work lands in a worker)."""
        if self.texts is not None:
            return self.texts
        assert self.lines is not None and self.line_numbers is not None
        return [
            parse_jsonl_line(line, source=self.source, lineno=n, text_field=self.text_field)
            for line, n in zip(self.lines, self.line_numbers, strict=True)
        ]


class DocumentSource(Protocol):
    """Anything that yields documents in a fixed order, in batches."""

    name: str

    def batches(self, batch_docs: int) -> Iterator[DocBatch]: ...


def parse_jsonl_line(line: bytes, *, source: str, lineno: int, text_field: str) -> str:
    """The text of one JSONL record; DocumentError names the file and line."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise DocumentError(f"{source}:{lineno}: invalid JSON ({why})") from None
    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        raise DocumentError(f"{source}:{lineno}: record has no string field {text_field!r}")
    return record[text_field]


@dataclass(frozen=True, kw_only=True)
class JsonlSource:
    """One JSON object per line with a string field `text_field`; blank lines are skipped."""

    path: Path
    text_field: str = "text"

    @property
    def name(self) -> str:
        return str(self.path)

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        lines: list[bytes] = []
        numbers: list[int] = []
        try:
            f = Path(self.path).open("rb")
        except OSError as exc:
            raise DocumentError(f"{self.path}: cannot open ({exc.strerror or exc})") from exc
        with f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                lines.append(line)
                numbers.append(lineno)
                if len(lines) == batch_docs:
                    yield DocBatch(
                        lines=lines, line_numbers=numbers, source=self.name, text_field=self.text_field
                    )
                    lines, numbers = [], []
        if lines:
            yield DocBatch(lines=lines, line_numbers=numbers, source=self.name, text_field=self.text_field)


@dataclass(frozen=True, kw_only=True)
class ParquetSource:
    """A Parquet file with a string column `text_column`, read in record batches (never whole)."""

    path: Path
    text_column: str = "text"

    @property
    def name(self) -> str:
        return str(self.path)

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except (OSError, ValueError) as exc:
            raise DocumentError(f"{self.path}: cannot read Parquet ({exc})") from exc
        if self.text_column not in pf.schema_arrow.names:
            raise DocumentError(
                f"{self.path}: no column {self.text_column!r} (columns: {', '.join(pf.schema_arrow.names)})"
            )
        row = 0
        for rb in pf.iter_batches(batch_size=batch_docs, columns=[self.text_column]):
            texts = rb.column(0).to_pylist()
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise DocumentError(
                        f"{self.path}: row {row + i} column {self.text_column!r} is not a string"
                    )
            row += len(texts)
            yield DocBatch(texts=texts, source=self.name)


@dataclass(frozen=True, kw_only=True)
class IterableSource:
    """Adapts any iterable of records (dicts with `text_field`) or strings; used by DatasetsSource."""

    records: Iterable[Any]
    name: str = "<iterable>"
    text_field: str = "text"

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        texts: list[str] = []
        for i, rec in enumerate(self.records):
            text = (
                rec if isinstance(rec, str) else rec.get(self.text_field) if isinstance(rec, dict) else None
            )
            if not isinstance(text, str):
                raise DocumentError(f"{self.name}: document {i} has no string field {self.text_field!r}")
            texts.append(text)
            if len(texts) == batch_docs:
                yield DocBatch(texts=texts, source=self.name)
                texts = []
        if texts:
            yield DocBatch(texts=texts, source=self.name)


@dataclass(frozen=True, kw_only=True)
class DatasetsSource:
    """A `datasets` streaming dataset, e.g. `HuggingFaceFW/fineweb` config `sample-10BT` (needs the hub).

    `path="parquet", data_files=...` streams local files through the same loader.
    """

    path: str = "HuggingFaceFW/fineweb"
    config: str | None = "sample-10BT"
    split: str = "train"
    data_files: str | list[str] | None = None
    text_field: str = "text"

    @property
    def name(self) -> str:
        return f"datasets:{self.path}" + (f"/{self.config}" if self.config else "")

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        import datasets

        ds = datasets.load_dataset(
            self.path, name=self.config, split=self.split, streaming=True, data_files=self.data_files
        )
        source = IterableSource(records=ds, name=self.name, text_field=self.text_field)
        yield from source.batches(batch_docs)


def open_source(spec: str | Path, *, text_field: str = "text") -> DocumentSource:
    """A source from a path (`.jsonl`/`.json` → JSONL, `.parquet` → Parquet) or `hf:PATH[:CONFIG]`."""
    s = str(spec)
    if s.startswith("hf:"):
        path, _, config = s[3:].partition(":")
        return DatasetsSource(path=path, config=config or None, text_field=text_field)
    p = Path(s)
    if p.suffix == ".parquet":
        return ParquetSource(path=p, text_column=text_field)
    if p.suffix in (".jsonl", ".json", ".ndjson"):
        return JsonlSource(path=p, text_field=text_field)
    raise DocumentError(f"{p}: unknown document source type (expected .jsonl, .parquet or hf:NAME[:CONFIG])")


def iter_texts(source: DocumentSource, *, skip: int = 0, limit: int | None = None, batch_docs: int = 512):
    """Texts of documents skip..skip+limit of a source, parsed in this process."""
    seen = 0
    for batch in source.batches(batch_docs):
        for text in batch.resolve_texts():
            if seen >= skip:
                if limit is not None and seen - skip >= limit:
                    return
                yield text
            seen += 1


# ---------------------------------------------------------------------------
# Encoders (one per worker process)


def parse_variant(variant: str) -> int | None:
    """Vocabulary size of `sp<V>`, or None for `byte260`; raises on anything else."""
    if variant == "byte260":
        return None
    m = re.fullmatch(r"sp(\d+)", variant)
    if not m or not 0 < int(m.group(1)) <= 65536:
        raise ValueError(f"variant must be 'byte260' or 'sp<V>' with 0 < V <= 65536, got {variant!r}")
    return int(m.group(1))


def load_sentencepiece(path: str | Path) -> Any:
    """Load a sentencepiece model and check it fits the shard format (BOS = 1, vocab ≤ 65536)."""
    import sentencepiece as spm

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sentencepiece model not found")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    if sp.bos_id() != BOS_ID:
        raise ValueError(f"{path}: bos_id is {sp.bos_id()}, shards need BOS = {BOS_ID}")
    if sp.get_piece_size() > 65536:
        raise ValueError(f"{path}: vocab {sp.get_piece_size()} does not fit uint16 shards")
    return sp


def bytes_to_tokens(chunks: Sequence[bytes], with_bos: Sequence[bool] | None = None) -> np.ndarray:
    """byte260 tokens of byte strings: [BOS] + (byte + 4) per chunk, concatenated, uint16."""
    lens = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))  # (D,)
    flat = np.frombuffer(b"".join(chunks), dtype=np.uint8).astype(np.uint16) + BYTE_OFFSET  # (Σ lens,)
    starts = np.concatenate([np.zeros(1, np.int64), np.cumsum(lens)[:-1]])  # (D,)
    if with_bos is not None:
        starts = starts[np.asarray(with_bos, dtype=bool)]
    return np.insert(flat, starts, np.uint16(BOS_ID))


class Byte260Encoder:
    """UTF-8 bytes → id byte + 4; no normalisation (lone surrogates become '?', as the official exporter)."""

    vocab_size = BYTE260_VOCAB

    def encode_docs(self, texts: Sequence[str]) -> np.ndarray:
        return bytes_to_tokens([t.encode("utf-8", errors="replace") for t in texts])


class SentencePieceEncoder:
    """Batch-encodes with one sentencepiece thread (the process pool supplies the parallelism)."""

    def __init__(self, model_path: str | Path) -> None:
        self.sp = load_sentencepiece(model_path)
        self.vocab_size = int(self.sp.get_piece_size())

    def encode_docs(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty(0, dtype=np.uint16)
        ids = self.sp.encode_as_numpy(list(texts), add_bos=True, num_threads=1)  # list of int32 (1+len_i,)
        return np.concatenate(ids).astype(np.uint16)


def make_encoder(model_path: str | Path | None) -> Byte260Encoder | SentencePieceEncoder:
    return Byte260Encoder() if model_path is None else SentencePieceEncoder(model_path)


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


def train_sentencepiece(
    texts: Iterable[str], model_path: str | Path, *, vocab_size: int, num_threads: int = 1, **overrides: Any
) -> Path:
    """Train a BPE tokenizer with the challenge's recipe (SP_RECIPE) and write `model_path` atomically."""
    import sentencepiece as spm

    model = io.BytesIO()
    sentences = (t.replace("\x00", " ").strip() for t in texts)  # as the official trainer feeds it
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=(s for s in sentences if s),
            model_writer=model,
            vocab_size=vocab_size,
            num_threads=max(1, num_threads),
            minloglevel=2,
            **{**SP_RECIPE, **overrides},
        )
    except RuntimeError as exc:  # e.g. a vocab smaller than the required characters + 256 byte pieces
        raise ValueError(f"sentencepiece training failed (vocab_size={vocab_size}): {exc}") from exc
    atomic_write(model_path, lambda f: f.write(model.getvalue()))
    return Path(model_path)


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
