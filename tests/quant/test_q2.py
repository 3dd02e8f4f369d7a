"""Q² quantiser: symbols, levels, Gray code, packing, masked STE and τ fitting (SPEC §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golfmodel.quant.q2 import (
    FP16_MIN_NORMAL,
    dequant,
    dequant_packed,
    fake_quant,
    fit_tau,
    gray_decode,
    gray_encode,
    pack_rows,
    padding_is_zero,
    round_tau,
    row_error,
    symbols,
    unpack_rows,
)


def _gaussian(rows: int, cols: int, seed: int = 0, std: float = 0.02) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * std


def test_symbols_thresholds_and_exact_ties() -> None:
    """s = [w>-τ]+[w>0]+[w>τ]: the thresholds are right-closed, so ties at -τ, 0, τ go to the lower symbol."""
    tau = torch.tensor([0.5])
    eps = 2.0**-10
    w = torch.tensor([[-1.0, -0.5 - eps, -0.5, -0.5 + eps, -eps, 0.0, eps, 0.5 - eps, 0.5, 0.5 + eps, 2.0]])
    expected = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert symbols(w, tau).tolist() == [expected]
    assert symbols(w, tau).dtype == torch.uint8


def test_dequant_levels() -> None:
    """Symbols 0..3 reconstruct to {-1.5, -0.5, +0.5, +1.5}·τ per row."""
    sym = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=torch.uint8)
    tau = torch.tensor([0.25, 2.0])
    assert dequant(sym, tau).tolist() == [[-0.375, -0.125, 0.125, 0.375], [3.0, 1.0, -1.0, -3.0]]


def test_dequant_is_exact_in_fp32() -> None:
    """(s - 1.5)·τ in fp32 equals the float64 product for fp16 τ (no rounding anywhere)."""
    tau = round_tau(torch.rand(512) * 10 + 1e-4)
    sym = torch.randint(0, 4, (512, 8), dtype=torch.uint8)
    exact = (sym.double() - 1.5) * tau.double()[:, None]
    assert torch.equal(dequant(sym, tau).double(), exact)


def test_gray_code_adjacent_symbols_differ_in_one_bit() -> None:
    """Codes of symbols s and s+1 differ in exactly one bit, and the code is a bijection on 0..3."""
    s = torch.arange(4, dtype=torch.uint8)
    g = gray_encode(s)
    assert sorted(g.tolist()) == [0, 1, 2, 3]
    flips = [bin(int(a) ^ int(b)).count("1") for a, b in zip(g[:-1], g[1:], strict=True)]
    assert flips == [1, 1, 1]


def test_gray_decode_inverts_encode() -> None:
    """gray_decode(gray_encode(s)) == s for all four symbols."""
    s = torch.arange(4, dtype=torch.uint8)
    assert torch.equal(gray_decode(gray_encode(s)), s)


def test_pack_layout_first_symbol_in_msbs() -> None:
    """Row [0,1,2,3] packs to Gray codes 00 01 11 10, first symbol in the top two bits: 0b00011110."""
    sym = torch.tensor([[0, 1, 2, 3]], dtype=torch.uint8)
    assert pack_rows(sym).tolist() == [[0b00011110]]


@pytest.mark.parametrize("cols", [1, 2, 3, 4, 5, 7, 13, 64, 67])
def test_pack_unpack_round_trip(cols: int) -> None:
    """unpack_rows(pack_rows(s)) == s, including widths not divisible by 4."""
    sym = torch.randint(0, 4, (5, cols), dtype=torch.uint8, generator=torch.Generator().manual_seed(cols))
    packed = pack_rows(sym)
    assert packed.shape == (5, (cols + 3) // 4)
    assert torch.equal(unpack_rows(packed, cols), sym)


@pytest.mark.parametrize("cols", [1, 6, 8, 11])
def test_dequant_packed_matches_unpack_then_dequant(cols: int) -> None:
    """The table-lookup decoder gives the same bits as unpack_rows followed by dequant."""
    sym = torch.randint(0, 4, (4, cols), dtype=torch.uint8, generator=torch.Generator().manual_seed(cols))
    tau = round_tau(torch.rand(4) + 0.1)
    assert torch.equal(dequant_packed(pack_rows(sym), tau, cols), dequant(sym, tau))


def test_pack_pads_rows_with_zero_symbols() -> None:
    """Padding symbols are 0; a byte with non-zero padding bits is detected."""
    sym = torch.full((3, 5), 3, dtype=torch.uint8)  # 5 symbols → 2 bytes, 3 padding symbols
    packed = pack_rows(sym)
    assert packed[:, 1].tolist() == [0b10_000000] * 3
    assert padding_is_zero(packed, 5)
    packed[1, 1] |= 0b01
    assert not padding_is_zero(packed, 5)


def test_fake_quant_forward_is_dequantised_weight() -> None:
    """fake_quant's forward equals dequant(symbols(w, τ), τ) bit for bit."""
    w = _gaussian(16, 40)
    tau = fit_tau(w)
    assert torch.equal(fake_quant(w, tau), dequant(symbols(w, tau), tau))


def test_ste_gradient_masked_to_three_tau() -> None:
    """The masked STE passes the gradient where |w| <= 3τ (boundary included) and zeroes it elsewhere."""
    tau = torch.tensor([0.5])
    w = torch.tensor([[-2.0, -1.5, -1.0, 0.0, 1.4, 1.5, 1.6]], requires_grad=True)
    fake_quant(w, tau).backward(torch.full((1, 7), 2.0))
    assert w.grad is not None
    assert w.grad.tolist() == [[0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0]]


def test_plain_ste_passes_every_gradient() -> None:
    """With masked=False the gradient passes through unchanged (the ablation)."""
    tau = torch.tensor([0.5])
    w = torch.tensor([[-2.0, 0.1, 9.0]], requires_grad=True)
    fake_quant(w, tau, masked=False).backward(torch.ones(1, 3))
    assert w.grad is not None
    assert w.grad.tolist() == [[1.0, 1.0, 1.0]]


def _lloyd_max_tau() -> float:
    """MSE-optimal τ/σ of the 4-level uniform grid for a unit Gaussian, by numerical integration."""
    x = np.linspace(-10.0, 10.0, 200_001)
    p = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi) * (x[1] - x[0])

    def err(t: float) -> float:
        s = (x > -t).astype(float) + (x > 0) + (x > t)
        return float((((x - (s - 1.5) * t) ** 2) * p).sum())

    grid = np.linspace(0.98, 1.02, 81)  # E(τ) is smooth for a density: one minimum, near 0.996
    return float(grid[np.argmin([err(t) for t in grid])])


def test_fit_tau_near_lloyd_max_on_gaussian_rows() -> None:
    """On Gaussian rows τ is within 5% of the numerically optimal multiple of σ (≈ 0.996σ)."""
    opt = _lloyd_max_tau()
    assert abs(opt - 0.996) < 0.002
    std = 0.02
    tau = fit_tau(_gaussian(16, 8192, std=std))  # long rows: the empirical optimum of a flat E(τ) is noisy
    ratio = tau / (opt * std)
    assert float(ratio.min()) > 0.95 and float(ratio.max()) < 1.05


def test_fit_tau_is_fp16_representable() -> None:
    """τ survives an fp16 round trip unchanged and is positive."""
    tau = fit_tau(_gaussian(32, 100, std=3.0))
    assert tau.dtype == torch.float32
    assert torch.equal(tau.half().float(), tau)
    assert bool((tau > 0).all())


def test_fit_tau_beats_multiplier_grid_search() -> None:
    """The exact solve's error is never above the 64-multiplier grid search's, row by row."""
    w = _gaussian(48, 96, seed=3)
    w[::5] = torch.distributions.StudentT(3.0).sample(w[::5].shape) * 0.02  # heavy-tailed rows too
    exact = row_error(w, fit_tau(w))
    grid = row_error(w, fit_tau(w, multipliers=torch.linspace(0.3, 2.0, 64)))
    assert bool((exact <= grid * (1 + 1e-12)).all())


def test_fit_tau_matches_dense_scan() -> None:
    """No fp16 τ on a dense scan around the fitted one gives a lower error (up to 1e-6 relative)."""
    w = _gaussian(8, 24, seed=5)
    tau = fit_tau(w)
    scan = round_tau(tau[:, None] * torch.linspace(0.5, 1.5, 4001)[None, :])  # (8, 4001)
    errs = torch.stack([row_error(w, scan[:, j]) for j in range(scan.shape[1])], 1)
    assert bool((row_error(w, tau) <= errs.min(1).values * (1 + 1e-6)).all())


def test_fit_tau_zero_row_gets_smallest_normal() -> None:
    """An all-zero row gets τ = the smallest normal fp16 (never 0)."""
    w = torch.zeros(2, 8)
    w[1] = 1.0
    tau = fit_tau(w)
    assert tau[0].item() == FP16_MIN_NORMAL
    assert tau[1].item() > 0


def test_fit_tau_weighted_lowers_weighted_error() -> None:
    """With column weights, the weighted error of the weighted fit is <= that of the unweighted fit."""
    w = _gaussian(32, 64, seed=7)
    a = torch.ones(64)
    a[:8] = 50.0  # a few high-energy input channels
    weighted = row_error(w, fit_tau(w, a), a)
    plain = row_error(w, fit_tau(w), a)
    assert bool((weighted <= plain * (1 + 1e-12)).all())
    assert bool((weighted < plain).any())


def test_fit_tau_rejects_bad_act_weight() -> None:
    """A negative or mis-shaped act_weight is an error, not a silent fix."""
    w = _gaussian(4, 8)
    with pytest.raises(ValueError, match="act_weight"):
        fit_tau(w, -torch.ones(8))
    with pytest.raises(ValueError, match="act_weight"):
        fit_tau(w, torch.ones(7))
