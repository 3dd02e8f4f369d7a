"""QLinear: every kind's QAT forward, the tensor QAT switch (one compiled graph), autocast τ, learned scales."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golfmodel.quant.qlinear import Q2Linear, QLinear, make_linear
from golfmodel.quant.spec import QuantSpec


def _layer(label: str = "q2", out: int = 8, inp: int = 16, seed: int = 0) -> QLinear:
    torch.manual_seed(seed)
    return QLinear(inp, out, spec=QuantSpec.parse(label))


@pytest.mark.parametrize(
    "label", ["q2", "q2g8", "ternary", "int4g8", "int6", "fp8", "fp16", "fp32", "int4:learned"]
)
def test_qat_forward_uses_the_stored_weight(label: str) -> None:
    """QAT on (fp32): F.linear with kind.dequant(w, stored τ), the weight the packer writes."""
    layer = _layer(label)
    layer.set_qat(True)
    x = torch.randn(3, 16)
    w_q = layer.kind.dequant(layer.weight, layer.stored_scale())
    assert torch.equal(layer(x), F.linear(x, w_q))
    assert torch.equal(layer.effective_weight(), w_q)


def test_qat_state_is_a_buffer_not_in_the_state_dict() -> None:
    """set_qat fills the 0-dim bool buffer `qat_on`; it is not persistent (checkpoints keep their own flags)."""
    layer = _layer()
    layer.set_qat(True)
    assert layer.qat and bool(layer.qat_on) and layer.qat_on.ndim == 0
    assert "qat_on" not in layer.state_dict()


def test_switching_qat_does_not_recompile() -> None:
    """One compiled graph serves QAT off and on: flipping the buffer causes no recompile."""
    torch._dynamo.reset()
    layer = _layer()
    x = torch.randn(2, 16)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        off = compiled(x)
        layer.set_qat(True)
        on = compiled(x)
    assert torch.equal(off, F.linear(x, layer.weight)) and not torch.equal(on, off)


def test_bf16_autocast_scales_rows_by_the_exact_tau() -> None:
    """Per-row kinds under autocast compute (x ℓᵀ)·τ with τ in fp32, not a bf16-rounded ℓ·τ."""
    layer = _layer()
    layer.set_qat(True)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        lv = layer.kind.levels(layer.weight, layer.tau)
        want = (F.linear(x, lv) * layer.tau).to(torch.bfloat16)
    assert y.dtype == torch.bfloat16 and torch.equal(y, want)


def test_autocast_levels_path_gets_the_ste_gradient() -> None:
    """Under autocast the shadow weight still receives the masked STE gradient."""
    layer = _layer()
    layer.set_qat(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(torch.randn(4, 16)).float().sum().backward()
    assert layer.weight.grad is not None and bool((layer.weight.grad != 0).any())


def test_learned_scale_is_a_parameter_fitted_at_init() -> None:
    """scale="learned": τ is an nn.Parameter, initialised by the fit, trained with an LSQ gradient."""
    layer = _layer("int4:learned")
    assert isinstance(layer.tau, torch.nn.Parameter) and layer.scale_learned
    assert torch.equal(layer.tau.detach(), layer.kind.fit_scale(layer.weight.detach()))
    layer.set_qat(True)
    layer(torch.randn(5, 16)).pow(2).sum().backward()
    assert layer.tau.grad is not None and bool((layer.tau.grad != 0).any())


def test_learned_scale_is_fp16_rounded_in_the_forward() -> None:
    """A learned τ off the fp16 grid is used (and stored) fp16-rounded."""
    layer = _layer("int4:learned")
    with torch.no_grad():
        layer.tau.mul_(1.0001)
    layer.set_qat(True)
    x = torch.randn(2, 16)
    t16 = layer.tau.detach().half().float()
    assert torch.equal(layer(x), F.linear(x, layer.kind.dequant(layer.weight, t16)))
    assert torch.equal(layer.stored_scale(), t16)


def test_update_scale_is_one_lloyd_step() -> None:
    """update_scale sets τ to kind.lloyd(w, τ); learned scales are left to the optimiser."""
    layer = _layer("int4")
    with torch.no_grad():
        layer.tau.mul_(1.5)
    want = layer.kind.lloyd(layer.weight, layer.tau)
    layer.update_scale()
    assert torch.equal(layer.tau, want)
    learned = _layer("int4:learned")
    before = learned.tau.detach().clone()
    learned.update_scale()
    assert torch.equal(learned.tau.detach(), before)


@pytest.mark.parametrize("label", ["q2", "int4g8", "ternary", "fp8"])
def test_update_scale_compiles_without_graph_breaks(label: str) -> None:
    """The Lloyd update traces as one graph (fullgraph: no .item(), no sort, no host sync)."""
    torch._dynamo.reset()
    layer = _layer(label)
    with torch.no_grad():
        layer.tau.mul_(1.3)
    want = layer.kind.lloyd(layer.weight, layer.tau)
    torch.compile(layer.update_scale, backend="eager", fullgraph=True)()
    assert torch.equal(layer.tau, want)


def test_quick_scale_is_the_kinds_statistic() -> None:
    """quick_scale: q2 τ = fp16(0.996·row rms) (no sort); int4 = absmax/7."""
    layer = _layer()
    layer.quick_scale()
    assert torch.equal(layer.tau, layer.kind.round_scale(0.996 * layer.weight.detach().pow(2).mean(1).sqrt()))
    int4 = _layer("int4")
    int4.quick_scale()
    assert torch.equal(int4.tau, int4.kind.round_scale(int4.weight.detach().abs().amax(1) / 7))


def test_make_linear_builds_by_spec() -> None:
    """q2 → Q2Linear (old class kept), other kinds → QLinear, None → plain nn.Linear."""
    assert type(make_linear(QuantSpec(kind="q2"), 8, 4)) is Q2Linear
    assert type(make_linear(QuantSpec(kind="int", bits=6), 8, 4)) is QLinear
    assert type(make_linear(None, 8, 4)) is torch.nn.Linear
