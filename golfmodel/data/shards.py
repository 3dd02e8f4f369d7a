"""Token shards in the challenge's binary format: reader, atomic writer, streaming writer, summaries.

Format (SPEC §2, byte-compatible with the official `fineweb_{train,val}_NNNNNN.bin`):
a header of 256 little-endian int32 (`[0]` = 20240520 magic, `[1]` = 1 version,
`[2]` = N tokens, the rest 0), then N little-endian uint16 tokens; the file size
is exactly 1024 + 2N. Each document is BOS (= 1) followed by its tokens, no EOS.
Official shards hold 10^8 tokens and cut documents at file boundaries, so a
shard need not start with BOS.

Every read validates the header and the size and names the file and the fault;
every write goes to a temporary file in the destination folder and is renamed
into place, so a crash never leaves a half-written shard under its final name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np

from golfmodel.atomic import atomic_write, open_temp, write_error

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4  # 1024
TOKEN_DTYPE = np.dtype("<u2")
BOS_ID = 1
MAX_TOKENS = 2**31 - 1  # N is stored as int32
CHECK_CHUNK = 1 << 24  # tokens per vectorised validation/count step (32 MiB of uint16)


class ShardError(ValueError):
    """A shard file is malformed; the message names the file and the fault."""


@dataclass(frozen=True, kw_only=True)
class ShardInfo:
    """Summary of one shard: token count and document count (number of BOS tokens)."""

    path: Path
    n_tokens: int
    n_docs: int


# ---------------------------------------------------------------------------
# Reading


def read_header(path: str | Path) -> int:
    """Validate a shard's header and size; return its token count N."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as exc:
        raise ShardError(f"{path}: cannot read shard ({exc.strerror or exc})") from exc
    if len(raw) < HEADER_BYTES:
        raise ShardError(f"{path}: truncated header ({size} bytes, a shard header is {HEADER_BYTES} bytes)")
    header = np.frombuffer(raw, dtype="<i4")  # (256,)
    if int(header[0]) != MAGIC:
        raise ShardError(f"{path}: bad magic {int(header[0])} at byte 0 (expected {MAGIC})")
    if int(header[1]) != VERSION:
        raise ShardError(f"{path}: unsupported version {int(header[1])} at byte 4 (expected {VERSION})")
    n = int(header[2])
    if n < 0:
        raise ShardError(f"{path}: negative token count {n} at byte 8")
    nonzero = np.flatnonzero(header[3:])
    if nonzero.size:
        i = int(nonzero[0]) + 3
        raise ShardError(f"{path}: reserved header field {i} (byte {4 * i}) is {int(header[i])}, expected 0")
    expected = HEADER_BYTES + 2 * n
    if size != expected:
        raise ShardError(f"{path}: file size {size} != {expected} (header says {n} tokens: 1024 + 2*{n})")
    return n


def read_shard(path: str | Path, *, vocab_size: int | None = None) -> np.ndarray:
    """Return a shard's tokens as a read-only uint16 array (N,), memory-mapped; validated header.

    With `vocab_size`, every token is checked to be < vocab_size (vectorised, in chunks).
    """
    path = Path(path)
    n = read_header(path)
    if n == 0:
        tokens = np.empty(0, dtype=TOKEN_DTYPE)
        tokens.flags.writeable = False
        return tokens
    tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(n,))
    if vocab_size is not None:
        check_vocab(tokens, vocab_size, path=path)
    return tokens


def check_vocab(tokens: np.ndarray, vocab_size: int, *, path: str | Path = "<tokens>") -> None:
    """Raise ShardError naming the first out-of-vocabulary token (its index and file offset)."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    for start in range(0, len(tokens), CHECK_CHUNK):
        chunk = np.asarray(tokens[start : start + CHECK_CHUNK])
        if chunk.size and int(chunk.max()) >= vocab_size:
            i = start + int(np.flatnonzero(chunk >= vocab_size)[0])
            raise ShardError(
                f"{path}: token {int(tokens[i])} at index {i} (byte {HEADER_BYTES + 2 * i}) "
                f"is out of vocabulary (vocab_size={vocab_size})"
            )


def count_docs(tokens: np.ndarray) -> int:
    """Number of documents that start in `tokens` (= number of BOS tokens), counted in chunks."""
    return sum(
        int(np.count_nonzero(np.asarray(tokens[s : s + CHECK_CHUNK]) == BOS_ID))
        for s in range(0, len(tokens), CHECK_CHUNK)
    )


def shard_info(path: str | Path, vocab_size: int | None = None) -> ShardInfo:
    """Validate a shard (and its tokens against `vocab_size` if given) and count tokens and documents."""
    path = Path(path)
    tokens = read_shard(path, vocab_size=vocab_size)
    return ShardInfo(path=path, n_tokens=int(tokens.size), n_docs=count_docs(tokens))


def document_bounds(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets (int64, half-open) of the documents in `tokens`.

    A document starts at each BOS; tokens before the first BOS (a document cut by
    the previous shard) form a leading partial document without BOS.
    """
    starts = np.flatnonzero(np.asarray(tokens) == BOS_ID).astype(np.int64)  # (D,)
    if tokens.size and (starts.size == 0 or starts[0] != 0):
        starts = np.concatenate([np.zeros(1, dtype=np.int64), starts])
    ends = np.append(starts[1:], np.int64(tokens.size))  # (D,)
    return starts, ends


def iter_documents(tokens: np.ndarray) -> Iterator[np.ndarray]:
    """Yield each document's tokens (a view; BOS included; a leading partial document without it)."""
    starts, ends = document_bounds(tokens)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        yield tokens[s:e]


# ---------------------------------------------------------------------------
# Writing


def make_header(n_tokens: int) -> bytes:
    """The 1024-byte header for a shard of `n_tokens` tokens."""
    if not 0 <= n_tokens <= MAX_TOKENS:
        raise ValueError(f"token count {n_tokens} does not fit the int32 header field")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, n_tokens
    return header.tobytes()


def as_tokens(tokens: np.ndarray, *, vocab_size: int | None = None) -> np.ndarray:
    """Check a 1-D integer array fits uint16 (and the vocabulary) and return it as little-endian uint16."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    if tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}")
    if tokens.dtype != TOKEN_DTYPE:
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > 0xFFFF):
            raise ValueError("token ids outside [0, 65535] do not fit a uint16 shard")
        tokens = tokens.astype(TOKEN_DTYPE)
    if vocab_size is not None and tokens.size and int(tokens.max()) >= vocab_size:
        raise ValueError(f"token id {int(tokens.max())} is out of vocabulary (vocab_size={vocab_size})")
    return tokens


def write_shard(path: str | Path, tokens: np.ndarray) -> None:
    """Write `tokens` (1-D ints in [0, 65535]) as one shard, atomically."""
    toks = as_tokens(tokens)

    def _write(f: BinaryIO) -> None:
        f.write(make_header(int(toks.size)))
        f.write(toks.tobytes())

    atomic_write(path, _write)


def shard_name(split: str, index: int) -> str:
    """The official file name of shard `index` of `split` ("train" or "val")."""
    return f"fineweb_{split}_{index:06d}.bin"


class ShardWriter:
    """Streams a token stream into consecutive shards of `shard_tokens` tokens.

    Files are named `{prefix}_{NNNNNN}.bin` (prefix `fineweb_train` gives the official
    names) from index 0. Like the official exporter, documents are cut at file
    boundaries: every file but the last holds exactly `shard_tokens` tokens. Each file
    is written under a temporary name (umask permissions, like every atomic write) and
    renamed when complete, so a crash leaves only whole shards. A failed write (a full
    disk) raises an OSError naming the shard and the OS reason. Use as a context manager;
    `close()` flushes the last file and an exception inside the `with` block discards it.
    """

    def __init__(
        self, out_dir: str | Path, prefix: str, shard_tokens: int = 10**8, *, vocab_size: int | None = None
    ) -> None:
        if not 0 < shard_tokens <= MAX_TOKENS:
            raise ValueError(f"shard_tokens must be in [1, {MAX_TOKENS}], got {shard_tokens}")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.shard_tokens = shard_tokens
        self.vocab_size = vocab_size
        self.paths: list[Path] = []
        self.n_tokens = 0  # total tokens written
        self._file: BinaryIO | None = None
        self._tmp: Path | None = None
        self._fill = 0  # tokens in the open file
        self._closed = False
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def _next_path(self) -> Path:
        return self.out_dir / f"{self.prefix}_{len(self.paths):06d}.bin"

    def _open(self) -> BinaryIO:
        fd, self._tmp = open_temp(self.out_dir, f".{self.prefix}.")
        self._file = os.fdopen(fd, "wb")
        self._fill = 0
        try:
            self._file.write(make_header(0))  # rewritten with the real count when the file is finished
        except OSError as exc:
            raise write_error(self._next_path(), exc) from exc
        return self._file

    def _finish(self) -> None:
        assert self._file is not None and self._tmp is not None
        f = self._file
        path = self._next_path()
        try:
            f.seek(0)
            f.write(make_header(self._fill))
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self._tmp, path)
        except OSError as exc:
            raise write_error(path, exc) from exc
        self.paths.append(path)
        self._file, self._tmp, self._fill = None, None, 0

    def write(self, tokens: np.ndarray) -> None:
        """Append tokens (1-D ints; typically whole documents, BOS included) to the stream."""
        if self._closed:
            raise ValueError(f"ShardWriter({self.out_dir}, {self.prefix}) is closed")
        toks = as_tokens(tokens, vocab_size=self.vocab_size)
        pos = 0
        while pos < toks.size:
            f = self._file if self._file is not None else self._open()
            take = min(self.shard_tokens - self._fill, int(toks.size) - pos)
            try:
                f.write(toks[pos : pos + take].tobytes())
            except OSError as exc:
                raise write_error(self._next_path(), exc) from exc
            self._fill += take
            pos += take
            if self._fill == self.shard_tokens:
                self._finish()
        self.n_tokens += int(toks.size)

    def close(self) -> list[Path]:
        """Finish the last (partial) shard and return every shard path written, in order."""
        if not self._closed:
            if self._file is not None and self._fill > 0:
                self._finish()
            self.abort()
        return list(self.paths)

    def abort(self) -> None:
        """Drop the unfinished file; finished shards stay."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # closing flushes; after a full disk that fails again
                self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._file, self._tmp, self._closed = None, None, True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
