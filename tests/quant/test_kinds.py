"""Storage kinds: grids, exact fits, Lloyd updates, packing, byte counts, STE and LSQ gradients."""

from __future__ import annotations

import pytest
import torch

from golfmodel.quant.bitpack import pack_bits, pack_trits, unpack_bits, unpack_trits
from golfmodel.quant.int8 import quantize_rows
from golfmodel.quant.kinds import kind_for
from golfmodel.quant.q2 import dequant, fit_tau, pack_rows, symbols
from golfmodel.quant.spec import QuantSpec

SPECS = [
    "q2",
    "q2g8",
    "ternary",
    "ternary:absmean",
    "int3",
    "int4g8",
    "int5",
    "int6g16",
    "int8:absmax",
    "fp8",
    "fp8g8",
    "fp16",
    "fp32",
]


def _w(out: int = 6, inp: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g) * 0.05


def _mse(kind, w, t) -> float:
    return float((kind.dequant(w, t) - w).double().pow(2).sum())


def test_q2_kind_is_todays_grid() -> None:
    """q2 per row: fit = fit_tau, ŵ = dequant(symbols), payload = fp16 τ + Gray-packed symbols."""
    kind, w = kind_for(QuantSpec(kind="q2")), _w()
    t = kind.fit_scale(w)
    assert torch.equal(t, fit_tau(w))
    assert torch.equal(kind.dequant(w, t), dequant(symbols(w, t), t))
    payload = kind.encode(w, t)
    assert payload == t.half().numpy().tobytes() + pack_rows(symbols(w, t)).numpy().tobytes()


def test_int8_absmax_is_todays_int8_rows() -> None:
    """int8 absmax per row equals quantize_rows (the embedding's v1 kind 3) bit for bit."""
    kind, w = kind_for(QuantSpec(kind="int", bits=8, scale="absmax")), _w() * 40
    q, scale = quantize_rows(w)
    t = kind.fit_scale(w)
    assert torch.equal(t, scale.float())
    assert kind.encode(w, t) == scale.numpy().tobytes() + q.numpy().tobytes()


@pytest.mark.parametrize("label", SPECS)
def test_every_kind_round_trips_its_bytes(label: str) -> None:
    """decode(encode(w, t)) gives exactly dequant(w, t), and the payload is stored_bytes long."""
    kind, w = kind_for(QuantSpec.parse(label)), _w(5, 40 if "g" not in label else 32)
    t = kind.fit_scale(w)
    payload = kind.encode(w, t)
    assert len(payload) == kind.stored_bytes(tuple(w.shape))
    w_hat, t_back = kind.decode(payload, tuple(w.shape))
    assert torch.equal(w_hat, kind.dequant(w, t))
    assert kind.payload_fault(payload, tuple(w.shape)) is None
    if kind.spec.has_scale:
        assert torch.equal(t_back, t)


@pytest.mark.parametrize("label", ["q2", "q2g8", "ternary", "int4", "int6g16", "fp8"])
def test_lloyd_step_never_increases_the_error(label: str) -> None:
    """One Lloyd step from any start does not increase the squared error (assignment kept, t optimal)."""
    kind, w = kind_for(QuantSpec.parse(label)), _w(8, 64, seed=3)
    t = kind.stat_scale(w) * 1.7  # a poor start
    t = kind.round_scale(t)
    new = kind.lloyd(w, t)
    assert _mse(kind, w, new) <= _mse(kind, w, t) * (1 + 1e-6)


def test_lloyd_step_is_the_least_squares_scale() -> None:
    """Lloyd's τ is Σ w·ℓ / Σ ℓ² per row for the levels of the old τ (then fp16-rounded)."""
    kind, w = kind_for(QuantSpec(kind="q2")), _w()
    t = kind.fit_scale(w) * 1.25
    lv = kind.levels(w, t)
    want = kind.round_scale((w * lv).sum(1) / (lv * lv).sum(1))
    assert torch.equal(kind.lloyd(w, t), want)


def test_fitted_int_scale_beats_absmax() -> None:
    """int4 "fit" (Lloyd from absmax) has a lower error than the absmax statistic alone."""
    kind, w = kind_for(QuantSpec(kind="int", bits=4)), _w(8, 256)
    assert _mse(kind, w, kind.fit_scale(w)) < _mse(kind, w, kind.stat_scale(w))


def test_group_scales_have_one_value_per_group() -> None:
    """Per-group specs hold (out, in/g) scales; a group size must divide the row."""
    kind = kind_for(QuantSpec(kind="int", bits=4, group_size=8))
    assert kind.fit_scale(_w(4, 32)).shape == (4, 4)
    with pytest.raises(ValueError, match="group_size"):
        kind.fit_scale(_w(4, 30))


def test_payload_fault_names_bad_values() -> None:
    """A zero scale, non-zero padding bits or the int code -2^(b-1) are reported."""
    kind, w = kind_for(QuantSpec(kind="int", bits=4)), _w(2, 5)  # 5 x 4 bits = 3 bytes a row, 4 padding bits
    good = kind.encode(w, kind.fit_scale(w))
    assert kind.payload_fault(good, (2, 5)) is None
    assert "scale" in kind.payload_fault(bytes(2) + good[2:], (2, 5))
    pad = bytearray(good)
    pad[4 + 2] |= 0x01  # row 0's last byte: its low 4 bits are padding
    assert "padding" in kind.payload_fault(bytes(pad), (2, 5))
    neg = bytearray(good)
    neg[4] = (neg[4] & 0x0F) | 0x80  # row 0's first code = 0b1000 = -8
    assert "int4" in kind.payload_fault(bytes(neg), (2, 5))


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 7, 8])
def test_bit_packing_round_trips(bits: int) -> None:
    """unpack_bits(pack_bits(c)) == c for ragged rows."""
    codes = torch.randint(0, 1 << bits, (3, 13), dtype=torch.uint8)
    assert torch.equal(unpack_bits(pack_bits(codes, bits), 13, bits), codes)


def test_trit_packing_round_trips() -> None:
    """5 trits per byte, first trit most significant; ragged rows padded with 0."""
    codes = torch.randint(0, 3, (4, 12), dtype=torch.uint8)
    packed = pack_trits(codes)
    assert packed.shape == (4, 3)
    assert torch.equal(unpack_trits(packed, 12), codes)


def test_fake_quant_ste_masks_far_weights() -> None:
    """q2's STE passes the gradient where |w| <= 3τ and zeroes it beyond (SPEC §4)."""
    kind = kind_for(QuantSpec(kind="q2"))
    w = _w().requires_grad_(True)
    t = kind.fit_scale(w.detach())
    with torch.no_grad():
        w[0, 0] = 10 * t[0]
    kind.fake_quant(w, t).sum().backward()
    assert w.grad[0, 0] == 0 and bool((w.grad[1:] == 1).all())


def test_lsq_scale_gradient_matches_its_formula() -> None:
    """∂Σŵ/∂t per row = Σ (ℓ − w/t) inside the grid + Σ ℓ where the level saturates (LSQ)."""
    kind, w = kind_for(QuantSpec(kind="int", bits=3)), _w(3, 16)
    t = kind.fit_scale(w).clone().requires_grad_(True)
    kind.fake_quant(w, t).sum().backward()
    u, lv = w / t.detach()[:, None], kind.levels(w, t.detach())
    want = torch.where(u.abs() <= kind.sat, lv - u, lv).sum(1)
    assert torch.allclose(t.grad, want, atol=1e-5)
