"""Q2BN v1: the artifact container (SPEC §5; byte layout in docs/q2bn.md). Writer and reader.

Decompressed stream, all little-endian:

    b"Q2BN" | u8 version=1 | u32 header_len | header (UTF-8 JSON) | tensor record × tensor_count
    record := u16 name_len | name (UTF-8) | u8 kind | u8 ndim | u32 dim × ndim | u64 payload_len | payload

Kinds: 0 q2-rows (out × fp16 τ, then out × ceil(in/4) packed Gray symbols), 1 fp16, 2 fp32,
3 int8-rows (out × fp16 scale, then out × in int8), 4 alias (u16 index of an earlier record).
The whole stream is one zstd frame (level 22, content size and checksum on). The header holds
`tensor_count` and `body_sha256` (of every byte after the header), so a flipped bit fails either
the frame checksum or, if someone re-compressed a modified stream, the body hash. The reader
checks every field and raises `Q2BNError` naming the file, the byte offset and the fault.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import zstandard
from torch import Tensor

from golfmodel.atomic import atomic_write_bytes
from golfmodel.quant.int8 import dequantize_rows, quantize_rows
from golfmodel.quant.q2 import (
    dequant_packed,
    pack_rows,
    packed_row_bytes,
    padding_is_zero,
    symbols,
    unpack_rows,
)

MAGIC = b"Q2BN"
VERSION = 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_LEVEL = 22
MAX_HEADER_BYTES = 1 << 24  # a header is a few KB; this only bounds a corrupt length field
MAX_RAW_BYTES = 1 << 31  # refuse frames that claim to decompress to more than 2 GiB
MAX_NDIM = 8
PREFIX = struct.Struct("<4sBI")  # magic, version, header length
RECORD_FIXED = 2 + 1 + 1 + 8  # name length, kind, ndim, payload length (plus name and dims)
REQUIRED_HEADER = ("model", "tokenizer", "settings_hash")
WRITER_KEYS = ("tensor_count", "body_sha256")


class Q2BNError(ValueError):
    """A Q2BN file (or byte string) is malformed; the message names the source, offset and fault."""


class Kind(IntEnum):
    """Storage kind of one tensor record."""

    Q2_ROWS = 0
    FP16 = 1
    FP32 = 2
    INT8_ROWS = 3
    ALIAS = 4


def expected_payload_bytes(kind: Kind, shape: Sequence[int]) -> int:
    """Payload size fixed by a record's kind and dims; raises ValueError for an impossible pair."""
    numel = math.prod(shape)
    if kind in (Kind.Q2_ROWS, Kind.INT8_ROWS):
        if len(shape) != 2:
            raise ValueError(f"kind {kind.name} needs a 2-D shape, got {tuple(shape)}")
        out, n = shape
        row = packed_row_bytes(n) if kind == Kind.Q2_ROWS else n
        return out * 2 + out * row
    if kind == Kind.FP16:
        return numel * 2
    if kind == Kind.FP32:
        return numel * 4
    return 2  # alias: u16 index


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """One stored tensor: name, storage kind, logical shape and the raw little-endian payload."""

    name: str
    kind: Kind
    shape: tuple[int, ...]
    payload: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        name_len = len(self.name.encode("utf-8"))
        if not 0 < name_len <= 0xFFFF:
            raise ValueError(f"record name must be 1..65535 UTF-8 bytes, got {name_len}")
        if len(self.shape) > MAX_NDIM or any(not 0 <= d <= 0xFFFFFFFF for d in self.shape):
            raise ValueError(f"{self.name}: shape {self.shape} outside ndim <= {MAX_NDIM}, dims < 2^32")
        want = expected_payload_bytes(self.kind, self.shape)
        if len(self.payload) != want:
            raise ValueError(
                f"{self.name}: {self.kind.name} payload is {len(self.payload)} bytes, expected {want}"
            )

    @property
    def stored_bytes(self) -> int:
        """Bytes this record occupies in the decompressed stream (fields plus payload)."""
        return RECORD_FIXED + len(self.name.encode("utf-8")) + 4 * len(self.shape) + len(self.payload)

    def to_bytes(self) -> bytes:
        name = self.name.encode("utf-8")
        dims = struct.pack(f"<{len(self.shape)}I", *self.shape)
        head = struct.pack("<H", len(name)) + name + struct.pack("<BB", self.kind, len(self.shape))
        return head + dims + struct.pack("<Q", len(self.payload)) + self.payload


# --- encode / decode between tensors and records -------------------------------------------------


def _le(t: Tensor, dtype: str) -> bytes:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.dtype(dtype)).tobytes()


def encode_q2(name: str, sym: Tensor, tau: Tensor) -> TensorRecord:
    """Kind 0 from symbols (out,in) uint8 and τ (out,) (must be fp16-representable and > 0)."""
    tau16 = tau.detach().cpu().half()
    if not torch.equal(tau16.float(), tau.detach().cpu().float()):
        raise ValueError(f"{name}: τ is not fp16-representable (round it with round_tau)")
    if not bool((tau16 > 0).all()) or not bool(torch.isfinite(tau16).all()):
        raise ValueError(f"{name}: τ must be positive and finite")
    if sym.dtype != torch.uint8 or sym.ndim != 2 or (sym.numel() > 0 and int(sym.max()) > 3):
        raise ValueError(f"{name}: symbols must be a 2-D uint8 tensor with values 0..3")
    out, n = sym.shape
    if tau16.shape != (out,):
        raise ValueError(f"{name}: τ has shape {tuple(tau16.shape)}, expected ({out},)")
    payload = _le(tau16, "<f2") + _le(pack_rows(sym.detach().cpu()), "u1")
    return TensorRecord(name, Kind.Q2_ROWS, (out, n), payload)


def encode_fp16(name: str, t: Tensor) -> TensorRecord:
    """Kind 1; raises if a finite value overflows fp16."""
    h = t.detach().cpu().half()
    if bool((torch.isfinite(t.detach().cpu()) & ~torch.isfinite(h)).any()):
        raise ValueError(f"{name}: values overflow fp16; store it as fp32")
    return TensorRecord(name, Kind.FP16, tuple(t.shape), _le(h, "<f2"))


def encode_fp32(name: str, t: Tensor) -> TensorRecord:
    """Kind 2."""
    return TensorRecord(name, Kind.FP32, tuple(t.shape), _le(t.detach().cpu().float(), "<f4"))


def encode_int8(name: str, w: Tensor) -> TensorRecord:
    """Kind 3: per-row symmetric int8 of a 2-D float tensor."""
    q, scale = quantize_rows(w.detach().cpu())
    return TensorRecord(name, Kind.INT8_ROWS, tuple(w.shape), _le(scale, "<f2") + _le(q, "i1"))


def encode_alias(name: str, index: int, shape: Sequence[int]) -> TensorRecord:
    """Kind 4: same tensor as record `index` (which must come earlier and not be an alias)."""
    if not 0 <= index <= 0xFFFF:
        raise ValueError(f"{name}: alias index {index} outside u16")
    return TensorRecord(name, Kind.ALIAS, tuple(shape), struct.pack("<H", index))


def encode(name: str, t: Tensor, kind: Kind, *, tau: Tensor | None = None) -> TensorRecord:
    """Record of a float tensor rounded to `kind` (q2 needs τ; aliases use encode_alias)."""
    if kind == Kind.Q2_ROWS:
        if tau is None:
            raise ValueError(f"{name}: q2 records need τ")
        return encode_q2(name, symbols(t.detach().float(), tau), tau)
    encoders = {Kind.FP16: encode_fp16, Kind.FP32: encode_fp32, Kind.INT8_ROWS: encode_int8}
    if kind not in encoders:
        raise ValueError(f"{name}: cannot encode kind {kind!r} from a tensor")
    return encoders[Kind(kind)](name, t)


def _frombuf(buf: bytes, dtype: str, offset: int, count: int) -> Tensor:
    arr = np.frombuffer(buf, dtype=np.dtype(dtype), count=count, offset=offset)
    return torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))


def decode_q2(rec: TensorRecord) -> tuple[Tensor, Tensor]:
    """Kind 0 → (symbols (out,in) uint8, τ (out,) fp16)."""
    out, n = rec.shape
    tau = _frombuf(rec.payload, "<f2", 0, out)
    packed = _frombuf(rec.payload, "u1", 2 * out, out * packed_row_bytes(n)).view(out, packed_row_bytes(n))
    return unpack_rows(packed, n), tau


def q2_tau(rec: TensorRecord) -> Tensor:
    """τ (out,) fp16 of a kind-0 record, without unpacking its symbols."""
    return _frombuf(rec.payload, "<f2", 0, rec.shape[0])


def decode_int8(rec: TensorRecord) -> tuple[Tensor, Tensor]:
    """Kind 3 → (q (out,in) int8, scale (out,) fp16)."""
    out, n = rec.shape
    return _frombuf(rec.payload, "i1", 2 * out, out * n).view(out, n), _frombuf(rec.payload, "<f2", 0, out)


def decode(rec: TensorRecord) -> Tensor:
    """A non-alias record as the fp32 tensor it stores (dequantised for kinds 0 and 3)."""
    if rec.kind == Kind.Q2_ROWS:
        out, n = rec.shape
        packed = _frombuf(rec.payload, "u1", 2 * out, out * packed_row_bytes(n)).view(
            out, packed_row_bytes(n)
        )
        return dequant_packed(packed, q2_tau(rec), n)
    if rec.kind == Kind.INT8_ROWS:
        return dequantize_rows(*decode_int8(rec))
    if rec.kind == Kind.FP16:
        return _frombuf(rec.payload, "<f2", 0, math.prod(rec.shape)).float().view(rec.shape)
    if rec.kind == Kind.FP32:
        return _frombuf(rec.payload, "<f4", 0, math.prod(rec.shape)).view(rec.shape)
    raise ValueError(f"{rec.name}: an alias has no tensor of its own; resolve it with decode_all")


def alias_index(rec: TensorRecord) -> int:
    return struct.unpack("<H", rec.payload)[0]


def decode_all(records: Sequence[TensorRecord]) -> dict[str, Tensor]:
    """name → fp32 tensor for every record; an alias maps to the very tensor object it names."""
    out: dict[str, Tensor] = {}
    tensors: list[Tensor] = []
    for rec in records:
        t = tensors[alias_index(rec)] if rec.kind == Kind.ALIAS else decode(rec)
        tensors.append(t)
        out[rec.name] = t
    return out


# --- checks shared by writer and reader -------------------------------------------------------


def _sequence_fault(records: Sequence[TensorRecord], i: int, seen: set[str]) -> str | None:
    """Fault of record i given the records before it (name reuse, alias target), or None."""
    rec = records[i]
    if rec.name in seen:
        return f"duplicate tensor name {rec.name!r}"
    if rec.kind == Kind.ALIAS:
        j = alias_index(rec)
        if j >= i:
            return f"alias {rec.name!r} points at record {j}, which is not earlier than {i}"
        if records[j].kind == Kind.ALIAS:
            return f"alias {rec.name!r} points at record {j}, which is itself an alias"
        if records[j].shape != rec.shape:
            return f"alias {rec.name!r} has shape {rec.shape} but its target {records[j].name!r} has {records[j].shape}"
    return None


def _content_fault(rec: TensorRecord) -> str | None:
    """Fault in a record's payload values (τ / scales positive finite, zero padding, no -128), or None."""
    if rec.kind not in (Kind.Q2_ROWS, Kind.INT8_ROWS):
        return None
    out, n = rec.shape
    scale = np.frombuffer(rec.payload, dtype="<f2", count=out).astype(np.float32)
    what = "τ" if rec.kind == Kind.Q2_ROWS else "scale"
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        return f"{rec.name!r}: a row {what} is not a positive finite fp16"
    if rec.kind == Kind.Q2_ROWS:
        nb = packed_row_bytes(n)
        packed = torch.from_numpy(
            np.frombuffer(rec.payload, dtype="u1", offset=2 * out).reshape(out, nb).copy()
        )
        if not padding_is_zero(packed, n):
            return f"{rec.name!r}: padding symbols are not 0"
    elif (np.frombuffer(rec.payload, dtype="i1", offset=2 * out) == -128).any():
        return f"{rec.name!r}: int8 value -128 (outside the symmetric range)"
    return None


def check_header(header: dict[str, Any]) -> str | None:
    """The first missing or mistyped required header field, described, or None."""
    for key in REQUIRED_HEADER:
        if key not in header:
            return f"header lacks {key!r}"
    if not isinstance(header["model"], dict):
        return "header 'model' is not an object"
    tok = header["tokenizer"]
    if not (isinstance(tok, dict) and isinstance(tok.get("id"), str) and type(tok.get("vocab_size")) is int):
        return "header 'tokenizer' must be an object with a string 'id' and an integer 'vocab_size'"
    if not isinstance(header["settings_hash"], str):
        return "header 'settings_hash' is not a string"
    return None


# --- writer ------------------------------------------------------------------------------------


class Q2BNWriteInfo(NamedTuple):
    """What a write produced: on-disk (compressed) size, decompressed size and the file's sha256."""

    compressed_bytes: int
    raw_bytes: int
    sha256: str


def dumps_raw(header: dict[str, Any], records: Sequence[TensorRecord]) -> bytes:
    """The decompressed Q2BN stream; header gets `tensor_count` and `body_sha256` added."""
    fault = check_header(header)
    if fault is None:
        clash = [k for k in WRITER_KEYS if k in header]
        fault = f"header keys {clash} are written by the writer" if clash else None
    if fault is not None:
        raise ValueError(fault)
    seen: set[str] = set()
    for i, rec in enumerate(records):
        fault = _sequence_fault(records, i, seen) or _content_fault(rec)
        if fault is not None:
            raise ValueError(fault)
        seen.add(rec.name)
    body = b"".join(rec.to_bytes() for rec in records)
    full = {**header, "tensor_count": len(records), "body_sha256": hashlib.sha256(body).hexdigest()}
    text = json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    head = text.encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"header is {len(head)} bytes, more than {MAX_HEADER_BYTES}")
    return PREFIX.pack(MAGIC, VERSION, len(head)) + head + body


def compress_raw(raw: bytes, *, level: int = ZSTD_LEVEL, threads: int = 0) -> bytes:
    """One zstd frame with content size and checksum (threads=0: single-threaded, deterministic)."""
    cctx = zstandard.ZstdCompressor(
        level=level, write_checksum=True, write_content_size=True, threads=threads
    )
    return cctx.compress(raw)


def dumps(
    header: dict[str, Any], records: Sequence[TensorRecord], *, level: int = ZSTD_LEVEL, threads: int = 0
) -> bytes:
    """The compressed artifact bytes."""
    return compress_raw(dumps_raw(header, records), level=level, threads=threads)


def write_q2bn(
    path: str | os.PathLike[str],
    header: dict[str, Any],
    records: Iterable[TensorRecord],
    *,
    level: int = ZSTD_LEVEL,
    threads: int = 0,
) -> Q2BNWriteInfo:
    """Write a Q2BN file atomically; returns its sizes and sha256."""
    raw = dumps_raw(header, list(records))
    data = compress_raw(raw, level=level, threads=threads)
    atomic_write_bytes(Path(path), data)
    return Q2BNWriteInfo(len(data), len(raw), hashlib.sha256(data).hexdigest())


# --- reader ------------------------------------------------------------------------------------


class Q2BNContents(NamedTuple):
    """A parsed artifact: header, records and the decompressed stream's size."""

    header: dict[str, Any]
    records: list[TensorRecord]
    raw_bytes: int


def decompress(data: bytes, source: str = "<bytes>") -> bytes:
    """The single zstd frame's content; checksum verified, no trailing bytes, bounded size."""
    if data[:4] == MAGIC:
        raise Q2BNError(
            f"{source}: starts with Q2BN, but an artifact is zstd-compressed (expected zstd magic)"
        )
    if data[:4] != ZSTD_MAGIC:
        raise Q2BNError(
            f"{source}: not a zstd frame (first bytes {data[:4].hex() or 'missing'}, expected 28b52ffd)"
        )
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as e:
        raise Q2BNError(f"{source}: bad zstd frame header: {e}") from None
    if params.content_size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
        raise Q2BNError(f"{source}: zstd frame does not record its content size")
    if params.content_size > MAX_RAW_BYTES:
        raise Q2BNError(f"{source}: zstd frame claims {params.content_size} bytes, more than {MAX_RAW_BYTES}")
    if not params.has_checksum:
        raise Q2BNError(f"{source}: zstd frame has no checksum (Q2BN requires one)")
    try:
        return zstandard.ZstdDecompressor().decompress(data, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise Q2BNError(f"{source}: corrupt or truncated zstd frame: {e}") from None


class _Cursor:
    """Bounds-checked little-endian reads over the decompressed stream."""

    def __init__(self, buf: bytes, source: str) -> None:
        self.buf, self.source, self.pos = buf, source, 0

    def fail(self, fault: str, at: int | None = None) -> Q2BNError:
        return Q2BNError(
            f"{self.source}: {fault} (at byte {self.pos if at is None else at} of the decompressed stream)"
        )

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.buf) - self.pos:
            raise self.fail(f"truncated: {what} needs {n} bytes, {len(self.buf) - self.pos} left")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _read_record(cur: _Cursor, index: int) -> TensorRecord:
    start = cur.pos
    (name_len,) = cur.unpack("<H", f"record {index} name length")
    if name_len == 0:
        raise cur.fail(f"record {index} has an empty name", start)
    try:
        name = cur.take(name_len, f"record {index} name").decode("utf-8")
    except UnicodeDecodeError:
        raise cur.fail(f"record {index} name is not UTF-8", start) from None
    kind_byte, ndim = cur.unpack("<BB", f"record {index} kind and ndim")
    if kind_byte not in Kind._value2member_map_:
        raise cur.fail(f"record {index} ({name!r}) has unknown kind {kind_byte}", cur.pos - 2)
    kind = Kind(kind_byte)
    if ndim > MAX_NDIM:
        raise cur.fail(f"record {index} ({name!r}) has ndim {ndim} > {MAX_NDIM}", cur.pos - 1)
    shape = cur.unpack(f"<{ndim}I", f"record {index} dims")
    (payload_len,) = cur.unpack("<Q", f"record {index} payload length")
    try:
        want = expected_payload_bytes(kind, shape)
    except ValueError as e:
        raise cur.fail(f"record {index} ({name!r}): {e}", start) from None
    if payload_len != want:
        raise cur.fail(
            f"record {index} ({name!r}) {kind.name} {shape}: payload length {payload_len}, expected {want}",
            cur.pos - 8,
        )
    payload = cur.take(payload_len, f"record {index} ({name!r}) payload")
    return TensorRecord(name, kind, shape, payload)


def parse_raw(raw: bytes, source: str = "<bytes>") -> Q2BNContents:
    """Parse and check a decompressed Q2BN stream."""
    cur = _Cursor(raw, source)
    magic, version, header_len = cur.unpack("<4sBI", "prefix")
    if magic != MAGIC:
        raise cur.fail(f"bad magic {magic!r}, expected {MAGIC!r}", 0)
    if version != VERSION:
        raise cur.fail(f"unsupported Q2BN version {version} (this reader knows {VERSION})", 4)
    if not 2 <= header_len <= min(MAX_HEADER_BYTES, len(raw) - PREFIX.size):
        raise cur.fail(
            f"header length {header_len} outside 2..{min(MAX_HEADER_BYTES, len(raw) - PREFIX.size)}", 5
        )
    try:
        header = json.loads(cur.take(header_len, "header").decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise cur.fail(f"header is not UTF-8 JSON: {e}", PREFIX.size) from None
    if not isinstance(header, dict):
        raise cur.fail("header is not a JSON object", PREFIX.size)
    fault = check_header(header)
    count, digest = header.get("tensor_count"), header.get("body_sha256")
    if fault is None and not (type(count) is int and count >= 0):
        fault = f"header 'tensor_count' {count!r} is not a non-negative integer"
    if fault is None and not (isinstance(digest, str) and len(digest) == 64):
        fault = "header 'body_sha256' is not a sha256 hex digest"
    if fault is not None:
        raise cur.fail(fault, PREFIX.size)
    body_start = cur.pos
    if hashlib.sha256(raw[body_start:]).hexdigest() != digest:
        raise cur.fail("body sha256 does not match the header (corrupt tensor data)", body_start)
    records: list[TensorRecord] = []
    seen: set[str] = set()
    for i in range(count):
        start = cur.pos
        records.append(_read_record(cur, i))
        fault = _sequence_fault(records, i, seen) or _content_fault(records[i])
        if fault is not None:
            raise cur.fail(f"record {i}: {fault}", start)
        seen.add(records[i].name)
    if cur.pos != len(raw):
        raise cur.fail(f"{len(raw) - cur.pos} trailing bytes after {count} records")
    return Q2BNContents(header, records, len(raw))


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def loads(data: bytes, source: str = "<bytes>") -> Q2BNContents:
    """Decompress and parse artifact bytes."""
    return parse_raw(decompress(data, source), source)


def read_q2bn_contents(path: str | os.PathLike[str]) -> Q2BNContents:
    """Read a Q2BN file: header, records and decompressed size."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Q2BNError(f"{path}: cannot read: {e.strerror or e}") from None
    return loads(data, str(path))


def read_q2bn(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[TensorRecord]]:
    """Read a Q2BN file → (header, records); raises Q2BNError on any fault."""
    contents = read_q2bn_contents(path)
    return contents.header, contents.records
