"""Per-row symmetric int8 (Q2BN kind 3): embeddings, the bigram log-prior, non-Q² matrices.

    scale_r = fp16(max_j |w_rj| / 127)       clamped to [2^-24, 65504] (positive, finite)
    q_rj    = clip(round(w_rj / scale_r), -127, 127)
    ŵ_rj    = q_rj · scale_r                  exact in fp32 (8-bit × 11-bit significands)

The challenge baseline's int8+zlib export (percentile clipping, a 1/127 scale floor) lives in
`golfmodel/q2bn/int8zlib.py`; this is the plain max-abs variant the Q2BN format stores.
"""

from __future__ import annotations

import torch
from torch import Tensor

SCALE_MIN = 2.0**-24  # smallest positive fp16 (subnormal): keeps scales > 0 for all-zero rows
SCALE_MAX = 65504.0


def quantize_rows(w: Tensor) -> tuple[Tensor, Tensor]:
    """w (out,in) float → (q int8 (out,in), scale fp16 (out,))."""
    if w.ndim != 2:
        raise ValueError(f"quantize_rows expects a 2-D tensor, got shape {tuple(w.shape)}")
    w = w.detach().float()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("quantize_rows: tensor has non-finite values")
    amax = w.abs().amax(1) if w.shape[1] > 0 else torch.zeros(w.shape[0], device=w.device)
    scale = (amax / 127.0).clamp(SCALE_MIN, SCALE_MAX).half()  # (out,)
    q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)  # (out, in)
    return q, scale


def dequantize_rows(q: Tensor, scale: Tensor) -> Tensor:
    """q (out,in) int8, scale (out,) fp16 → fp32 (out,in)."""
    return q.float() * scale.float()[:, None]


def int8_view(w: Tensor) -> Tensor:
    """w rounded through int8 rows, fp32: what a kind-3 record reproduces."""
    return dequantize_rows(*quantize_rows(w))
