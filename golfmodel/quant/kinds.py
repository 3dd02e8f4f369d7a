"""The storage kinds (SPEC §4 rev. 2): one class per kind, each the single home of its rules.

    kind = kind_for(QuantSpec(kind="int", bits=4, group_size=64))
    t  = kind.fit_scale(w)              # scale (out,) or (out, in/g), fp16-representable fp32
    t  = kind.update_scale(w, t)        # cheap refresh: one Lloyd step (no sort, no host sync)
    ŵ  = kind.fake_quant(w, t)          # QAT forward ŵ = levels·t; STE to w, LSQ gradient to t
    b  = kind.encode(w, t)              # record payload: fp16 scales, then the packed codes
    ŵ, t = kind.decode(b, (out, in))    # the same ŵ bit for bit
    n  = kind.stored_bytes((out, in))   # == len(b): what every byte table counts

Every scaled kind works on a (out, G, g) view of the weight (G = in/g groups of g inputs; per
row: G = 1, g = in) with the scale as (out, G, 1), so per-row and per-group share one code path.
Levels ℓ are exact small numbers (q2 ±½, ±3/2; ternary 0, ±1; int −qmax..qmax; fp8 e4m3
values) and scales are fp16, so ŵ = ℓ·t is exact in fp32 and every path that dequantises gets
the same bits. Lloyd step: with the levels fixed, the least-squares scale of a row/group is
Σ w·ℓ / Σ ℓ² (two reductions); then the levels are reassigned by the next forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from golfmodel.quant.bitpack import (
    bits_row_bytes,
    pack_bits,
    pack_trits,
    padding_bits_zero,
    trits_row_bytes,
    trits_valid,
    unpack_bits,
    unpack_trits,
)
from golfmodel.quant.kind import FP8_MAX, QuantKind, _frombuf, _le
from golfmodel.quant.q2 import fit_tau, pack_rows, packed_row_bytes, padding_is_zero, round_tau, unpack_rows
from golfmodel.quant.spec import QuantSpec

__all__ = ["FP8Kind", "FloatKind", "IntKind", "Q2Kind", "QuantKind", "TernaryKind", "kind_for"]


class Q2Kind(QuantKind):
    """Q² 2-bit grid: s = [w>-τ]+[w>0]+[w>τ], ℓ = s − 3/2; exact MSE fit; Gray packing 4 per byte."""

    max_level, sat, ste_clip = 1.5, 2.0, 3.0  # SPEC §4: the STE mask is |w| <= 3τ

    def _levels3(self, w3: Tensor, t3: Tensor) -> Tensor:
        s = (w3 > -t3).to(w3.dtype) + (w3 > 0).to(w3.dtype) + (w3 > t3).to(w3.dtype)
        return s - 1.5

    def round_scale(self, t: Tensor) -> Tensor:
        return round_tau(t)

    def fit_scale(self, w: Tensor, act_weight: Tensor | None = None) -> Tensor:
        """The exact per-row (or per-group, each group as a row) squared-error solve of `fit_tau`."""
        if not self.spec.group_size:
            return fit_tau(w.detach(), act_weight)
        out, n = w.shape
        G = self.groups(n)
        a = None if act_weight is None else act_weight.to(w.device).expand(out, n).reshape(out * G, n // G)
        return fit_tau(w.detach().reshape(out * G, n // G), a).reshape(out, G)

    def _stat(self, w3: Tensor) -> Tensor:  # only as a Lloyd start; q2's fit is exact
        return 0.996 * w3.pow(2).mean(-1).sqrt()

    def _row_bytes(self, in_features: int) -> int:
        return packed_row_bytes(in_features)

    def _codes(self, lv: Tensor) -> Tensor:
        return pack_rows((lv + 1.5).to(torch.uint8))

    def _levels_from(self, packed: Tensor, in_features: int) -> Tensor:
        return unpack_rows(packed, in_features).float() - 1.5

    def _codes_fault(self, packed: Tensor, in_features: int) -> str | None:
        return None if padding_is_zero(packed, in_features) else "padding symbols are not 0"


class TernaryKind(QuantKind):
    """{−1, 0, +1}·s (BitNet b1.58): ℓ = [w > s/2] − [w < −s/2]; absmean statistic; 5 trits per byte."""

    max_level, sat, ste_clip = 1.0, 1.5, 2.0

    def _levels3(self, w3: Tensor, t3: Tensor) -> Tensor:
        h = 0.5 * t3
        return (w3 > h).to(w3.dtype) - (w3 < -h).to(w3.dtype)

    def round_scale(self, t: Tensor) -> Tensor:
        return round_tau(t)

    def _stat(self, w3: Tensor) -> Tensor:
        return w3.abs().mean(-1)

    def _row_bytes(self, in_features: int) -> int:
        return trits_row_bytes(in_features)

    def _codes(self, lv: Tensor) -> Tensor:
        return pack_trits((lv + 1).to(torch.uint8))

    def _levels_from(self, packed: Tensor, in_features: int) -> Tensor:
        return unpack_trits(packed, in_features).float() - 1

    def _codes_fault(self, packed: Tensor, in_features: int) -> str | None:
        return None if trits_valid(packed, in_features) else "a byte above 242 or a non-zero padding trit"


class IntKind(QuantKind):
    """Symmetric b-bit integers: ℓ = clip(round(w/s), ±(2^(b−1)−1)); absmax statistic; b-bit two's complement."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__(spec)
        self.qmax = float(2 ** (spec.bits - 1) - 1)
        self.max_level, self.sat, self.ste_clip = self.qmax, self.qmax + 0.5, 2 * self.qmax

    def _levels3(self, w3: Tensor, t3: Tensor) -> Tensor:
        return torch.round(w3 / t3).clamp(-self.qmax, self.qmax)

    def _stat(self, w3: Tensor) -> Tensor:
        return w3.abs().amax(-1) / self.qmax if w3.shape[-1] else w3.new_zeros(w3.shape[:-1])

    def stored_bytes(self, shape: Sequence[int]) -> int:
        if len(shape) != 2:  # the baseline's int8 rule for non-matrices: one fp32 scale per tensor
            return (math.prod(shape) * self.spec.bits + 7) // 8 + 4
        return super().stored_bytes(shape)

    def label(self, shape: Sequence[int]) -> str:
        return self.spec.label if len(shape) == 2 else f"{self.spec.label}-tensor"

    def _row_bytes(self, in_features: int) -> int:
        return bits_row_bytes(in_features, self.spec.bits)

    def _codes(self, lv: Tensor) -> Tensor:
        mask = (1 << self.spec.bits) - 1
        return pack_bits((lv.to(torch.int16) & mask).to(torch.uint8), self.spec.bits)

    def _levels_from(self, packed: Tensor, in_features: int) -> Tensor:
        b = self.spec.bits
        c = unpack_bits(packed, in_features, b).to(torch.int16)
        return torch.where(c >= (1 << (b - 1)), c - (1 << b), c).float()

    def _codes_fault(self, packed: Tensor, in_features: int) -> str | None:
        b = self.spec.bits
        if not padding_bits_zero(packed, in_features, b):
            return "padding bits are not 0"
        if bool((unpack_bits(packed, in_features, b) == (1 << (b - 1))).any()):
            return f"int{b} value {-(1 << (b - 1))} (outside the symmetric range)"
        return None


class FP8Kind(QuantKind):
    """float8 e4m3 (fn) of w/s with an fp16 scale s = absmax/448 per row or group; one byte per weight."""

    max_level, sat, ste_clip = FP8_MAX, FP8_MAX, 2 * FP8_MAX

    def _levels3(self, w3: Tensor, t3: Tensor) -> Tensor:
        return (w3 / t3).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(w3.dtype)

    def _stat(self, w3: Tensor) -> Tensor:
        return w3.abs().amax(-1) / FP8_MAX if w3.shape[-1] else w3.new_zeros(w3.shape[:-1])

    def _row_bytes(self, in_features: int) -> int:
        return in_features

    def _codes(self, lv: Tensor) -> Tensor:
        return lv.to(torch.float8_e4m3fn).view(torch.uint8)

    def _levels_from(self, packed: Tensor, in_features: int) -> Tensor:
        return packed.view(torch.float8_e4m3fn).float()

    def _codes_fault(self, packed: Tensor, in_features: int) -> str | None:
        return "a NaN fp8 code" if bool(((packed & 0x7F) == 0x7F).any()) else None


class FloatKind(QuantKind):
    """fp16 / fp32 without a scale: ŵ = w rounded to the format (plain STE), little-endian values."""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__(spec)
        self.dtype = torch.float16 if spec.kind == "fp16" else torch.float32
        self.np = "<f2" if spec.kind == "fp16" else "<f4"

    def scale_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return ()

    def levels(self, w: Tensor, t: Tensor | None = None) -> Tensor:
        return w.detach().to(self.dtype).float()

    def dequant(self, w: Tensor, t: Tensor | None = None) -> Tensor:
        return self.levels(w)

    def fit_scale(self, w: Tensor, act_weight: Tensor | None = None) -> Tensor:
        return torch.empty(0, device=w.device)

    def update_scale(self, w: Tensor, t: Tensor) -> Tensor:
        return t

    def fake_quant(self, w: Tensor, t: Tensor | None = None, *, masked: bool = True) -> Tensor:
        if self.dtype == torch.float32:
            return w
        return w + (w.to(self.dtype).to(w.dtype) - w).detach()  # plain STE through the rounding

    def stored_bytes(self, shape: Sequence[int]) -> int:
        return math.prod(shape) * (2 if self.dtype == torch.float16 else 4)

    def encode(self, w: Tensor, t: Tensor | None = None, name: str = "tensor") -> bytes:
        x = w.detach().cpu()
        h = x.to(self.dtype)
        if bool((torch.isfinite(x) & ~torch.isfinite(h)).any()):
            raise ValueError(f"{name}: values overflow {self.spec.kind}; store it as fp32")
        return _le(h, self.np)

    def decode(self, payload: bytes, shape: Sequence[int]) -> tuple[Tensor, Tensor | None]:
        return _frombuf(payload, self.np, 0, math.prod(shape)).float().reshape(tuple(shape)), None

    def payload_fault(self, payload: bytes, shape: Sequence[int]) -> str | None:
        return None


_CLASSES: dict[str, type[QuantKind]] = {
    "q2": Q2Kind,
    "ternary": TernaryKind,
    "int": IntKind,
    "fp8": FP8Kind,
    "fp16": FloatKind,
    "fp32": FloatKind,
}


def kind_for(spec: QuantSpec) -> QuantKind:
    """The kind object of a spec (cheap; kinds hold no tensors)."""
    return _CLASSES[spec.kind](spec)
