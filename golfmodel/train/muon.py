"""Muon (momentum orthogonalised by Newton–Schulz) for block matrices, AdamW for the rest.

Muon after Keller Jordan's modded-nanogpt (https://kellerjordan.github.io/posts/muon/): keep a
Nesterov momentum of the gradient, replace the update by the nearest semi-orthogonal matrix
(≈ U Vᵀ of its SVD) via a quintic Newton–Schulz iteration with coefficients
(3.4445, −4.7750, 2.0315), and scale by max(1, rows/cols)^0.5. The iteration runs in bf16 on
GPU and fp32 on CPU. Under DDP the gradients are already all-reduced when `step()` runs, so
every rank computes the same update (no per-rank divergence).

AdamW takes embeddings, the untied head, norms, gains, time constants (log_dt) and biases.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from golfmodel.train.config import OptimConfig

NS_COEFFS = (3.4445, -4.7750, 2.0315)

# parameter-name parts that mark a 2-D matrix as an embedding/head (AdamW, not Muon)
_EMBED_PARTS = frozenset({"embed", "embedding", "tok_emb", "wte", "head", "lm_head", "output", "bigram"})


@torch.no_grad()
def newton_schulz(g: torch.Tensor, steps: int = 5, *, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalise a 2-D matrix: returns ≈ U Vᵀ (singular values pushed near 1).

    Runs in bf16 on CUDA, fp32 elsewhere; the result has g's dtype.
    """
    if g.ndim != 2:
        raise ValueError(f"newton_schulz expects a 2-D matrix, got shape {tuple(g.shape)}")
    a, b, c = NS_COEFFS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    transposed = g.size(0) > g.size(1)
    if transposed:  # iterate on the wide orientation: X Xᵀ is the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + eps)  # spectral norm <= Frobenius norm <= 1: inside the iteration's basin
    for _ in range(steps):
        A = x @ x.T  # (rows, rows)
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    if transposed:
        x = x.T
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters: Nesterov momentum → Newton–Schulz → scaled step (+ decoupled weight decay)."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        *,
        lr: float,
        momentum: float = 0.95,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        nesterov: bool = True,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, ns_steps=ns_steps, weight_decay=weight_decay, nesterov=nesterov
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        f"Muon takes 2-D matrices only, got a parameter of shape {tuple(p.shape)}"
                    )

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's Optimizer signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(mom).add_(g)
                g = g.add(buf, alpha=mom) if group["nesterov"] else buf
                update = newton_schulz(g, group["ns_steps"])
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(update, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)
        return loss


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """(muon, adam_decay, adam_no_decay): Linear weights of the blocks go to Muon; embedding/head
    matrices to AdamW with weight decay; everything else (norms, gains, log_dt, biases, control
    tensors such as gpt-int8's resid_mix) to AdamW without.
    """
    muon: list[nn.Parameter] = []
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    embed_weights = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)
    }  # incl. a tied head
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue  # tied parameters appear once
        seen.add(id(p))
        parts = set(name.lower().replace("_", ".").split(".")) | set(name.lower().split("."))
        if (
            p.ndim == 2
            and id(p) in linear_weights
            and id(p) not in embed_weights
            and not (parts & _EMBED_PARTS)
        ):
            muon.append(p)
        elif id(p) in linear_weights or id(p) in embed_weights:
            decay.append(p)
        else:
            no_decay.append(p)
    return muon, decay, no_decay


def build_optimizers(model: nn.Module, cfg: OptimConfig) -> list[torch.optim.Optimizer]:
    """[Muon, AdamW] (either omitted when it would hold no parameter). Each group keeps `base_lr`."""
    muon_p, decay_p, no_decay_p = split_params(model)
    opts: list[torch.optim.Optimizer] = []
    if muon_p:
        m = Muon(
            muon_p,
            lr=cfg.muon_lr,
            momentum=cfg.muon_momentum,
            ns_steps=cfg.ns_steps,
            weight_decay=cfg.weight_decay,
        )
        for g in m.param_groups:
            g["base_lr"] = cfg.muon_lr
        opts.append(m)
    groups = []
    if decay_p:
        groups.append({"params": decay_p, "weight_decay": cfg.weight_decay})
    if no_decay_p:
        groups.append({"params": no_decay_p, "weight_decay": 0.0})
    if groups:
        a = torch.optim.AdamW(
            groups, lr=cfg.adam_lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, fused=False
        )
        for g in a.param_groups:
            g["base_lr"] = cfg.adam_lr
        opts.append(a)
    return opts


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    """lr = base_lr · multiplier for every parameter group."""
    for opt in optimizers:
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * multiplier
