"""Tiny model configs shared by the model tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from golfmodel.model import ModelConfig, build_model


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread for these tiny models: on a shared 2-core box, thread hand-offs cost more than
    the matmuls (the model tests take ~20 s instead of ~55 s under load). Restored after each module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def tiny_gpt() -> ModelConfig:
    """A 3-layer gpt-int8 model at d 32."""
    return ModelConfig(
        arm="gpt-int8",
        vocab_size=64,
        d_model=32,
        depth=3,
        n_heads=4,
        n_kv_heads=2,
        mlp_mult=2.0,
        max_seq_len=64,
    )


@pytest.fixture(scope="session")
def tokens() -> torch.Tensor:
    """(2, 40) random tokens with a BOS (id 1) in the middle of the first row."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(4, 64, (2, 40), generator=g)
    idx[0, 17] = 1
    return idx


def randomise_outputs(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-zero output projections, so the blocks actually mix (their zero init makes them the identity)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and getattr(m, "_zero_init", False):
                nn.init.normal_(m.weight, std=0.2)
    return model


@pytest.fixture(scope="session")
def randomise() -> Callable[[nn.Module], nn.Module]:
    """`randomise_outputs` as a fixture (test modules cannot import conftest under importlib mode)."""
    return randomise_outputs


@pytest.fixture(scope="module")
def q2_model(tiny_q2: ModelConfig) -> nn.Module:
    """A freshly initialised tiny_q2 model, shared by read-only tests of a module (building costs ~1 s)."""
    torch.manual_seed(0)
    return build_model(tiny_q2)


@pytest.fixture(scope="module")
def q2_mixing(tiny_q2: ModelConfig) -> nn.Module:
    """tiny_q2 with non-zero output projections, shared by read-only tests of a module."""
    torch.manual_seed(0)
    return randomise_outputs(build_model(tiny_q2))
