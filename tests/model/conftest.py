"""Tiny model configs shared by the model tests."""

from __future__ import annotations

import pytest
import torch

from golfmodel.model import ModelConfig


@pytest.fixture
def tiny_q2() -> ModelConfig:
    """A q2-geode model with every feature on: 2 groups of GCCC, d 32, bigram prior, vocab 64."""
    return ModelConfig(
        arm="q2-geode",
        vocab_size=64,
        d_model=32,
        depth=2,
        n_heads=4,
        n_kv_heads=2,
        mlp_mult=8 / 3,
        bigram_prior=True,
        cfc_chunk=8,
        max_seq_len=64,
    )


@pytest.fixture
def tiny_gpt() -> ModelConfig:
    """A 3-layer gpt-int8 model at d 32."""
    return ModelConfig(
        arm="gpt-int8", vocab_size=64, d_model=32, depth=3, n_heads=4, n_kv_heads=2, mlp_mult=2.0, max_seq_len=64
    )


@pytest.fixture
def tokens() -> torch.Tensor:
    """(2, 40) random tokens with a BOS (id 1) in the middle of the first row."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(4, 64, (2, 40), generator=g)
    idx[0, 17] = 1
    return idx
