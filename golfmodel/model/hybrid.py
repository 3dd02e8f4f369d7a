"""The geode hybrid language model (SPEC §6): Geode groups of GQA and CfC blocks, block matrices from the plan.

    idx (B, T) → tok_emb → RMS-normalise → [pattern] x depth blocks → final RMSNorm → tied head
    → logits = softcap·tanh(logits/softcap) (+ bigram_logprior[idx]) → (B, T, V) fp32

Each block is pre-RMSNorm mixer + residual, then pre-RMSNorm SwiGLU + residual. Every block
matrix is built by `plan_linears(config.quant_plan, group)` (plan "q2": all Q2Linear, the old
q2-geode). `qat_groups()` lists the quantised layers (QLinear) of each Geode group, shallowest
first; the trainer switches QAT on group by group, deepest first (SPEC §7).

Initialisation (as the challenge baseline): tied embedding N(0, 0.005²); block matrices keep
nn.Linear's default (uniform, bound 1/sqrt(in)); the matrices that write into the residual
stream (attention out, CfC out, MLP down) start at zero so every block starts as the identity;
norm gains 1; CfC Δt log-uniform in [0.01, 1]. The embedding is RMS-normalised before the
first block so its small init scale does not matter to the residual stream.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.model.cfc import CfCMixer
from golfmodel.model.config import BOS_ID, ModelConfig
from golfmodel.model.gqa import GQAMixer
from golfmodel.model.layers import RMSNorm, SwiGLU, init_embedding_and_zero_outputs, set_bigram_logprior
from golfmodel.quant.assign import LinearFactory, plan_linears
from golfmodel.quant.qlinear import QLinear


class Block(nn.Module):
    """One residual block: x + mixer(norm(x)), then x + SwiGLU(norm(x)); `kind` "G" (GQA) or "C" (CfC)."""

    def __init__(self, kind: str, config: ModelConfig, *, linear: LinearFactory) -> None:
        super().__init__()
        d = config.d_model
        self.kind = kind
        self.mixer_norm = RMSNorm(d)
        if kind == "G":
            self.mixer: nn.Module = GQAMixer(
                d,
                config.n_heads,
                config.n_kv_heads,
                max_seq_len=config.max_seq_len,
                rope_base=config.rope_base,
                qk_norm=config.qk_norm,
                linear=linear,
                sub_norm=config.sub_norm,
            )
        elif kind == "C":
            self.mixer = CfCMixer(
                d, chunk=config.cfc_chunk, linear=linear, sub_norm=config.sub_norm, scan=config.cfc_scan
            )
        else:
            raise ValueError(f"Block: kind must be 'G' or 'C', got {kind!r}")
        self.mlp_norm = RMSNorm(d)
        self.mlp = SwiGLU(d, config.mlp_hidden, linear=linear, sub_norm=config.sub_norm)

    def forward(self, x: Tensor, reset: Tensor | None = None) -> Tensor:
        """x (B, T, d); reset (B, T) bool marks BOS tokens (used by CfC blocks only)."""
        h = self.mixer_norm(x)
        x = x + (self.mixer(h) if self.kind == "G" else self.mixer(h, reset))
        return x + self.mlp(self.mlp_norm(x))


class HybridLM(nn.Module):
    """geode language model; `forward(idx (B, T)) -> logits (B, T, V)` in fp32."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "geode":
            raise ValueError(f"HybridLM: arm must be a geode arm, got {config.arm!r}")
        self.config = config
        V, d = config.vocab_size, config.d_model
        self.tok_emb = nn.Embedding(V, d)
        plan = config.quant_plan
        self.groups = nn.ModuleList(
            nn.ModuleList(Block(kind, config, linear=plan_linears(plan, g)) for kind in config.pattern)
            for g in range(config.depth)
        )
        self.final_norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, V, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight  # stored once; the packer writes an alias record
        else:
            self.lm_head._zero_init = True
        if config.bigram_prior:
            self.register_buffer("bigram_logprior", torch.zeros(V, V))  # (prev, next) log-probs
        init_embedding_and_zero_outputs(self, config.tie_embeddings)

    def qat_groups(self) -> list[list[QLinear]]:
        """The quantised layers of each Geode group, shallowest group first ([] for a plan without QAT)."""
        groups = [[m for m in group.modules() if isinstance(m, QLinear)] for group in self.groups]
        return groups if any(groups) else []

    def set_bigram_logprior(self, table: Tensor | np.ndarray) -> None:
        set_bigram_logprior(self, table)

    def forward(self, idx: Tensor) -> Tensor:
        B, T = idx.shape
        reset = idx == BOS_ID  # (B, T): CfC state restarts at each document
        x = self.tok_emb(idx)  # (B, T, d)
        x = F.rms_norm(x, (x.size(-1),))
        for group in self.groups:
            for block in group:
                x = block(x, reset)
        logits = self.lm_head(self.final_norm(x)).float()  # (B, T, V)
        cap = self.config.logit_softcap
        logits = cap * torch.tanh(logits / cap)
        if self.config.bigram_prior:
            # The prior is a log-probability added after the soft-cap so its range is not squashed.
            logits = logits + self.bigram_logprior[idx]  # (B, T, V)
        return logits
