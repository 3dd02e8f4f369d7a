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
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

import torch
import zstandard
from torch import Tensor

from golfmodel.atomic import atomic_write_bytes
from golfmodel.quant.kinds import QuantKind, kind_for
from golfmodel.quant.q2 import dequant
from golfmodel.quant.spec import QuantSpec

MAGIC = b"Q2BN"
VERSION = 2  # what the writer writes
READ_VERSIONS = (1, 2)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_LEVEL = 22
MAX_HEADER_BYTES = 1 << 24  # a header is a few KB; this only bounds a corrupt length field
MAX_RAW_BYTES = 1 << 31  # refuse frames that claim to decompress to more than 2 GiB
MAX_NDIM = 8
PREFIX = struct.Struct("<4sBI")  # magic, version, header length
RECORD_FIXED = {1: 2 + 1 + 1 + 8, 2: 2 + 1 + 1 + 4 + 1 + 1 + 8}  # fixed fields (plus name and dims)
REQUIRED_HEADER = ("model", "tokenizer", "settings_hash")
WRITER_KEYS = ("tensor_count", "body_sha256")


class Q2BNError(ValueError):
    """A Q2BN file (or byte string) is malformed; the message names the source, offset and fault."""


class Kind(IntEnum):
    """Storage kind of one tensor record."""

    Q2_ROWS = 0
    FP16 = 1
    FP32 = 2
    INT_ROWS = 3
    INT8_ROWS = 3  # version 1's name (int8 rows are the int kind at 8 bits)
    ALIAS = 4
    TERNARY_ROWS = 5
    FP8_ROWS = 6


class ScaleLayout(IntEnum):
    NONE = 0
    ROWS = 1
    GROUPS = 2


SPEC_KIND = {"q2": Kind.Q2_ROWS, "fp16": Kind.FP16, "fp32": Kind.FP32, "int": Kind.INT_ROWS,
             "ternary": Kind.TERNARY_ROWS, "fp8": Kind.FP8_ROWS}  # fmt: skip
KIND_SPEC = {k: s for s, k in SPEC_KIND.items()}
V1_KINDS = (Kind.Q2_ROWS, Kind.FP16, Kind.FP32, Kind.INT8_ROWS, Kind.ALIAS)
V1_BITS = {Kind.Q2_ROWS: 2, Kind.FP16: 16, Kind.FP32: 32, Kind.INT8_ROWS: 8, Kind.ALIAS: 0}


def record_spec(kind: Kind, bits: int, group_size: int) -> QuantSpec | None:
    """The storage spec a record's kind/bits/group fields name (None for an alias); ValueError if impossible."""
    if kind == Kind.ALIAS:
        if bits or group_size:
            raise ValueError(f"an alias has no bits or group size (got {bits}, {group_size})")
        return None
    return QuantSpec(kind=KIND_SPEC[kind], bits=bits, group_size=group_size)


def scale_layout(spec: QuantSpec | None) -> ScaleLayout:
    if spec is None or not spec.has_scale:
        return ScaleLayout.NONE
    return ScaleLayout.GROUPS if spec.group_size else ScaleLayout.ROWS


def expected_payload_bytes(kind: Kind, shape: Sequence[int], bits: int = 0, group_size: int = 0) -> int:
    """Payload size fixed by a record's kind, bits, group size and dims; ValueError for an impossible set."""
    spec = record_spec(Kind(kind), bits or V1_BITS.get(Kind(kind), 0), group_size)
    return 2 if spec is None else kind_for(spec).stored_bytes(tuple(shape))


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """One stored tensor: name, kind, bits, group size, logical shape and the raw little-endian payload.

    bits = 0 means the kind's version-1 width (q2 2, int 8, fp16 16, fp32 32).
    """

    name: str
    kind: Kind
    shape: tuple[int, ...]
    payload: bytes
    bits: int = 0
    group_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.bits == 0 and self.kind != Kind.TERNARY_ROWS and self.kind != Kind.FP8_ROWS:
            object.__setattr__(self, "bits", V1_BITS[self.kind])
        elif self.bits == 0:
            object.__setattr__(self, "bits", 2 if self.kind == Kind.TERNARY_ROWS else 8)
        name_len = len(self.name.encode("utf-8"))
        if not 0 < name_len <= 0xFFFF:
            raise ValueError(f"record name must be 1..65535 UTF-8 bytes, got {name_len}")
        if len(self.shape) > MAX_NDIM or any(not 0 <= d <= 0xFFFFFFFF for d in self.shape):
            raise ValueError(f"{self.name}: shape {self.shape} outside ndim <= {MAX_NDIM}, dims < 2^32")
        want = expected_payload_bytes(self.kind, self.shape, self.bits, self.group_size)
        if len(self.payload) != want:
            raise ValueError(
                f"{self.name}: {self.kind.name} payload is {len(self.payload)} bytes, expected {want}"
            )

    @property
    def spec(self) -> QuantSpec | None:
        """The storage spec (kind, bits, group size) of this record; None for an alias."""
        return record_spec(self.kind, self.bits, self.group_size)

    @property
    def quant_kind(self) -> QuantKind:
        spec = self.spec
        if spec is None:
            raise ValueError(f"{self.name}: an alias has no storage kind of its own")
        return kind_for(spec)

    @property
    def label(self) -> str:
        """Storage label ("q2", "int4g64", "fp16", "alias")."""
        return "alias" if self.kind == Kind.ALIAS else self.quant_kind.label(self.shape)

    def v1_compatible(self) -> bool:
        return self.kind in V1_KINDS and self.bits == V1_BITS[self.kind] and self.group_size == 0

    def stored_bytes(self, version: int = VERSION) -> int:
        """Bytes this record occupies in the decompressed stream (fields plus payload)."""
        n = len(self.name.encode("utf-8"))
        return RECORD_FIXED[version] + n + 4 * len(self.shape) + len(self.payload)

    def to_bytes(self, version: int = VERSION) -> bytes:
        name = self.name.encode("utf-8")
        dims = struct.pack(f"<{len(self.shape)}I", *self.shape)
        if version == 1:
            if not self.v1_compatible():
                raise ValueError(f"{self.name}: {self.label} has no version-1 record")
            fields = struct.pack("<BB", self.kind, len(self.shape))
        else:
            bits = 0 if self.kind == Kind.ALIAS else self.bits
            layout = scale_layout(self.spec)
            fields = struct.pack("<BBIBB", self.kind, bits, self.group_size, layout, len(self.shape))
        return (
            struct.pack("<H", len(name))
            + name
            + fields
            + dims
            + struct.pack("<Q", len(self.payload))
            + self.payload
        )


# --- encode / decode between tensors and records (the payloads are the kinds') -------------------


def encode_spec(name: str, t: Tensor, spec: QuantSpec, scale: Tensor | None = None) -> TensorRecord:
    """Record of tensor t stored as `spec`, with scale `scale` (None: the kind's fit_scale of t)."""
    kind = kind_for(spec)
    w = t.detach().cpu().float()
    if spec.has_scale and scale is None:
        scale = kind.fit_scale(w)
    payload = kind.encode(w, scale, name)
    return TensorRecord(name, SPEC_KIND[spec.kind], tuple(t.shape), payload, spec.bits, spec.group_size)


def encode_q2(name: str, sym: Tensor, tau: Tensor) -> TensorRecord:
    """Kind 0 from symbols (out,in) uint8 and τ (out,) (fp16-representable and > 0)."""
    if sym.dtype != torch.uint8 or sym.ndim != 2 or (sym.numel() > 0 and int(sym.max()) > 3):
        raise ValueError(f"{name}: symbols must be a 2-D uint8 tensor with values 0..3")
    tau = tau.detach().cpu().float()
    if tau.shape != (sym.shape[0],):
        raise ValueError(f"{name}: τ has shape {tuple(tau.shape)}, expected ({sym.shape[0]},)")
    # The q2 kind encodes weights; (s - 1.5)·τ re-quantises to s exactly (each level is on its side of the thresholds).
    if not torch.equal(tau.half().float(), tau):
        raise ValueError(f"{name}: τ is not fp16-representable (round it with round_tau)")
    return encode_spec(name, dequant(sym.cpu(), tau), QuantSpec(kind="q2"), tau)


def encode_fp16(name: str, t: Tensor) -> TensorRecord:
    """Kind 1; raises if a finite value overflows fp16."""
    return encode_spec(name, t, QuantSpec(kind="fp16"))


def encode_fp32(name: str, t: Tensor) -> TensorRecord:
    """Kind 2."""
    return encode_spec(name, t, QuantSpec(kind="fp32"))


def encode_int8(name: str, w: Tensor) -> TensorRecord:
    """Kind 3 at 8 bits: per-row symmetric int8 (max-abs scale) of a 2-D float tensor."""
    return encode_spec(name, w, QuantSpec(kind="int", bits=8, scale="absmax"))


def encode_alias(name: str, index: int, shape: Sequence[int]) -> TensorRecord:
    """Kind 4: same tensor as record `index` (which must come earlier and not be an alias)."""
    if not 0 <= index <= 0xFFFF:
        raise ValueError(f"{name}: alias index {index} outside u16")
    return TensorRecord(name, Kind.ALIAS, tuple(shape), struct.pack("<H", index))


def encode(name: str, t: Tensor, kind: Kind, *, tau: Tensor | None = None) -> TensorRecord:
    """Record of a float tensor rounded to a version-1 kind (q2 needs τ; aliases use encode_alias)."""
    if kind == Kind.Q2_ROWS:
        if tau is None:
            raise ValueError(f"{name}: q2 records need τ")
        return encode_spec(name, t, QuantSpec(kind="q2"), tau)
    encoders = {Kind.FP16: encode_fp16, Kind.FP32: encode_fp32, Kind.INT8_ROWS: encode_int8}
    if kind not in encoders:
        raise ValueError(f"{name}: cannot encode kind {kind!r} from a tensor (use encode_spec)")
    return encoders[Kind(kind)](name, t)


def decode_scaled(rec: TensorRecord) -> tuple[Tensor, Tensor | None]:
    """(ŵ fp32, scale fp32 or None) of a non-alias record."""
    return rec.quant_kind.decode(rec.payload, rec.shape)


def decode(rec: TensorRecord) -> Tensor:
    """A non-alias record as the fp32 tensor it stores (dequantised for scaled kinds)."""
    if rec.kind == Kind.ALIAS:
        raise ValueError(f"{rec.name}: an alias has no tensor of its own; resolve it with decode_all")
    return decode_scaled(rec)[0]


def record_scale(rec: TensorRecord) -> Tensor | None:
    """The scale (fp32, the kind's scale shape) of a scaled record; None otherwise."""
    return None if rec.kind == Kind.ALIAS or not rec.spec.has_scale else decode_scaled(rec)[1]


def decode_q2(rec: TensorRecord) -> tuple[Tensor, Tensor]:
    """Per-row kind 0 → (symbols (out,in) uint8, τ (out,) fp16)."""
    w, tau = decode_scaled(rec)
    return (w / tau[:, None] + 1.5).round().to(torch.uint8), tau.half()


def q2_tau(rec: TensorRecord) -> Tensor:
    """τ (out,) fp16 of a per-row kind-0 record."""
    return record_scale(rec).half()


def decode_int8(rec: TensorRecord) -> tuple[Tensor, Tensor]:
    """Per-row 8-bit kind 3 → (q (out,in) int8, scale (out,) fp16)."""
    w, scale = decode_scaled(rec)
    return (w / scale[:, None]).round().to(torch.int8), scale.half()


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
