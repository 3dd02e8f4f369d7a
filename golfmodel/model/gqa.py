"""Grouped-query causal self-attention with RoPE and QK-RMSNorm (the "G" block mixer of both arms).

Masking is plain causal over the whole window, as in the challenge baseline: a window that
spans a document boundary (BOS) lets later tokens attend to the earlier document. The CfC
mixer resets its state at BOS instead (see cfc.py); docs/decisions/model.md says why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.model.layers import RMSNorm, Rotary, linear_factory
from golfmodel.quant.assign import LinearFactory

QK_GAIN_INIT = 1.5  # per-head query gain after QK-RMSNorm (the challenge baseline's QK_GAIN_INIT)


class GQAMixer(nn.Module):
    """q/k/v/o projections (plan families attn_qkv, attn_o), RoPE, QK-RMSNorm + per-head query gain, causal SDPA with shared KV heads."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        *,
        max_seq_len: int,
        rope_base: float = 10000.0,
        qk_norm: bool = True,
        linear_cls: type[nn.Linear] | None = None,
        linear: LinearFactory | None = None,
        sub_norm: bool = False,
    ) -> None:
        super().__init__()
        make = linear_factory(linear_cls, linear)
        if d_model % n_heads != 0 or n_heads % n_kv_heads != 0:
            raise ValueError(
                f"GQAMixer: need n_kv_heads | n_heads | d_model, got {n_kv_heads}, {n_heads}, {d_model}"
            )
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = d_model // n_heads
        self.qk_norm = qk_norm
        kv_dim = n_kv_heads * self.head_dim
        self.q = make("attn_qkv", d_model, d_model)
        self.k = make("attn_qkv", d_model, kv_dim)
        self.v = make("attn_qkv", d_model, kv_dim)
        self.sub_norm = RMSNorm(d_model) if sub_norm else None  # on the heads' output before o (SubLN)
        self.o = make("attn_o", d_model, d_model)
        self.o._zero_init = True
        # With unit-RMS q and k the logits are bounded by sqrt(head_dim); the learned gain sets the
        # attention temperature per head.
        self.q_gain = nn.Parameter(torch.full((n_heads,), QK_GAIN_INIT if qk_norm else 1.0))
        self.rotary = Rotary(self.head_dim, max_seq_len=max_seq_len, base=rope_base)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        if self.qk_norm:
            q = F.rms_norm(q, (self.head_dim,))
            k = F.rms_norm(k, (self.head_dim,))
        q, k = self.rotary(q), self.rotary(k)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads
        )  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, d)
        if self.sub_norm is not None:
            y = self.sub_norm(y)
        return self.o(y)
