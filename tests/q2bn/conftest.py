"""Fixtures of the Q2BN tests: a tiny stand-in language model with every storage kind, and header meta.

`TinyLM` mimics the real models' structure without depending on them: a token embedding tied
to the head, Q2Linear blocks, RMSNorm-style gains, a per-channel `log_dt`, a `bigram_logprior`
buffer and a non-persistent cache buffer (which must not be stored).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.quant.q2linear import Q2Linear


class TinyBlock(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.Parameter(torch.ones(d))
        self.log_dt = nn.Parameter(torch.linspace(-4.6, 0.0, d))
        self.up = Q2Linear(d, hidden)
        self.down = Q2Linear(hidden, d, bias=True)  # a bias: stored fp16
        self.register_buffer("cache", torch.arange(d, dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.rms_norm(x, (x.size(-1),), weight=self.norm) * torch.exp(self.log_dt)
        return x + self.down(F.relu(self.up(h)) ** 2) + 0.0 * self.cache


class TinyLM(nn.Module):
    """Embedding (tied head) → blocks → head, plus a bigram log-prior on the logits."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config_dict = dict(config)
        v, d, depth = config["vocab_size"], config["d_model"], config["depth"]
        self.tok_emb = nn.Embedding(v, d)
        self.blocks = nn.ModuleList(TinyBlock(d, config["hidden"]) for _ in range(depth))
        self.final_norm = nn.Parameter(torch.ones(d))
        self.head = nn.Linear(d, v, bias=False)
        self.head.weight = self.tok_emb.weight
        self.register_buffer("bigram_logprior", torch.log_softmax(torch.randn(v, v), dim=-1))

    def forward(self, idx: Tensor) -> Tensor:
        x = self.tok_emb(idx)  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        x = F.rms_norm(x, (x.size(-1),), weight=self.final_norm)
        return self.head(x).float() + self.bigram_logprior[idx]  # (B, T, V)


TINY_CONFIG = {"vocab_size": 48, "d_model": 24, "depth": 2, "hidden": 37}


def build_tiny(config: dict[str, Any]) -> nn.Module:
    return TinyLM(config)


@pytest.fixture()
def tiny_model() -> TinyLM:
    """A trained-looking TinyLM: random weights, QAT on, non-trivial gains."""
    torch.manual_seed(0)
    model = TinyLM(TINY_CONFIG)
    with torch.no_grad():
        for block in model.blocks:
            block.norm.add_(torch.randn_like(block.norm) * 0.1)
            block.down.bias.normal_()
        for layer in model.modules():
            if isinstance(layer, Q2Linear):
                layer.weight.normal_(0.0, 0.05)
                layer.refresh_tau()
                layer.set_qat(True)
    return model


@pytest.fixture()
def meta() -> dict[str, Any]:
    """Header fields a caller supplies."""
    return {
        "model": dict(TINY_CONFIG),
        "tokenizer": {"id": "test-48", "vocab_size": 48},
        "settings_hash": "0" * 64,
    }
