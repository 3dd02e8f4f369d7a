"""Q2BN: the artifact container (SPEC §5; byte layout in docs/q2bn.md). Writer (version 2) and reader (1 and 2).

Decompressed stream, all little-endian:

    b"Q2BN" | u8 version | u32 header_len | header (UTF-8 JSON) | tensor record × tensor_count
    v1 record := u16 name_len | name | u8 kind | u8 ndim | u32 dim × ndim | u64 payload_len | payload
    v2 record := u16 name_len | name | u8 kind | u8 bits | u32 group_size | u8 scale_layout
                 | u8 ndim | u32 dim × ndim | u64 payload_len | payload

Kinds: 0 q2, 1 fp16, 2 fp32, 3 int (v1: int8 rows only), 4 alias (u16 index of an earlier
record), 5 ternary, 6 fp8. Scale layout: 0 none, 1 one fp16 scale per row, 2 one per group.
Every payload's layout, size and value checks are the storage kind's (`golfmodel/quant/kinds.py`):
this module only frames them. The whole stream is one zstd frame (level 22, content size and
checksum on). The header holds `tensor_count` and `body_sha256` (of every byte after the
header), so a flipped bit fails either the frame checksum or, if someone re-compressed a
modified stream, the body hash. The reader checks every field and raises `Q2BNError` naming the
file, the byte offset and the fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import zstandard

from golfmodel.atomic import atomic_write_bytes
from golfmodel.q2bn.records import (  # re-exported: the records are part of the format's API
    KIND_SPEC,
    MAX_NDIM,
    RECORD_FIXED,
    SPEC_KIND,
    V1_BITS,
    V1_KINDS,
    VERSION,
    Kind,
    ScaleLayout,
    TensorRecord,
    alias_index,
    decode,
    decode_all,
    decode_int8,
    decode_q2,
    decode_scaled,
    encode,
    encode_alias,
    encode_fp16,
    encode_fp32,
    encode_int8,
    encode_q2,
    encode_spec,
    expected_payload_bytes,
    q2_tau,
    record_scale,
    record_spec,
    scale_layout,
)

__all__ = [
    "KIND_SPEC", "MAX_NDIM", "RECORD_FIXED", "SPEC_KIND", "V1_BITS", "V1_KINDS", "VERSION", "Kind",
    "ScaleLayout", "TensorRecord", "alias_index", "decode", "decode_all", "decode_int8", "decode_q2",
    "decode_scaled", "encode", "encode_alias", "encode_fp16", "encode_fp32", "encode_int8", "encode_q2",
    "encode_spec", "expected_payload_bytes", "q2_tau", "record_scale", "record_spec", "scale_layout",
    "MAGIC", "READ_VERSIONS", "ZSTD_MAGIC", "ZSTD_LEVEL", "PREFIX", "Q2BNError", "Q2BNContents",
    "Q2BNWriteInfo", "check_header", "compress_raw", "decompress", "dumps", "dumps_raw", "loads",
    "parse_raw", "read_q2bn", "read_q2bn_contents", "write_q2bn",
]  # fmt: skip

MAGIC = b"Q2BN"
READ_VERSIONS = (1, 2)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_LEVEL = 22
MAX_HEADER_BYTES = 1 << 24  # a header is a few KB; this only bounds a corrupt length field
MAX_RAW_BYTES = 1 << 31  # refuse frames that claim to decompress to more than 2 GiB
PREFIX = struct.Struct("<4sBI")  # magic, version, header length
REQUIRED_HEADER = ("model", "tokenizer", "settings_hash")
WRITER_KEYS = ("tensor_count", "body_sha256")


class Q2BNError(ValueError):
    """A Q2BN file (or byte string) is malformed; the message names the source, offset and fault."""


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
    """Fault in a record's payload values (the kind's checks: scales, padding, code range), or None."""
    if rec.kind == Kind.ALIAS:
        return None
    fault = rec.quant_kind.payload_fault(rec.payload, rec.shape)
    return None if fault is None else f"{rec.name!r}: {fault}"


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


def dumps_raw(header: dict[str, Any], records: Sequence[TensorRecord], *, version: int = VERSION) -> bytes:
    """The decompressed Q2BN stream; header gets `tensor_count` and `body_sha256` added.

    version=1 writes the old layout (only for v1-compatible records; tests and fixtures)."""
    if version not in READ_VERSIONS:
        raise ValueError(f"version: must be one of {READ_VERSIONS}, got {version}")
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
    body = b"".join(rec.to_bytes(version) for rec in records)
    full = {**header, "tensor_count": len(records), "body_sha256": hashlib.sha256(body).hexdigest()}
    text = json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    head = text.encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"header is {len(head)} bytes, more than {MAX_HEADER_BYTES}")
    return PREFIX.pack(MAGIC, version, len(head)) + head + body


def compress_raw(raw: bytes, *, level: int = ZSTD_LEVEL, threads: int = 0) -> bytes:
    """One zstd frame with content size and checksum (threads=0: single-threaded, deterministic)."""
    cctx = zstandard.ZstdCompressor(
        level=level, write_checksum=True, write_content_size=True, threads=threads
    )
    return cctx.compress(raw)


def dumps(
    header: dict[str, Any],
    records: Sequence[TensorRecord],
    *,
    level: int = ZSTD_LEVEL,
    threads: int = 0,
    version: int = VERSION,
) -> bytes:
    """The compressed artifact bytes."""
    return compress_raw(dumps_raw(header, records, version=version), level=level, threads=threads)


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
    """A parsed artifact: header, records, the decompressed stream's size and the format version."""

    header: dict[str, Any]
    records: list[TensorRecord]
    raw_bytes: int
    version: int = VERSION


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


def _read_record(cur: _Cursor, index: int, version: int) -> TensorRecord:
    start = cur.pos
    (name_len,) = cur.unpack("<H", f"record {index} name length")
    if name_len == 0:
        raise cur.fail(f"record {index} has an empty name", start)
    try:
        name = cur.take(name_len, f"record {index} name").decode("utf-8")
    except UnicodeDecodeError:
        raise cur.fail(f"record {index} name is not UTF-8", start) from None
    at = cur.pos
    (kind_byte,) = cur.unpack("<B", f"record {index} kind")
    known = V1_KINDS if version == 1 else tuple(Kind)
    if kind_byte not in {int(k) for k in known}:
        raise cur.fail(f"record {index} ({name!r}) has unknown kind {kind_byte} for version {version}", at)
    kind = Kind(kind_byte)
    bits, group = V1_BITS.get(kind, 0), 0
    if version >= 2:
        bits, group, layout = cur.unpack("<BIB", f"record {index} bits, group size and scale layout")
        try:
            spec = record_spec(kind, bits, group)
        except ValueError as e:
            raise cur.fail(f"record {index} ({name!r}) {kind.name}: {e}", at + 1) from None
        if spec is not None and bits != spec.bits:
            raise cur.fail(
                f"record {index} ({name!r}) {kind.name}: bits {bits}, expected {spec.bits}", at + 1
            )
        if layout != scale_layout(spec):
            raise cur.fail(
                f"record {index} ({name!r}) {kind.name}: scale layout {layout}, expected {int(scale_layout(spec))}",
                at + 6,
            )
    (ndim,) = cur.unpack("<B", f"record {index} ndim")
    if ndim > MAX_NDIM:
        raise cur.fail(f"record {index} ({name!r}) has ndim {ndim} > {MAX_NDIM}", cur.pos - 1)
    shape = cur.unpack(f"<{ndim}I", f"record {index} dims")
    (payload_len,) = cur.unpack("<Q", f"record {index} payload length")
    try:
        want = expected_payload_bytes(kind, shape, bits, group)
    except ValueError as e:
        raise cur.fail(f"record {index} ({name!r}): {e}", start) from None
    if payload_len != want:
        raise cur.fail(
            f"record {index} ({name!r}) {kind.name} {shape}: payload length {payload_len}, expected {want}",
            cur.pos - 8,
        )
    payload = cur.take(payload_len, f"record {index} ({name!r}) payload")
    return TensorRecord(name, kind, shape, payload, bits, group)


def parse_raw(raw: bytes, source: str = "<bytes>") -> Q2BNContents:
    """Parse and check a decompressed Q2BN stream."""
    cur = _Cursor(raw, source)
    magic, version, header_len = cur.unpack("<4sBI", "prefix")
    if magic != MAGIC:
        raise cur.fail(f"bad magic {magic!r}, expected {MAGIC!r}", 0)
    if version not in READ_VERSIONS:
        raise cur.fail(f"unsupported Q2BN version {version} (this reader knows {READ_VERSIONS})", 4)
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
        records.append(_read_record(cur, i, version))
        fault = _sequence_fault(records, i, seen) or _content_fault(records[i])
        if fault is not None:
            raise cur.fail(f"record {i}: {fault}", start)
        seen.add(records[i].name)
    if cur.pos != len(raw):
        raise cur.fail(f"{len(raw) - cur.pos} trailing bytes after {count} records")
    return Q2BNContents(header, records, len(raw), version)


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
