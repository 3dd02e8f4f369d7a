"""Per-row symmetric int8 (Q2BN kind 3)."""

from __future__ import annotations

import torch

from golfmodel.quant.int8 import dequantize_rows, quantize_rows


def test_round_trip_error_within_half_step() -> None:
    """|w - ŵ| <= scale/2 (plus the fp16 rounding of the scale) for every element."""
    w = torch.randn(16, 33) * torch.logspace(-3, 1, 16)[:, None]
    q, scale = quantize_rows(w)
    err = (dequantize_rows(q, scale) - w).abs()
    assert bool((err <= scale.float()[:, None] * 0.5 * (1 + 2e-3) + 1e-12).all())


def test_scale_is_fp16_and_positive_for_zero_rows() -> None:
    """Scales are fp16, > 0 even for an all-zero row, whose values stay 0."""
    w = torch.zeros(2, 5)
    w[1, 2] = -3.0
    q, scale = quantize_rows(w)
    assert scale.dtype == torch.float16
    assert bool((scale > 0).all())
    assert q[0].tolist() == [0] * 5


def test_range_is_symmetric() -> None:
    """Values stay in [-127, 127]; a row's largest |w| maps to ±127."""
    w = torch.randn(64, 50)
    q, _ = quantize_rows(w)
    assert int(q.min()) >= -127 and int(q.max()) <= 127
    assert bool((q.abs().amax(1) == 127).all())


def test_dequant_is_exact_in_fp32() -> None:
    """q·scale in fp32 equals the float64 product (int8 × fp16 fits in fp32's significand)."""
    q, scale = quantize_rows(torch.randn(32, 40) * 7)
    exact = q.double() * scale.double()[:, None]
    assert torch.equal(dequantize_rows(q, scale).double(), exact)
