"""The gpt architecture: the Parameter Golf challenge's naive baseline model (openai/parameter-golf train_gpt.py).

9 layers of GQA attention (RoPE, QK-RMSNorm, per-head query gain) and relu² MLP x2 at d 512,
matrices from the plan: plan "int8" (the gpt-int8 arm) keeps plain nn.Linear everywhere
(quantised to int8 per row + zlib only after training), a QAT plan builds QLinears; tied
embeddings, logit soft-cap 30. Kept from the baseline so the arm is the model the challenge
started from: parameter-free RMSNorms, per-channel attention/MLP output scales, `resid_mix`
(each block mixes the residual stream with the normalised embedding x0) and U-Net style skip
connections (the first half of the layers feeds the second half in reverse order).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.model.config import ModelConfig
from golfmodel.model.gqa import GQAMixer
from golfmodel.model.layers import (
    ReluSquaredMLP,
    RMSNorm,
    init_embedding_and_zero_outputs,
    set_bigram_logprior,
)
from golfmodel.quant.assign import LinearFactory, plan_linears
from golfmodel.quant.qlinear import QLinear


class GPTBlock(nn.Module):
    """Baseline block: x = mix(x, x0); x += s_attn·attn(norm(x)); x += s_mlp·mlp(norm(x))."""

    def __init__(self, config: ModelConfig, *, linear: LinearFactory) -> None:
        super().__init__()
        d = config.d_model
        self.attn_norm = RMSNorm(d, affine=False)
        self.attn = GQAMixer(
            d,
            config.n_heads,
            config.n_kv_heads,
            max_seq_len=config.max_seq_len,
            rope_base=config.rope_base,
            qk_norm=config.qk_norm,
            linear=linear,
        )
        self.mlp_norm = RMSNorm(d, affine=False)
        self.mlp = ReluSquaredMLP(d, config.mlp_hidden, linear=linear)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))))  # (2, d)

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0  # (B, T, d)
        x = x + self.attn_scale.to(x.dtype) * self.attn(self.attn_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """gpt architecture; `forward(idx (B, T)) -> logits (B, T, V)` in fp32; QAT groups = layers (if any)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "gpt":
            raise ValueError(f"GPT: arm must be a gpt arm, got {config.arm!r}")
        self.config = config
        V, d, L = config.vocab_size, config.d_model, config.depth
        self.tok_emb = nn.Embedding(V, d)
        self.n_encoder = L // 2
        self.n_decoder = L - self.n_encoder
        self.skip_weights = nn.Parameter(torch.ones(min(self.n_encoder, self.n_decoder), d))
        plan = config.quant_plan
        self.blocks = nn.ModuleList(GPTBlock(config, linear=plan_linears(plan, i)) for i in range(L))
        self.final_norm = RMSNorm(d, affine=False)
        self.lm_head = nn.Linear(d, V, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        else:
            self.lm_head._zero_init = True
        if config.bigram_prior:
            self.register_buffer("bigram_logprior", torch.zeros(V, V))
        init_embedding_and_zero_outputs(self, config.tie_embeddings)

    def qat_groups(self) -> list[list[QLinear]]:
        """The quantised layers of each layer, shallowest first; [] for the int8 plan (quantised after training)."""
        groups = [[m for m in block.modules() if isinstance(m, QLinear)] for block in self.blocks]
        return groups if any(groups) else []

    def set_bigram_logprior(self, table: Tensor | np.ndarray) -> None:
        set_bigram_logprior(self, table)

    def forward(self, idx: Tensor) -> Tensor:
        B, T = idx.shape
        x = F.rms_norm(self.tok_emb(idx), (self.config.d_model,))  # (B, T, d)
        x0 = x
        skips: list[Tensor] = []
        for block in self.blocks[: self.n_encoder]:
            x = block(x, x0)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.n_encoder :]):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = block(x, x0)
        logits = self.lm_head(self.final_norm(x)).float()  # (B, T, V)
        cap = self.config.logit_softcap
        logits = cap * torch.tanh(logits / cap)
        if self.config.bigram_prior:
            logits = logits + self.bigram_logprior[idx]
        return logits
