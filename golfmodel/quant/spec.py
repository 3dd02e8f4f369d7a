"""`QuantSpec`: how one tensor is stored (SPEC §4 revision 2) — kind, bits, group size, scale rule.

    QuantSpec(kind="q2")                                  2-bit Q² grid, per-row τ, exact MSE fit
    QuantSpec(kind="int", bits=4, group_size=64)          symmetric int4, one scale per 64 inputs
    QuantSpec(kind="int", bits=8, scale="absmax")         int8 rows, scale = max|w|/127 (embeddings)
    QuantSpec(kind="ternary", scale="learned")            {-1,0,+1}·s, s a trained parameter
    QuantSpec(kind="fp16")                                plain fp16 (norm gains, time constants)

Scale rules: "fit" = the kind's squared-error fit (q2: the exact per-row solve; ternary / int /
fp8: Lloyd iterations from the closed-form statistic), "absmax" (int, fp8) and "absmean"
(ternary) = that statistic alone, recomputed whenever it is refreshed, "learned" = an
nn.Parameter initialised by the fit (LSQ gradient). Float kinds fp16 / fp32 have no scale
(their rule is "fit" and their group size 0). The kind classes themselves: `golfmodel/quant/kinds.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KINDS = ("q2", "ternary", "int", "fp8", "fp16", "fp32")
SCALES = ("fit", "learned", "absmax", "absmean")
DEFAULT_BITS = {"q2": 2, "ternary": 2, "fp8": 8, "fp16": 16, "fp32": 32}  # int: bits required
INT_BITS = range(3, 9)
STAT_SCALE = {"int": "absmax", "fp8": "absmax", "ternary": "absmean"}  # the closed-form statistic
UNSCALED = ("fp16", "fp32")
MAX_GROUP = 1 << 16


@dataclass(frozen=True, kw_only=True)
class QuantSpec:
    """Storage spec of one tensor; validated on construction (errors name the field)."""

    kind: str
    bits: int = 0  # 0 = the kind's width (required for int: 3..8)
    group_size: int = 0  # 0 = one scale per output row; g = one scale per g consecutive inputs of a row
    scale: str = "fit"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise ValueError(f"bits: must be an int, got {self.bits!r}")
        if self.kind == "int":
            if self.bits not in INT_BITS:
                raise ValueError(f"bits: kind 'int' needs 3..8 bits, got {self.bits}")
        elif self.bits == 0:
            object.__setattr__(self, "bits", DEFAULT_BITS[self.kind])
        elif self.bits != DEFAULT_BITS[self.kind]:
            raise ValueError(f"bits: kind {self.kind!r} has {DEFAULT_BITS[self.kind]} bits, got {self.bits}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int):
            raise ValueError(f"group_size: must be an int, got {self.group_size!r}")
        if not 0 <= self.group_size <= MAX_GROUP:
            raise ValueError(f"group_size: must be 0 (per row) or 1..{MAX_GROUP}, got {self.group_size}")
        if self.scale not in SCALES:
            raise ValueError(f"scale: must be one of {SCALES}, got {self.scale!r}")
        if self.kind in UNSCALED:
            if self.group_size:
                raise ValueError(f"group_size: kind {self.kind!r} has no scales, got {self.group_size}")
            if self.scale != "fit":
                raise ValueError(f"scale: kind {self.kind!r} has no scales, got {self.scale!r}")
        elif self.scale in ("absmax", "absmean") and STAT_SCALE.get(self.kind) != self.scale:
            raise ValueError(
                f"scale: {self.scale!r} is not a statistic of kind {self.kind!r} "
                f"(that kind's is {STAT_SCALE.get(self.kind)!r})"
            )

    @property
    def has_scale(self) -> bool:
        return self.kind not in UNSCALED

    @property
    def learned(self) -> bool:
        return self.scale == "learned"

    @property
    def label(self) -> str:
        """Short storage name: q2, ternary, int4, int4g64, fp8, fp16, fp32 (what byte tables print)."""
        base = f"int{self.bits}" if self.kind == "int" else self.kind
        return f"{base}g{self.group_size}" if self.group_size else base

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "bits": self.bits, "group_size": self.group_size, "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str, where: str = "spec") -> QuantSpec:
        """From `to_dict()` output or a label string ("q2", "int4g64", "fp8"); errors name `where`."""
        if isinstance(data, str):
            return cls.parse(data, where)
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a QuantSpec must be an object or a label string, got {data!r}")
        unknown = sorted(set(data) - {"kind", "bits", "group_size", "scale"})
        if unknown:
            raise ValueError(f"{where}: unknown QuantSpec keys {unknown}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

    @classmethod
    def parse(cls, text: str, where: str = "spec") -> QuantSpec:
        """A label with an optional scale suffix: "int4g64", "q2:learned", "int8:absmax", "fp16"."""
        m = _LABEL.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(
                f"{where}: cannot read spec {text!r} (expected e.g. q2, int4g64, ternary:learned)"
            )
        base, group, scale = m.group(1), m.group(2), m.group(3)
        kw: dict[str, Any] = {"scale": scale or "fit", "group_size": int(group or 0)}
        if base.startswith("int"):
            kw.update(kind="int", bits=int(base[3:]))
        else:
            kw["kind"] = base
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"{where}: cannot read spec {text!r}: {e}") from None


_LABEL = re.compile(r"(q2|ternary|int\d|fp8|fp16|fp32)(?:g(\d+))?(?::(\w+))?")
