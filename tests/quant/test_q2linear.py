"""Q2Linear: shadow weight, τ buffer, QAT switch, masked STE and autocast (SPEC §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from golfmodel.quant.q2 import FP16_MIN_NORMAL, dequant, fit_tau, symbols
from golfmodel.quant.q2linear import Q2Linear, no_tau_init


def _layer(out: int = 12, inp: int = 20, seed: int = 0, **kw: bool) -> Q2Linear:
    torch.manual_seed(seed)
    return Q2Linear(inp, out, **kw)


def test_tau_fitted_at_construction() -> None:
    """τ is fit_tau(weight) as soon as the layer exists."""
    layer = _layer()
    assert torch.equal(layer.tau, fit_tau(layer.weight.detach()))


def test_tau_is_a_persistent_buffer() -> None:
    """τ is saved in the state dict (checkpoints carry it) and is not a parameter."""
    layer = _layer()
    assert "tau" in layer.state_dict()
    assert all(name != "tau" for name, _ in layer.named_parameters())


def test_forward_without_qat_is_plain_linear() -> None:
    """qat off: the forward is F.linear with the shadow weight."""
    layer = _layer()
    x = torch.randn(3, 20)
    assert torch.equal(layer(x), F.linear(x, layer.weight))


def test_forward_with_qat_uses_dequantised_weight() -> None:
    """qat on: the forward is F.linear with dequant(symbols(w, τ), τ)."""
    layer = _layer()
    layer.set_qat(True)
    x = torch.randn(3, 20)
    w_q = dequant(symbols(layer.weight.detach(), layer.tau), layer.tau)
    assert torch.equal(layer(x), F.linear(x, w_q))
    assert torch.equal(layer.effective_weight(), w_q)


def test_qat_backward_reaches_shadow_weight_through_mask() -> None:
    """Gradients flow to the shadow weight, zeroed where |w| > 3τ."""
    layer = _layer()
    with torch.no_grad():
        layer.weight[0, 0] = 10.0 * layer.tau[0]  # far outside the STE window
    layer.set_qat(True)
    layer(torch.randn(4, 20)).sum().backward()
    grad = layer.weight.grad
    assert grad is not None
    assert grad[0, 0].item() == 0.0
    assert bool((grad[1:] != 0).any())


def test_plain_ste_option_keeps_outlier_gradients() -> None:
    """ste_masked=False passes gradients even where |w| > 3τ."""
    layer = _layer(ste_masked=False)
    with torch.no_grad():
        layer.weight[0, 0] = 10.0 * layer.tau[0]
    layer.set_qat(True)
    x = torch.ones(1, 20)
    layer(x).sum().backward()
    assert layer.weight.grad is not None
    assert layer.weight.grad[0, 0].item() == 1.0


def test_refresh_tau_updates_buffer_in_place() -> None:
    """refresh_tau refits τ to the new weight without replacing the buffer object."""
    layer = _layer()
    before = layer.tau
    with torch.no_grad():
        layer.weight.mul_(3.0)
    layer.refresh_tau()
    assert layer.tau is before
    assert torch.equal(layer.tau, fit_tau(layer.weight.detach()))


def test_refresh_tau_with_activation_weights() -> None:
    """refresh_tau(act_weight) equals fit_tau with the same column weights."""
    layer = _layer()
    a = torch.rand(20)
    layer.refresh_tau(a)
    assert torch.equal(layer.tau, fit_tau(layer.weight.detach(), a))


def test_reset_parameters_refits_tau() -> None:
    """Re-initialising the weight refits τ to it."""
    layer = _layer()
    torch.manual_seed(123)
    layer.reset_parameters()
    assert torch.equal(layer.tau, fit_tau(layer.weight.detach()))


def test_quantized_state_matches_effective_weight() -> None:
    """quantized_state() gives fp16 τ and symbols that dequantise to the QAT weight."""
    layer = _layer()
    layer.set_qat(True)
    sym, tau16 = layer.quantized_state()
    assert sym.dtype == torch.uint8 and tau16.dtype == torch.float16
    assert torch.equal(dequant(sym, tau16), layer.effective_weight())


def test_dequantised_weight_requantises_to_itself() -> None:
    """Quantising the dequantised weight with the same τ is the identity (so loading is QAT-agnostic)."""
    layer = _layer()
    layer.set_qat(True)
    w_q = layer.effective_weight()
    with torch.no_grad():
        layer.weight.copy_(w_q)
    assert torch.equal(layer.effective_weight(), w_q)


def test_bf16_autocast_forward() -> None:
    """Under bf16 autocast the QAT forward runs and returns bf16; the backward reaches the fp32 shadow."""
    layer = _layer()
    layer.set_qat(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(2, 20))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32


def test_bias_is_supported() -> None:
    """bias=True adds the bias in both modes."""
    layer = _layer(bias=True)
    x = torch.randn(2, 20)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert "qat=False" in repr(layer)


def test_no_tau_init_skips_fitting_until_asked() -> None:
    """Inside no_tau_init() τ is a positive placeholder; refresh_tau still fits; outside, init fits again."""
    with no_tau_init():
        layer = _layer()
        assert bool((layer.tau == FP16_MIN_NORMAL).all())
        layer.refresh_tau()
        assert torch.equal(layer.tau, fit_tau(layer.weight.detach()))
    assert torch.equal(_layer().tau, fit_tau(_layer().weight.detach()))


def test_tau_method_std_uses_multiple_of_row_std() -> None:
    """tau_method="std" sets τ to tau_std_mult·row std (fp16-rounded), the naive recipe's rule."""
    import torch

    from golfmodel.quant.q2linear import Q2Linear

    torch.manual_seed(0)
    layer = Q2Linear(64, 8)
    layer.tau_method, layer.tau_std_mult = "std", 0.98
    layer.refresh_tau()
    expected = (0.98 * layer.weight.detach().std(dim=1)).half().float()
    assert torch.equal(layer.tau, expected)
