"""Muon: Newton–Schulz orthogonalisation, the update rule, and which parameters it gets."""

from __future__ import annotations

import torch

from golfmodel.model import build_model
from golfmodel.model.config import ModelConfig
from golfmodel.quant.q2linear import Q2Linear
from golfmodel.train.config import OptimConfig
from golfmodel.train.muon import Muon, build_optimizers, newton_schulz, split_params


def test_newton_schulz_pushes_singular_values_near_one() -> None:
    """After 5 quintic steps every singular value of a random matrix (tall or wide, any scale) lies in [0.6, 1.3]."""
    g = torch.Generator().manual_seed(0)
    for shape in [(64, 32), (32, 96)]:
        m = 1e3 * torch.randn(*shape, generator=g)
        assert torch.linalg.svdvals(m / m.norm()).max() < 0.5  # far from orthogonal before
        sv = torch.linalg.svdvals(newton_schulz(m, 5))
        assert sv.min() > 0.6 and sv.max() < 1.3, sv


def test_muon_step_is_scaled_orthogonalised_nesterov_momentum() -> None:
    """Two steps equal the reference rule: buf = m*buf + g; u = NS(g + m*buf); w -= lr*max(1,r/c)^0.5*u."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(48, 16))
    ref = w.detach().clone()
    opt = Muon([w], lr=0.1, momentum=0.9)
    buf = torch.zeros_like(ref)
    for _ in range(2):
        g = torch.randn_like(ref)
        w.grad = g.clone()
        opt.step()
        buf = 0.9 * buf + g
        ref -= 0.1 * (48 / 16) ** 0.5 * newton_schulz(g + 0.9 * buf, 5)
    torch.testing.assert_close(w.detach(), ref)


def test_block_matrices_go_to_muon_and_the_rest_to_adamw() -> None:
    """Q2Linear weights → Muon; the tied embedding → AdamW (decay group, once); gains, log_dt → AdamW (no decay)."""
    cfg = ModelConfig(
        arm="q2-geode", vocab_size=64, d_model=32, depth=1, n_heads=2, n_kv_heads=1, mlp_mult=2.0
    )
    model = build_model(cfg)
    muon, decay, no_decay = split_params(model)
    q2 = {id(m.weight) for m in model.modules() if isinstance(m, Q2Linear)}
    assert {id(p) for p in muon} == q2
    assert [id(p) for p in decay] == [id(model.tok_emb.weight)]
    assert all(p.ndim < 2 for p in no_decay) and len(no_decay) > 0
    n_all = len({id(p) for p in model.parameters()})
    assert len(muon) + len(decay) + len(no_decay) == n_all
    opts = build_optimizers(model, OptimConfig())
    assert [type(o).__name__ for o in opts] == ["Muon", "AdamW"]
