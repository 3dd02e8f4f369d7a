"""Q2BN tensor records: kinds, the record type, and encode / decode between tensors and records.

A record is (name, kind, shape, payload, bits, group size); its payload layout, size and value
checks are the storage kind's (`golfmodel/quant/kinds.py`), so this module only maps the
record's fields to a `QuantSpec` and back. The container that frames records: `format.py`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch
from torch import Tensor

from golfmodel.quant.kinds import QuantKind, kind_for
from golfmodel.quant.q2 import dequant
from golfmodel.quant.spec import QuantSpec

VERSION = 2  # what the writer writes
MAX_NDIM = 8
RECORD_FIXED = {1: 2 + 1 + 1 + 8, 2: 2 + 1 + 1 + 4 + 1 + 1 + 8}  # fixed fields (plus name and dims)


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
