"""RMSNorm, RoPE, the MLPs and the GQA mixer."""

from __future__ import annotations

import torch

from golfmodel.model.gqa import GQAMixer
from golfmodel.model.layers import RMSNorm, Rotary
from golfmodel.quant.q2linear import Q2Linear


def test_rmsnorm_gives_unit_rms_times_gain() -> None:
    """Output RMS over the last dim equals the gain (init 1)."""
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.fill_(2.0)
    y = norm(torch.randn(3, 5, 16) * 7)
    torch.testing.assert_close(y.pow(2).mean(-1).sqrt(), torch.full((3, 5), 2.0), atol=1e-3, rtol=1e-3)


def test_rope_scores_depend_only_on_relative_position() -> None:
    """<rot(q, i), rot(k, j)> is the same for every pair with the same offset i - j."""
    rope = Rotary(8, max_seq_len=32)
    q = torch.randn(8).expand(1, 1, 32, 8)
    k = torch.randn(8).expand(1, 1, 32, 8)
    scores = (rope(q) @ rope(k).transpose(-1, -2))[0, 0]  # (32, 32)
    for offset in (0, 3, 10):
        diag = torch.diagonal(scores, offset=-offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-4, rtol=1e-4)


def test_rope_beyond_cached_length_matches_a_longer_cache() -> None:
    """Positions past max_seq_len are computed on the fly, equal to a table built long enough."""
    x = torch.randn(1, 2, 20, 8)
    torch.testing.assert_close(Rotary(8, max_seq_len=8)(x), Rotary(8, max_seq_len=32)(x))


def test_rope_tables_are_not_stored() -> None:
    """The cos/sin tables are non-persistent buffers (absent from the state dict)."""
    assert Rotary(8, max_seq_len=16).state_dict() == {}


def test_gqa_is_causal() -> None:
    """Changing tokens after position t leaves the outputs up to t unchanged."""
    torch.manual_seed(0)
    attn = GQAMixer(32, 4, 2, max_seq_len=16, linear_cls=Q2Linear)
    torch.nn.init.normal_(attn.o.weight)
    x = torch.randn(1, 12, 32)
    x2 = x.clone()
    x2[:, 7:] = torch.randn(1, 5, 32)
    y1, y2 = attn(x), attn(x2)
    torch.testing.assert_close(y1[:, :7], y2[:, :7])
    assert not torch.allclose(y1[:, 7:], y2[:, 7:])


def test_gqa_shares_kv_heads() -> None:
    """K and V project to n_kv_heads x head_dim; Q and O to d_model."""
    attn = GQAMixer(64, 8, 2, max_seq_len=8)
    assert attn.q.weight.shape == (64, 64) and attn.o.weight.shape == (64, 64)
    assert attn.k.weight.shape == (16, 64) and attn.v.weight.shape == (16, 64)
