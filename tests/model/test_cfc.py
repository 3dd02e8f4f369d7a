"""CfC mixer: the chunked log-space scan against the step-by-step reference, BOS resets, gate safety."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import golfmodel.model.cfc as cfc_mod
from golfmodel.model.cfc import CfCMixer, cfc_gates, cfc_scan, cfc_scan_reference


def _inputs(B: int, T: int, D: int, seed: int = 0, p_reset: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    a = F.softplus(torch.randn(B, T, D, generator=g))
    b = torch.randn(B, T, D, generator=g)
    dt = torch.exp(torch.empty(D).uniform_(math.log(0.01), 0.0, generator=g))
    reset = torch.rand(B, T, generator=g) < p_reset
    log_decay, c = cfc_gates(a, b, dt)
    return log_decay, c, reset


@pytest.mark.parametrize(("T", "chunk"), [(37, 1), (37, 3), (37, 8), (100, 64), (130, 64), (5, 16)])
def test_chunked_scan_matches_reference(T: int, chunk: int) -> None:
    """cfc_scan equals the token loop within 1e-5 in fp32, T not divisible by the chunk included."""
    log_decay, c, reset = _inputs(2, T, 6)
    h = cfc_scan(log_decay, c, reset, chunk)
    ref = cfc_scan_reference(log_decay, c, reset)
    assert h.dtype == torch.float32 and h.shape == ref.shape
    torch.testing.assert_close(h, ref, atol=1e-5, rtol=1e-5)


def test_scan_without_resets_matches_reference() -> None:
    """reset=None runs the plain recurrence across chunk boundaries."""
    log_decay, c, _ = _inputs(1, 50, 4)
    torch.testing.assert_close(cfc_scan(log_decay, c, None, 8), cfc_scan_reference(log_decay, c, None))


def test_scan_reset_forgets_everything_before_bos() -> None:
    """From a BOS on, the state does not depend on the inputs before it."""
    log_decay, c, _ = _inputs(1, 40, 4, p_reset=0.0)
    reset = torch.zeros(1, 40, dtype=torch.bool)
    reset[0, 21] = True
    c2 = c.clone()
    c2[:, :21] = torch.randn(1, 21, 4) * 10
    log_decay2 = log_decay.clone()
    log_decay2[:, :21] = -torch.rand(1, 21, 4)
    h1 = cfc_scan(log_decay, c, reset, 8)
    h2 = cfc_scan(log_decay2, c2, reset, 8)
    assert torch.equal(h1[:, 21:], h2[:, 21:])
    assert not torch.allclose(h1[:, :21], h2[:, :21])


def test_mixer_output_after_bos_ignores_the_previous_document() -> None:
    """CfCMixer outputs from the BOS on are unchanged when the tokens before it change."""
    torch.manual_seed(0)
    mixer = CfCMixer(8, chunk=4)
    torch.nn.init.normal_(mixer.w_out.weight)  # zero-init at start would make the test vacuous
    x = torch.randn(1, 30, 8)
    x2 = x.clone()
    x2[:, :13] = torch.randn(1, 13, 8)
    reset = torch.zeros(1, 30, dtype=torch.bool)
    reset[0, 13] = True
    y1, y2 = mixer(x, reset), mixer(x2, reset)
    torch.testing.assert_close(y1[:, 13:], y2[:, 13:], atol=0, rtol=0)
    assert not torch.allclose(y1[:, :13], y2[:, :13])


@pytest.mark.parametrize("a_value", [0.0, 1e-30, 1e-6])
def test_gates_are_safe_as_a_goes_to_zero(a_value: float) -> None:
    """a → 0 gives c → b·Δt and decay → 1, with finite gradients."""
    a = torch.full((3, 5), a_value, requires_grad=True)
    b = torch.randn(3, 5, requires_grad=True)
    dt = torch.full((5,), 0.5, requires_grad=True)
    log_decay, c = cfc_gates(a, b, dt)
    torch.testing.assert_close(c, b * 0.5, atol=1e-6, rtol=1e-6)
    assert torch.all(log_decay <= 0) and torch.all(log_decay > -1e-5)
    (c.sum() + log_decay.sum()).backward()
    for t in (a, b, dt):
        assert torch.isfinite(t.grad).all()
    # d(c + log_decay)/da at a = 0 is -b·Δt²/2 - Δt (series), not NaN
    torch.testing.assert_close(a.grad, -b.detach() * 0.125 - 0.5, atol=1e-5, rtol=1e-5)


def test_gates_are_safe_for_large_decay() -> None:
    """a·Δt = 1e4: decay 0, c = b/a, forward and gradients finite."""
    a = torch.full((1, 4, 3), 1e4, requires_grad=True)
    b = torch.randn(1, 4, 3, requires_grad=True)
    dt = torch.ones(3, requires_grad=True)
    log_decay, c = cfc_gates(a, b, dt)
    torch.testing.assert_close(c, b / 1e4)
    h = cfc_scan(log_decay, c, None, 2)
    assert torch.isfinite(h).all() and torch.exp(log_decay).max() == 0
    h.sum().backward()
    for t in (a, b, dt):
        assert torch.isfinite(t.grad).all()


def test_gates_match_closed_form_away_from_zero() -> None:
    """Both branches agree with b·(1 - exp(-aΔt))/a in float64 near the switch-over point."""
    a = torch.tensor([0.009, 0.0101, 0.5, 3.0], dtype=torch.float64)
    b = torch.ones(4, dtype=torch.float64)
    _, c = cfc_gates(a, b, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(c, (1 - torch.exp(-a)) / a, atol=1e-12, rtol=1e-10)


def test_scan_gradients_match_reference() -> None:
    """Gradients w.r.t. log-decay and input agree with the token loop on a tiny case (resets included)."""
    log_decay, c, reset = _inputs(2, 19, 3, seed=1, p_reset=0.15)
    grads = []
    for fn in (lambda ld, cc: cfc_scan(ld, cc, reset, 4), lambda ld, cc: cfc_scan_reference(ld, cc, reset)):
        ld = log_decay.clone().requires_grad_(True)
        cc = c.clone().requires_grad_(True)
        w = torch.linspace(-1, 1, 19 * 3).view(1, 19, 3)
        (fn(ld, cc) * w).sum().backward()
        grads.append((ld.grad, cc.grad))
    for g_chunked, g_ref in zip(*grads, strict=True):
        assert torch.isfinite(g_chunked).all()
        torch.testing.assert_close(g_chunked, g_ref, atol=1e-5, rtol=1e-5)


def test_scan_runs_in_fp32_under_bf16_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under bf16 autocast the gates and the scan see fp32 tensors; the output is finite."""
    seen: list[torch.dtype] = []
    real_scan = cfc_mod.cfc_scan

    def spy(log_decay, c, reset, chunk):  # type: ignore[no-untyped-def]
        seen.extend([log_decay.dtype, c.dtype])
        out = real_scan(log_decay, c, reset, chunk)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(cfc_mod, "cfc_scan", spy)
    mixer = CfCMixer(16, chunk=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(torch.randn(2, 9, 16), torch.zeros(2, 9, dtype=torch.bool))
    assert seen == [torch.float32] * 3
    assert torch.isfinite(y.float()).all()


def test_dt_init_is_log_uniform_in_range() -> None:
    """Δt = exp(log_dt) starts within [0.01, 1]."""
    dt = torch.exp(CfCMixer(256).log_dt.detach())
    assert dt.min() >= 0.01 - 1e-6 and dt.max() <= 1.0 + 1e-6
    assert dt.min() < 0.05 and dt.max() > 0.5


def test_scan_backward_passes_gradcheck() -> None:
    """The hand-written backward of the chunked scan matches finite differences in float64."""
    g = torch.Generator().manual_seed(2)
    ld = (-torch.rand(2, 11, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    c = torch.randn(2, 11, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: cfc_mod._ScanFn.apply(a, b, 4), (ld, c))
