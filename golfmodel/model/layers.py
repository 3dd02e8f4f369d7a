"""Small building blocks shared by both arms: RMSNorm, rotary position embedding, SwiGLU and relu² MLPs,
and the init / bigram-prior helpers both language models use."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.quant.assign import LinearFactory, class_linears

TIED_EMBED_INIT_STD = 0.005  # the challenge baseline's tied_embed_init_std


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim with a learned gain (init 1); `affine=False` drops the gain."""

    def __init__(self, dim: int, *, affine: bool = True, eps: float | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.rms_norm(x, (self.dim,), weight=weight, eps=self.eps)


class Rotary(nn.Module):
    """RoPE tables for `max_seq_len` positions (non-persistent buffers: rebuilt, never stored)."""

    def __init__(self, head_dim: int, *, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"head_dim: must be even for RoPE, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        self.max_seq_len = max_seq_len
        inv_freq, cos, sin = self._build(None)  # default device (meta when building shapes only)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (head_dim/2,)
        self.register_buffer("cos", cos, persistent=False)  # (max_seq_len, head_dim/2)
        self.register_buffer("sin", sin, persistent=False)

    def _build(self, device: torch.device | None) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device)
        inv_freq = 1.0 / (self.base ** (idx / self.head_dim))
        return (inv_freq, *self._tables(self.max_seq_len, inv_freq))

    @torch.no_grad()
    def reset_tables(self) -> None:
        """Recompute the tables in place (after `to_empty()` on a model built on the meta device)."""
        for buf, value in zip(
            (self.inv_freq, self.cos, self.sin), self._build(self.inv_freq.device), strict=True
        ):
            buf.copy_(value)

    @staticmethod
    def _tables(n: int, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.arange(n, dtype=torch.float32, device=inv_freq.device)
        freqs = torch.outer(t, inv_freq)  # (n, head_dim/2)
        return freqs.cos(), freqs.sin()

    def forward(self, x: Tensor) -> Tensor:
        """Rotate x (B, H, T, head_dim) by position; positions past the cache are computed on the fly."""
        T = x.size(-2)
        if T <= self.cos.size(0):
            cos, sin = self.cos[:T], self.sin[:T]
        else:
            cos, sin = self._tables(T, self.inv_freq)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # (T, head_dim/2)
        half = self.head_dim // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


def linear_factory(linear_cls: type[nn.Linear] | None, linear: LinearFactory | None) -> LinearFactory:
    """The layer factory of a module: a plan's (`plan_linears`), else one from a class (default nn.Linear)."""
    if linear is not None and linear_cls is not None:
        raise ValueError("give linear_cls or linear, not both")
    return linear if linear is not None else class_linears(linear_cls or nn.Linear)


class SwiGLU(nn.Module):
    """SwiGLU MLP (Shazeer 2020): down(silu(gate(x)) * up(x)); layers from the plan (families mlp_in, mlp_down).

    sub_norm: RMSNorm the hidden activations before `down` (SubLN).
    """

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        linear_cls: type[nn.Linear] | None = None,
        linear: LinearFactory | None = None,
        sub_norm: bool = False,
    ) -> None:
        super().__init__()
        make = linear_factory(linear_cls, linear)
        self.gate = make("mlp_in", d_model, hidden)
        self.up = make("mlp_in", d_model, hidden)
        self.sub_norm = RMSNorm(hidden) if sub_norm else None
        self.down = make("mlp_down", hidden, d_model)
        self.down._zero_init = True  # residual branch starts as identity

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.gate(x)) * self.up(x)  # (B, T, hidden)
        if self.sub_norm is not None:
            h = self.sub_norm(h)
        return self.down(h)  # (B, T, d)


class ReluSquaredMLP(nn.Module):
    """relu² MLP of the challenge baseline (from modded-nanogpt): proj(relu(fc(x))²)."""

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        linear_cls: type[nn.Linear] | None = None,
        linear: LinearFactory | None = None,
    ) -> None:
        super().__init__()
        make = linear_factory(linear_cls, linear)
        self.fc = make("mlp_in", d_model, hidden)
        self.proj = make("mlp_down", hidden, d_model)
        self.proj._zero_init = True

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())  # (B, T, hidden) -> (B, T, d)


def set_bigram_logprior(model: nn.Module, table: Tensor | np.ndarray) -> None:
    """Copy a (V, V) log-probability table (row = previous token) into `model.bigram_logprior`."""
    if not model.config.bigram_prior:
        raise ValueError("set_bigram_logprior: the model was built with bigram_prior=False")
    t = torch.as_tensor(np.asarray(table) if not isinstance(table, Tensor) else table, dtype=torch.float32)
    V = model.config.vocab_size
    if t.shape != (V, V):
        raise ValueError(f"set_bigram_logprior: table must have shape ({V}, {V}), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("set_bigram_logprior: table has non-finite entries (smooth the counts first)")
    with torch.no_grad():
        model.bigram_logprior.copy_(t)


def init_embedding_and_zero_outputs(model: nn.Module, tied: bool) -> None:
    """Shared init: tied embedding N(0, 0.005²); Linear layers marked `_zero_init` to zero (τ refitted)."""
    if tied:
        nn.init.normal_(model.tok_emb.weight, mean=0.0, std=TIED_EMBED_INIT_STD)
    for module in model.modules():
        if isinstance(module, nn.Linear) and getattr(module, "_zero_init", False):
            nn.init.zeros_(module.weight)
            if hasattr(module, "refresh_tau"):  # QLinear: keep τ fitted to the stored weight
                module.refresh_tau()
