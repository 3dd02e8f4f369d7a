"""HybridLM (q2-geode) and GPT (gpt-int8): shapes, quantised layers, QAT groups, soft-cap, bigram prior."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import nn

from golfmodel.model import ModelConfig, build_model
from golfmodel.model.cfc import CfCMixer
from golfmodel.model.gpt import GPT
from golfmodel.model.gqa import GQAMixer
from golfmodel.model.hybrid import HybridLM
from golfmodel.quant.q2linear import Q2Linear


def test_forward_returns_fp32_logits(q2_model: nn.Module, tokens: torch.Tensor) -> None:
    """forward(idx (B, T)) -> (B, T, V) float32, finite."""
    logits = q2_model(tokens)
    assert logits.shape == (2, 40, 64) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_build_model_picks_the_arm(q2_model: nn.Module, tiny_q2: ModelConfig, tiny_gpt: ModelConfig) -> None:
    """q2-geode builds a HybridLM, gpt-int8 a GPT; both keep their config."""
    gpt = build_model(tiny_gpt)
    assert isinstance(q2_model, HybridLM) and q2_model.config == tiny_q2
    assert isinstance(gpt, GPT) and gpt.config == tiny_gpt


def test_blocks_follow_the_pattern(q2_model: nn.Module) -> None:
    """Each group is G, C, C, C: one GQA mixer then three CfC mixers."""
    assert len(q2_model.groups) == 2
    for group in q2_model.groups:
        assert [type(block.mixer) for block in group] == [GQAMixer, CfCMixer, CfCMixer, CfCMixer]


def test_all_block_linears_are_q2linear(q2_model: nn.Module) -> None:
    """Every Linear inside the blocks is a Q2Linear; the (tied) head is the only plain Linear."""
    assert all(isinstance(m, Q2Linear) for m in q2_model.groups.modules() if isinstance(m, nn.Linear))
    plain = [
        n for n, m in q2_model.named_modules() if isinstance(m, nn.Linear) and not isinstance(m, Q2Linear)
    ]
    assert plain == ["lm_head"]


def test_qat_groups_list_each_groups_q2linears_shallowest_first(q2_model: nn.Module) -> None:
    """qat_groups()[i] holds exactly the Q2Linear layers of Geode group i, in order."""
    groups = q2_model.qat_groups()
    assert len(groups) == 2
    for i, layers in enumerate(groups):
        expected = [m for m in q2_model.groups[i].modules() if isinstance(m, Q2Linear)]
        assert [id(m) for m in layers] == [id(m) for m in expected]
        assert len(layers) == 4 + 3 * 3 + 4 * 3  # q/k/v/o + 3 CfC x (w1, w2, w_out) + 4 SwiGLU x 3


def test_blocks_start_as_the_identity(
    q2_model: nn.Module, tiny_q2: ModelConfig, tokens: torch.Tensor
) -> None:
    """Zero-initialised output projections: at init the logits are head(norm(norm(embedding)))."""
    x = torch.nn.functional.rms_norm(q2_model.tok_emb(tokens), (tiny_q2.d_model,))
    logits = q2_model.lm_head(q2_model.final_norm(x))
    expected = tiny_q2.logit_softcap * torch.tanh(logits / tiny_q2.logit_softcap)
    torch.testing.assert_close(q2_model(tokens), expected)  # the bigram table is still zero


def test_head_is_tied_to_the_embedding(q2_model: nn.Module) -> None:
    """The head weight is the embedding weight (one tensor)."""
    assert q2_model.lm_head.weight is q2_model.tok_emb.weight


def test_untied_head_is_a_separate_zero_init_matrix(tiny_q2: ModelConfig) -> None:
    """tie_embeddings=False gives its own (V, d) head."""
    model = build_model(dataclasses.replace(tiny_q2, tie_embeddings=False, depth=1))
    assert model.lm_head.weight is not model.tok_emb.weight
    assert torch.count_nonzero(model.lm_head.weight) == 0


def test_logits_are_soft_capped(tiny_q2: ModelConfig, tokens: torch.Tensor) -> None:
    """|logits| < logit_softcap (no bigram prior) even with a huge head."""
    model = build_model(dataclasses.replace(tiny_q2, bigram_prior=False, logit_softcap=5.0, depth=1))
    with torch.no_grad():
        model.tok_emb.weight.mul_(1e4)
    logits = model(tokens)
    assert logits.abs().max() <= 5.0 and logits.abs().max() > 4.9


def test_bigram_prior_is_added_by_previous_token(tiny_q2: ModelConfig, tokens: torch.Tensor) -> None:
    """logits(with table) - logits(zero table) == table[idx]; the table is in the state dict."""
    model = build_model(dataclasses.replace(tiny_q2, depth=1))
    base = model(tokens)
    table = torch.log_softmax(torch.randn(64, 64), dim=1)
    model.set_bigram_logprior(table)
    torch.testing.assert_close(model(tokens) - base, table[tokens])
    assert torch.equal(model.state_dict()["bigram_logprior"], table)


def test_set_bigram_logprior_rejects_a_wrong_shape(q2_model: nn.Module) -> None:
    """A table that is not (V, V) is refused."""
    with pytest.raises(ValueError, match="shape"):
        q2_model.set_bigram_logprior(torch.zeros(63, 64))


def test_set_bigram_logprior_needs_the_option(tiny_gpt: ModelConfig) -> None:
    """Without bigram_prior there is no table to set."""
    with pytest.raises(ValueError, match="bigram_prior"):
        build_model(tiny_gpt).set_bigram_logprior(torch.zeros(64, 64))


@pytest.mark.parametrize("arm", ["q2-geode", "gpt-int8"])
def test_model_is_causal(
    arm: str, q2_mixing: nn.Module, tiny_gpt: ModelConfig, tokens: torch.Tensor, randomise: Callable
) -> None:
    """Logits up to position t do not change when later tokens do."""
    model = q2_mixing if arm == "q2-geode" else randomise(build_model(tiny_gpt))
    other = tokens.clone()
    other[:, 25:] = (other[:, 25:] + 7) % 60 + 4
    a, b = model(tokens), model(other)
    torch.testing.assert_close(a[:, :25], b[:, :25])
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_qat_forward_runs_and_differs(
    tiny_q2: ModelConfig, tokens: torch.Tensor, randomise: Callable
) -> None:
    """Switching every group to QAT changes the logits (quantised weights) and keeps them finite."""
    model = randomise(build_model(tiny_q2))
    with torch.no_grad():
        fp = model(tokens)
    for layers in model.qat_groups():
        for layer in layers:
            layer.refresh_tau()
            layer.set_qat(True)
    with torch.no_grad():
        q = model(tokens)
    assert torch.isfinite(q).all() and not torch.allclose(fp, q)


def test_backward_gives_every_parameter_a_finite_gradient(q2_mixing: nn.Module, tokens: torch.Tensor) -> None:
    """One backward pass reaches every parameter (embedding included) with finite gradients."""
    q2_mixing.zero_grad()
    q2_mixing(tokens).logsumexp(-1).mean().backward()
    for name, p in q2_mixing.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert q2_mixing.tok_emb.weight.grad.abs().sum() > 0
    q2_mixing.zero_grad()


def test_all_attention_ablation_builds(tiny_q2: ModelConfig, tokens: torch.Tensor) -> None:
    """pattern "GGGG" has no CfC mixer and runs."""
    model = build_model(dataclasses.replace(tiny_q2, pattern="GGGG", depth=1))
    assert not any(isinstance(m, CfCMixer) for m in model.modules())
    assert model(tokens).shape == (2, 40, 64)


def test_sub_norm_puts_an_rmsnorm_before_each_output_projection(
    tiny_q2: ModelConfig, tokens: torch.Tensor
) -> None:
    """sub_norm adds a gain vector per output projection (o, W_out, down): hidden or d wide."""
    plain = build_model(tiny_q2)
    sub = build_model(dataclasses.replace(tiny_q2, sub_norm=True))
    added = {n: p.numel() for n, p in sub.named_parameters() if ".sub_norm." in n}
    blocks = len(tiny_q2.pattern) * tiny_q2.depth
    assert len(added) == 2 * blocks  # one in the mixer, one in the MLP of every block
    extra = sum(p.numel() for p in sub.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == sum(added.values()) == blocks * (tiny_q2.d_model + tiny_q2.mlp_hidden)
    assert sub(tokens).shape == plain(tokens).shape


def test_runs_under_bf16_autocast(q2_mixing: nn.Module, tokens: torch.Tensor) -> None:
    """Under CPU bf16 autocast the logits are still fp32, finite and close to the fp32 ones."""
    with torch.no_grad():
        ref = q2_mixing(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = q2_mixing(tokens)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, ref, atol=0.1, rtol=0.05)


def test_gpt_has_no_qat_groups_and_plain_linears(tiny_gpt: ModelConfig, tokens: torch.Tensor) -> None:
    """The int8 arm trains without QAT: no Q2Linear, qat_groups() == [], tied head."""
    model = build_model(tiny_gpt)
    assert model.qat_groups() == []
    assert not any(isinstance(m, Q2Linear) for m in model.modules())
    assert model.lm_head.weight is model.tok_emb.weight
    assert model(tokens).shape == (2, 40, 64)


def test_models_build_on_the_meta_device(tiny_q2: ModelConfig, tiny_gpt: ModelConfig) -> None:
    """Shapes-only construction works (the budget solver relies on it)."""
    with torch.device("meta"):
        for cfg in (tiny_q2, tiny_gpt):
            assert all(p.is_meta for p in build_model(cfg).parameters())
