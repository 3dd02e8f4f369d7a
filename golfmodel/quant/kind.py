"""`QuantKind`: the interface every storage kind implements (the concrete kinds: `golfmodel/quant/kinds.py`).

A kind owns one storage rule end to end: its grid (levels ℓ), its scale (fit, Lloyd update,
statistic), its fake-quant forward with the straight-through / LSQ backward, its payload
encoding and decoding, and the exact byte count. Every scaled kind works on a (out, G, g) view
of the weight (G = in/g groups of g inputs; per row: G = 1, g = in) with the scale as
(out, G, 1), so per-row and per-group scales share one code path; subclasses supply `_levels3`,
`_stat` and the code packing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from golfmodel.quant.spec import QuantSpec

FIT_LLOYD_ITERS = 12  # Lloyd iterations of a "fit" scale for kinds without a closed-form solve
SCALE_MIN, SCALE_MAX = 2.0**-24, 65504.0  # int / fp8 scales: positive fp16 incl. subnormals (as int8 rows)
FP8_MAX = 448.0  # largest finite float8_e4m3fn


def _frombuf(buf: bytes, dtype: str, offset: int, count: int) -> Tensor:
    arr = np.frombuffer(buf, dtype=np.dtype(dtype), count=count, offset=offset)
    return torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))


def _le(t: Tensor, dtype: str) -> bytes:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.dtype(dtype)).tobytes()


class QuantKind:
    """Base interface of a storage kind; subclasses set the grid (`_levels3`) and the code packing."""

    max_level = 1.0  # largest |level| (LSQ's Q_p)
    sat = 1.0  # |w|/t beyond which the level saturates (LSQ: the scale gradient becomes ±max_level)
    ste_clip = 2.0  # the weight STE passes where |w| <= ste_clip·t (2 × max_level; q2: SPEC's 3τ)

    def __init__(self, spec: QuantSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.label}, scale={self.spec.scale})"

    # --- shapes ---------------------------------------------------------------------------------

    def groups(self, in_features: int) -> int:
        """Scales per row; a group size must divide the row (ValueError naming both otherwise)."""
        g = self.spec.group_size
        if not g:
            return 1
        if in_features % g:
            raise ValueError(f"group_size: {g} does not divide a row of {in_features} inputs")
        return in_features // g

    def scale_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """(out,) per row, (out, G) per group, () for unscaled kinds."""
        if not self.spec.has_scale:
            return ()
        out, n = self._matrix(shape)
        return (out,) if not self.spec.group_size else (out, self.groups(n))

    def _matrix(self, shape: Sequence[int]) -> tuple[int, int]:
        if len(shape) != 2:
            raise ValueError(f"kind {self.spec.label} needs a 2-D shape, got {tuple(shape)}")
        return int(shape[0]), int(shape[1])

    def _view(self, w: Tensor) -> Tensor:
        out, n = w.shape
        G = self.groups(n)
        return w.reshape(out, G, n // G)  # (out, G, g)

    def _t3(self, t: Tensor, shape: Sequence[int]) -> Tensor:
        out, n = shape
        return t.reshape(out, self.groups(n), 1)  # (out, G, 1)

    # --- grid -----------------------------------------------------------------------------------

    def _levels3(self, w3: Tensor, t3: Tensor) -> Tensor:
        raise NotImplementedError

    def round_scale(self, t: Tensor) -> Tensor:
        return t.float().clamp(SCALE_MIN, SCALE_MAX).half().float()

    def levels(self, w: Tensor, t: Tensor) -> Tensor:
        """Levels ℓ (out, in) fp32 with ŵ = ℓ·t."""
        w3 = self._view(w.float())
        return self._levels3(w3, self._t3(t.float(), w.shape)).reshape(w.shape)

    def dequant(self, w: Tensor, t: Tensor) -> Tensor:
        """ŵ = ℓ·t (out, in) fp32, exact; no gradient."""
        w3 = self._view(w.detach().float())
        t3 = self._t3(t.detach().float(), w.shape)
        return (self._levels3(w3, t3) * t3).reshape(w.shape)

    # --- scales ---------------------------------------------------------------------------------

    def _stat(self, w3: Tensor) -> Tensor:
        raise NotImplementedError

    def _weights3(self, w: Tensor, act_weight: Tensor | None) -> Tensor | None:
        if act_weight is None:
            return None
        a = act_weight.to(device=w.device, dtype=torch.float64)
        if (
            a.shape not in ((w.shape[1],), tuple(w.shape))
            or not bool(torch.isfinite(a).all())
            or bool((a < 0).any())
        ):
            raise ValueError(
                f"act_weight must be finite, non-negative, shape ({w.shape[1]},) or {tuple(w.shape)}"
            )
        return self._view(a.expand(w.shape))

    def lloyd(self, w: Tensor, t: Tensor, act_weight: Tensor | None = None) -> Tensor:
        """One Lloyd step: the levels of (w, t) kept, t ← Σ a·w·ℓ / Σ a·ℓ² per row/group, fp16-rounded."""
        w3 = self._view(w.detach().float())
        t3 = self._t3(t.detach().float(), w.shape)
        lv = self._levels3(w3, t3)
        a3 = self._weights3(w, act_weight)
        wl, ll = w3 * lv, lv * lv
        if a3 is not None:
            wl, ll = (wl.double() * a3), (ll.double() * a3)
        num, den = wl.sum(-1, keepdim=True), ll.sum(-1, keepdim=True)
        new = torch.where(den > 0, num / den.clamp_min(1e-30), t3.to(num.dtype))  # all-zero levels keep t
        return self.round_scale(new).reshape(t.shape)

    def stat_scale(self, w: Tensor) -> Tensor:
        """The kind's closed-form scale (absmax / absmean), fp16-rounded, shape `scale_shape`."""
        w3 = self._view(w.detach().float())
        return self.round_scale(self._stat(w3)).reshape(self.scale_shape(w.shape))

    def fit_scale(self, w: Tensor, act_weight: Tensor | None = None) -> Tensor:
        """The spec's exact refresh: "fit"/"learned" → squared-error fit; "absmax"/"absmean" → the statistic."""
        if self.spec.scale in ("absmax", "absmean"):
            return self.stat_scale(w)
        t = self.stat_scale(w)
        for _ in range(FIT_LLOYD_ITERS):
            t = self.lloyd(w, t, act_weight)
        return t

    def update_scale(self, w: Tensor, t: Tensor) -> Tensor:
        """The cheap per-step refresh: one Lloyd step ("fit"), the statistic, or t itself ("learned")."""
        if self.spec.scale == "learned":
            return t
        if self.spec.scale in ("absmax", "absmean"):
            return self.stat_scale(w)
        return self.lloyd(w, t)

    def lsq_grad_scale(self, in_features: int) -> float:
        """LSQ's gradient scale 1/sqrt(n·Q_p) for a scale shared by n weights (Esser et al. 2020)."""
        n = self.spec.group_size or in_features
        return 1.0 / math.sqrt(max(n, 1) * self.max_level)

    # --- autograd -------------------------------------------------------------------------------

    def fake_quant(self, w: Tensor, t: Tensor, *, masked: bool = True) -> Tensor:
        """ŵ = ℓ·t with the straight-through estimator to w and LSQ's gradient to t (if it needs one)."""
        return _FakeQuantFn.apply(w, self._t3(t, w.shape), self, masked, False)

    def levels_ste(self, w: Tensor, t: Tensor, *, masked: bool = True) -> Tensor:
        """ℓ with the STE (gradient ∂ℓ/∂w = 1/t): y = (x ℓᵀ)·t then uses exactly the stored t."""
        return _FakeQuantFn.apply(w, self._t3(t, w.shape), self, masked, True)

    # --- storage --------------------------------------------------------------------------------

    def _row_bytes(self, in_features: int) -> int:
        raise NotImplementedError

    def _codes(self, lv: Tensor) -> Tensor:
        """Packed codes (out, row_bytes) uint8 of levels (out, in)."""
        raise NotImplementedError

    def _levels_from(self, packed: Tensor, in_features: int) -> Tensor:
        raise NotImplementedError

    def _codes_fault(self, packed: Tensor, in_features: int) -> str | None:
        return None

    def stored_bytes(self, shape: Sequence[int]) -> int:
        """Exact payload bytes of a tensor of `shape`: fp16 scales + packed rows."""
        out, n = self._matrix(shape)
        return 2 * out * self.groups(n) + out * self._row_bytes(n)

    def label(self, shape: Sequence[int]) -> str:
        return self.spec.label

    def _checked_scale(self, t: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
        t = t.detach().cpu().float()
        if tuple(t.shape) != self.scale_shape(shape):
            raise ValueError(f"{name}: scale has shape {tuple(t.shape)}, expected {self.scale_shape(shape)}")
        if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
            raise ValueError(f"{name}: scales must be positive and finite")
        if not torch.equal(t.half().float(), t):
            raise ValueError(f"{name}: scale is not fp16-representable (round it with round_scale)")
        return t

    def encode(self, w: Tensor, t: Tensor | None, name: str = "tensor") -> bytes:
        """Payload of w stored with scale t: fp16 scales (row-major) then each row's packed codes."""
        shape = tuple(w.shape)
        t = self._checked_scale(t if t is not None else torch.empty(0), shape, name)
        lv = self.levels(w.detach().cpu(), t)
        return _le(t.half(), "<f2") + _le(self._codes(lv), "u1")

    def _split(self, payload: bytes, shape: Sequence[int]) -> tuple[Tensor, Tensor]:
        out, n = self._matrix(shape)
        ns = out * self.groups(n)
        t = _frombuf(payload, "<f2", 0, ns).float().reshape(self.scale_shape(shape))
        packed = _frombuf(payload, "u1", 2 * ns, out * self._row_bytes(n)).view(out, self._row_bytes(n))
        return t, packed

    def decode(self, payload: bytes, shape: Sequence[int]) -> tuple[Tensor, Tensor | None]:
        """(ŵ fp32 of `shape`, scale fp32) from a payload of `stored_bytes(shape)` bytes."""
        out, n = self._matrix(shape)
        t, packed = self._split(payload, shape)
        lv = self._levels_from(packed, n)
        return (self._view(lv) * self._t3(t, (out, n))).reshape(out, n), t

    def payload_fault(self, payload: bytes, shape: Sequence[int]) -> str | None:
        """What is wrong with a payload's values (scales, padding, code range), or None."""
        out, n = self._matrix(shape)
        t, packed = self._split(payload, shape)
        if not (bool(torch.isfinite(t).all()) and bool((t > 0).all())):
            return "a scale is not a positive finite fp16"
        return self._codes_fault(packed, n)


class _FakeQuantFn(torch.autograd.Function):
    """Forward ℓ(w, t)·t (or ℓ alone); backward: masked STE to w, LSQ gradient to t."""

    @staticmethod
    def forward(ctx, w: Tensor, t3: Tensor, kind: QuantKind, masked: bool, levels_only: bool) -> Tensor:  # type: ignore[override]
        w3 = kind._view(w)
        tt = t3.to(w.dtype)
        lv = kind._levels3(w3, tt)
        ctx.save_for_backward(w, t3)
        ctx.kind, ctx.masked, ctx.levels_only = kind, masked, levels_only
        return (lv if levels_only else lv * tt).reshape(w.shape).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:  # type: ignore[override]
        w, t3 = ctx.saved_tensors
        kind: QuantKind = ctx.kind
        g3, w3, tt = kind._view(grad), kind._view(w), t3.to(w.dtype)
        gw = gt = None
        if ctx.needs_input_grad[0]:
            gw3 = g3 * (w3.abs() <= kind.ste_clip * tt) if ctx.masked else g3
            gw = (gw3 / tt if ctx.levels_only else gw3).reshape(w.shape)
        if ctx.needs_input_grad[1]:
            u = w3 / tt
            inside = u.abs() <= kind.sat
            if ctx.levels_only:  # ∂ℓ/∂t = -u/t inside the grid (ℓ ≈ u), 0 where ℓ saturates
                d = torch.where(inside, -u / tt, torch.zeros_like(u))
            else:  # LSQ: ∂ŵ/∂t = ℓ - u inside, ℓ (= ±Q_p) where it saturates
                lv = kind._levels3(w3, tt)
                d = torch.where(inside, lv - u, lv)
            gt = (g3 * d).sum(-1, keepdim=True).to(t3.dtype)
        return gw, gt, None, None, None
