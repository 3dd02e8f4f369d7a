"""Q² 2-bit row quantiser (SPEC §4): τ fitting, symbols, levels, masked STE, Gray packing.

Per output row r with scale τ_r (fp16-representable, stored as fp32):

    s = [w > -τ] + [w > 0] + [w > τ]      symbols {0,1,2,3}; thresholds (-τ, 0, +τ] are right-closed
    ŵ = (s - 1.5) · τ                      levels {-1.5, -0.5, +0.5, +1.5}·τ

`dequant` is exact in fp32: (s - 1.5) has 2 significant bits and τ has 11, so their product
is representable, and the QAT forward, the packer and the loader all produce the same bits.

τ fitting solves the row's (optionally activation-weighted) squared error exactly instead of
searching a grid: the error E(τ) of this uniform grid is a continuous piecewise quadratic in τ
(its pieces are the orderings of τ among the sorted |w|), so the optimum is the best of the
pieces' clipped stationary points, found with one sort and prefix sums per row. The fp16
rounding then picks the better of the fp16 neighbours. A multiplier grid search (the SPEC's
"short search over multipliers of the row's std") is kept as an option for comparison.

Packing (SPEC §4–5): Gray code g = s ^ (s >> 1), 4 symbols per byte, first symbol in the two
most significant bits, rows padded to a multiple of 4 with symbol 0 (Gray code 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

FP16_MIN_NORMAL = 2.0**-14  # smallest normal fp16; τ is clamped to [FP16_MIN_NORMAL, FP16_MAX]
FP16_MAX = 65504.0
_FP16_STEPS = (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6, -7, 7, -8, 8)
STE_CLIP = 3.0  # the STE passes gradients where |w| <= 3τ (SPEC §4)
_CHUNK_ELEMS = 1 << 20  # rows per chunk: one (rows, in) float64 temp is ~8 MB (the solve holds ~10)


def round_tau(tau: Tensor) -> Tensor:
    """Clamp τ to the positive normal fp16 range and round it to fp16; returned as fp32."""
    return tau.float().clamp(FP16_MIN_NORMAL, FP16_MAX).half().float()


def symbols(w: Tensor, tau: Tensor) -> Tensor:
    """Symbols s = [w>-τ]+[w>0]+[w>τ] as uint8 (out,in); ties go down: w==-τ→0, w==0→1, w==τ→2."""
    t = tau.to(w.dtype)[:, None]  # (out, 1)
    s = (w > -t).to(torch.uint8) + (w > 0).to(torch.uint8) + (w > t).to(torch.uint8)
    return s  # (out, in) uint8


def dequant(sym: Tensor, tau: Tensor) -> Tensor:
    """Levels (s - 1.5)·τ in fp32 (out,in); exact for fp16-representable τ."""
    return (sym.float() - 1.5) * tau.float()[:, None]


class _FakeQuant(torch.autograd.Function):
    """Forward: dequant(symbols(w, τ), τ). Backward: straight-through, optionally masked to |w| <= 3τ."""

    @staticmethod
    def forward(ctx, w: Tensor, tau: Tensor, masked: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(w, tau)
        ctx.masked = masked
        return dequant(symbols(w, tau), tau).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        w, tau = ctx.saved_tensors
        if not ctx.masked:
            return grad, None, None
        keep = w.abs() <= STE_CLIP * tau.to(w.dtype)[:, None]  # (out, in)
        return grad * keep.to(grad.dtype), None, None


def fake_quant(w: Tensor, tau: Tensor, masked: bool = True) -> Tensor:
    """QAT weight: forward uses the dequantised weight, backward the (masked) straight-through estimator."""
    return _FakeQuant.apply(w, tau, masked)


# --- τ fitting -------------------------------------------------------------------------------


def _check_act_weight(w: Tensor, act_weight: Tensor | None) -> Tensor | None:
    """act_weight as float64 (in,) on w's device, validated; None stays None (unweighted)."""
    if act_weight is None:
        return None
    a = act_weight.to(device=w.device, dtype=torch.float64)
    if a.shape != (w.shape[1],) and a.shape != tuple(w.shape):
        raise ValueError(
            f"act_weight must have shape ({w.shape[1]},) or {tuple(w.shape)} (per row), got {tuple(a.shape)}"
        )
    if not bool(torch.isfinite(a).all()) or bool((a < 0).any()):
        raise ValueError("act_weight must be finite and non-negative")
    return a


class _RowStats:
    """Sorted |w| with prefix sums of a and a|w| (float64), so E(τ) of any partition costs O(1).

    With the k smallest |w| on the inner level (τ/2) and the rest on the outer one (3τ/2):
    E_k(τ) = S2 - τ·B_k + τ²·C_k, B_k = 3·T - 2·Σ_{j<k} a_j u_j, C_k = 2.25·A - 2·Σ_{j<k} a_j,
    where T = Σ a u, A = Σ a, S2 = Σ a u². Unweighted rows use a = 1 without materialising it.
    """

    def __init__(self, w: Tensor, a: Tensor | None) -> None:
        u, order = torch.sort(w.abs(), dim=1, stable=True)  # (R, n)
        u = u.to(torch.float64)
        zero = torch.zeros_like(u[:, :1])
        if a is None:
            n = u.shape[1]
            self.cum_a = torch.arange(n + 1, dtype=torch.float64, device=u.device).expand(u.shape[0], -1)
            self.cum_au = torch.cat([zero, u.cumsum(1)], 1)  # (R, n+1)
            self.s2 = (u * u).sum(1, keepdim=True)
        else:
            a = a[order] if a.ndim == 1 else torch.gather(a, 1, order)  # (R, n) weights in sorted order
            self.cum_a = torch.cat([zero, a.cumsum(1)], 1)  # (R, n+1): Σ a over the k smallest
            self.cum_au = torch.cat([zero, (a * u).cumsum(1)], 1)
            self.s2 = (a * u * u).sum(1, keepdim=True)  # (R, 1)
        self.u = u

    def coeffs(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """B_k, C_k (R, M) for partitions k (R, M)."""
        b = 3.0 * self.cum_au[:, -1:] - 2.0 * torch.gather(self.cum_au, 1, k)
        c = 2.25 * self.cum_a[:, -1:] - 2.0 * torch.gather(self.cum_a, 1, k)
        return b, c

    def error(self, tau: Tensor) -> Tensor:
        """Weighted squared error (R, M) of candidate τ (R, M)."""
        t = tau.to(torch.float64).contiguous()
        k = torch.searchsorted(self.u, t, right=True)  # #(|w| <= τ): the partition τ induces
        b, c = self.coeffs(k)
        return self.s2 - t * b + t * t * c


def _exact_tau(st: _RowStats) -> Tensor:
    """Global minimiser of the continuous piecewise-quadratic E(τ) per row (R,) float64.

    Piece k holds τ in [u_{k-1}, u_k]; its minimum is its stationary point B_k / 2C_k clipped to
    the piece; the best piece wins. (Between pieces the slope drops by 2u, so no corner is a
    minimum, but clipping keeps the search robust to rounding at the piece ends.)
    """
    b = 3.0 * st.cum_au[:, -1:] - 2.0 * st.cum_au  # (R, n+1)
    c = 2.25 * st.cum_a[:, -1:] - 2.0 * st.cum_a  # (R, n+1), > 0 unless every weight a is 0
    tau = b / (2.0 * c).clamp_min(1e-300)
    tau[:, 1:] = torch.maximum(tau[:, 1:], st.u)  # lower end u_{k-1}
    tau[:, :-1] = torch.minimum(tau[:, :-1], st.u)  # upper end u_k
    tau[:, -1].clamp_(max=FP16_MAX)
    e = tau * c  # E - S2 = τ·(τ·C - B), built in place
    e.sub_(b).mul_(tau)
    best = e.argmin(1, keepdim=True)
    return torch.gather(tau, 1, best)[:, 0]


def _fp16_best(st: _RowStats, tau: Tensor) -> Tensor:
    """The fp16 τ within ±8 ulps of tau with the lowest error, as fp32 (R,).

    E(τ) has a kink wherever τ crosses some |w|, so on the fp16 grid the best value is not
    always the nearest one to the continuous optimum (it differs by ~1e-7 relative error).
    """
    h = tau.float().clamp(FP16_MIN_NORMAL, FP16_MAX).half()  # (R,) positive, so its bit pattern
    bits = h.view(torch.int16)  # is monotonic in the value: ±k steps to the k-th fp16 neighbours
    steps = torch.tensor(_FP16_STEPS, dtype=torch.int16, device=h.device)
    cand = (bits[:, None] + steps).view(torch.float16).float()  # (R, 17), nearest first so ties keep it
    cand = cand.clamp(FP16_MIN_NORMAL, FP16_MAX)
    best = st.error(cand).argmin(1, keepdim=True)
    return torch.gather(cand, 1, best)[:, 0]


def fit_tau(
    w: Tensor,
    act_weight: Tensor | None = None,
    *,
    multipliers: Tensor | None = None,
) -> Tensor:
    """Per-row τ (out,) fp32, fp16-representable, minimising Σ_j a_j (w_rj - ŵ_rj)².

    w: (out, in) weights. act_weight: (in,) non-negative column weights (e.g. E[x²] of the
    layer input on calibration data), or (out, in) weights per row (group scales fit each group
    as a row), or None for plain squared error. multipliers: None for the
    exact solve; otherwise τ is searched over multipliers·rms(row) (each fp16-rounded).
    All-zero rows get the smallest normal fp16.
    """
    if w.ndim != 2:
        raise ValueError(f"fit_tau expects a 2-D weight, got shape {tuple(w.shape)}")
    w = w.detach()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("fit_tau: weight has non-finite values")
    out, n = w.shape
    if out == 0:
        return torch.empty(0, device=w.device)
    if n == 0:
        return torch.full((out,), FP16_MIN_NORMAL, device=w.device)
    a = _check_act_weight(w, act_weight)
    rows = max(1, _CHUNK_ELEMS // max(n, 1))
    taus = []
    for i in range(0, out, rows):  # loop over row chunks only, to bound memory
        wc = w[i : i + rows]
        st = _RowStats(wc, a if a is None or a.ndim == 1 else a[i : i + rows])
        if multipliers is None:
            best = _exact_tau(st)
        else:
            rms = wc.double().pow(2).mean(1, keepdim=True).sqrt()  # (R, 1)
            cand = round_tau(rms * multipliers.to(device=w.device, dtype=torch.float64)[None, :])  # (R, M)
            best = torch.gather(cand, 1, st.error(cand).argmin(1, keepdim=True))[:, 0]
        taus.append(_fp16_best(st, best))
    return round_tau(torch.cat(taus))


def row_error(w: Tensor, tau: Tensor, act_weight: Tensor | None = None) -> Tensor:
    """Weighted squared quantisation error per row (out,) float64, computed directly."""
    a = _check_act_weight(w, act_weight)
    d = (w.double() - dequant(symbols(w, tau), tau).double()) ** 2
    return (d if a is None else d * a).sum(1)


# --- Gray code and packing ---------------------------------------------------------------------


def gray_encode(sym: Tensor) -> Tensor:
    """g = s ^ (s >> 1): 0→0b00, 1→0b01, 2→0b11, 3→0b10 (adjacent symbols differ in one bit)."""
    return sym ^ (sym >> 1)


def gray_decode(g: Tensor) -> Tensor:
    """Inverse of gray_encode for 2-bit codes: s = g ^ (g >> 1)."""
    return g ^ (g >> 1)


def packed_row_bytes(in_features: int) -> int:
    """Bytes per packed row: ceil(in/4)."""
    return (in_features + 3) // 4


def pack_rows(sym: Tensor) -> Tensor:
    """Gray-encode and pack symbols (out,in) uint8 → (out, ceil(in/4)) uint8, MSB-first, zero padding."""
    if sym.ndim != 2 or sym.dtype != torch.uint8:
        raise ValueError(f"pack_rows expects uint8 (out, in), got {sym.dtype} {tuple(sym.shape)}")
    out, n = sym.shape
    nb = packed_row_bytes(n)
    g = torch.zeros((out, nb * 4), dtype=torch.uint8, device=sym.device)
    g[:, :n] = gray_encode(sym & 3)
    g = g.view(out, nb, 4)  # (out, nb, 4): symbol j of a byte sits at bits 7-2j, 6-2j
    return (g[..., 0] << 6) | (g[..., 1] << 4) | (g[..., 2] << 2) | g[..., 3]


def unpack_rows(packed: Tensor, in_features: int) -> Tensor:
    """Unpack (out, ceil(in/4)) uint8 → symbols (out, in) uint8 (Gray-decoded, padding dropped)."""
    if packed.ndim != 2 or packed.dtype != torch.uint8:
        raise ValueError(f"unpack_rows expects uint8 (out, nb), got {packed.dtype} {tuple(packed.shape)}")
    out, nb = packed.shape
    if nb != packed_row_bytes(in_features):
        raise ValueError(
            f"packed rows hold {nb} bytes, expected {packed_row_bytes(in_features)} for in={in_features}"
        )
    shifts = torch.tensor([6, 4, 2, 0], dtype=torch.uint8, device=packed.device)
    g = (packed[:, :, None] >> shifts) & 3  # (out, nb, 4)
    return gray_decode(g.reshape(out, nb * 4)[:, :in_features].contiguous())


def _level_table(device: torch.device) -> Tensor:
    """(256, 4) fp32: the levels s - 1.5 of the four symbols a packed byte holds, first symbol first."""
    codes = torch.arange(256, dtype=torch.uint8, device=device)
    shifts = torch.tensor([6, 4, 2, 0], dtype=torch.uint8, device=device)
    return gray_decode((codes[:, None] >> shifts) & 3).float() - 1.5


def dequant_packed(packed: Tensor, tau: Tensor, in_features: int) -> Tensor:
    """dequant(unpack_rows(packed, in), τ) in one table lookup: fp32 (out, in), the same bits."""
    out, nb = packed.shape
    if nb != packed_row_bytes(in_features):
        raise ValueError(
            f"packed rows hold {nb} bytes, expected {packed_row_bytes(in_features)} for in={in_features}"
        )
    levels = _level_table(packed.device)[packed.long()].view(out, nb * 4)[:, :in_features]  # (out, in)
    return levels * tau.float()[:, None]


def padding_is_zero(packed: Tensor, in_features: int) -> bool:
    """True when the padding symbols of every row (beyond in_features) are 0, as the format requires."""
    pad = packed_row_bytes(in_features) * 4 - in_features
    if pad == 0 or packed.shape[0] == 0:
        return True
    mask = (1 << (2 * pad)) - 1  # the low 2·pad bits of the last byte
    return bool(((packed[:, -1] & mask) == 0).all())
