"""ModelConfig validation, (de)serialisation, presets and the head-shape rule."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from golfmodel.model import ModelConfig, build_model, head_shape, naive_baseline

BASE = dict(arm="q2-geode", vocab_size=64, d_model=32, depth=1, n_heads=4, n_kv_heads=2, mlp_mult=2.0)


def test_config_round_trips_through_dict() -> None:
    """from_dict(to_dict()) gives an equal config."""
    cfg = ModelConfig(**BASE, bigram_prior=True, pattern="GGCC")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_rejects_unknown_keys() -> None:
    """An unknown key is an error that names it."""
    with pytest.raises(ValueError, match="n_layers"):
        ModelConfig.from_dict({**BASE, "n_layers": 3})


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"arm": "mamba"}, "arm"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"d_model": 30}, "n_heads"),  # 30 % 4 != 0
        ({"n_kv_heads": 3}, "n_kv_heads"),  # 4 % 3 != 0
        ({"d_model": 12}, "n_heads"),  # head_dim 3 is odd (RoPE)
        ({"n_kv_heads": 4}, "n_kv_heads"),  # q2-geode GQA needs n_kv < n_heads
        ({"pattern": "GXC"}, "pattern"),
        ({"mlp_mult": -1.0}, "mlp_mult"),
        ({"cfc_chunk": 0}, "cfc_chunk"),
        ({"bigram_prior": "yes"}, "bigram_prior"),
    ],
)
def test_invalid_field_raises_naming_it(override: dict, field: str) -> None:
    """Each invalid value raises ValueError whose message starts with the field's name."""
    with pytest.raises(ValueError, match=f"^{field}"):
        ModelConfig(**{**BASE, **override})


def test_config_is_frozen() -> None:
    """Fields cannot be reassigned."""
    cfg = ModelConfig(**BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 64  # type: ignore[misc]


def test_gpt_arm_allows_multi_head_attention() -> None:
    """The n_kv < n_heads rule is the q2-geode GQA's; gpt-int8 may use n_kv == n_heads."""
    cfg = ModelConfig(**{**BASE, "arm": "gpt-int8", "n_kv_heads": 4})
    assert cfg.n_kv_heads == cfg.n_heads


def test_naive_baseline_has_the_challenge_shape() -> None:
    """9 x 512, 8/4 heads, relu² x2, tied: the baseline's 17,059,912 parameters."""
    cfg = naive_baseline()
    with torch.device("meta"):
        model = build_model(cfg)
    assert (cfg.depth, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.mlp_hidden) == (9, 512, 8, 4, 1024)
    assert sum(p.numel() for p in model.parameters()) == 17_059_912


def test_mlp_hidden_rounds_swiglu_to_16() -> None:
    """SwiGLU hidden = 8/3·d rounded to a multiple of 16."""
    cfg = ModelConfig(**{**BASE, "d_model": 576, "n_heads": 8, "n_kv_heads": 4, "mlp_mult": 8 / 3})
    assert cfg.mlp_hidden == 1536


@pytest.mark.parametrize("d", [32, 48, 64, 144, 256, 512, 576, 640, 768, 1024])
def test_head_shape_gives_even_heads_of_multiple_of_8(d: int) -> None:
    """n_heads even, n_kv = n_heads/2, head_dim % 8 == 0 and valid for a q2-geode config."""
    n_heads, n_kv = head_shape(d)
    assert n_heads % 2 == 0 and n_kv * 2 == n_heads and (d // n_heads) % 8 == 0 and d % n_heads == 0
    ModelConfig(**{**BASE, "d_model": d, "n_heads": n_heads, "n_kv_heads": n_kv})


def test_head_shape_refuses_width_without_good_split() -> None:
    """592 = 8 x 74 has no even head count with head_dim % 8 == 0 in [32, 128]."""
    with pytest.raises(ValueError, match="d_model"):
        head_shape(592)
