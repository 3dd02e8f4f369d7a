"""The trainer's side of the quantiser's scales: exact refits, the cheap per-step Lloyd update, learned τ.

    keeper = ScaleKeeper(layers, tau_update="lloyd", compile=on_cuda)
    keeper.refit(layers)        # exact solve (a sort per row for q2): QAT switches, phase 3, the end
    keeper.update()             # one Lloyd step on every QAT-on fitted layer: no sort, no host sync
    keeper.learned_params()     # τ nn.Parameters of `scale = "learned"` layers (the optimiser's)

Fitted scales (`fit`, `absmax`, `absmean`) belong to the trainer: between exact refits each
QAT-on layer takes one step of `kind.update_scale` (q2/int/fp8 `fit`: keep the symbols, set τ
to its least-squares optimum Σw·ℓ/Σℓ², two reductions; a statistic for absmax/absmean). All
layers go through one function whose per-layer result is `torch.where(qat_on, new, τ)`, so the
set of QAT-on layers is data, not code: compiled once on CUDA, no recompile at a QAT switch.
Learned scales are never refitted after their QAT switch (that initialises them) and never
Lloyd-updated: AdamW trains them (`learned_params`). `tau_method = "std"` layers keep their
statistic fixed between exact refits (their update would be a refit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn


def has_scale(layer: nn.Module) -> bool:
    """The layer stores a scale τ (every scaled kind; fp16 / fp32 kinds have none)."""
    return getattr(layer, "tau", None) is not None


def is_learned(layer: nn.Module) -> bool:
    """τ is an nn.Parameter trained by the optimiser (`scale = "learned"`)."""
    return bool(getattr(layer, "scale_learned", False)) or isinstance(
        getattr(layer, "tau", None), nn.Parameter
    )


@torch.no_grad()
def _update_all(kinds: list[Any], weights: list[Tensor], taus: list[Tensor], ons: list[Tensor]) -> None:
    """τ ← kind.update_scale(w, τ) where the layer's QAT is on, τ unchanged elsewhere (in place)."""
    for kind, w, t, on in zip(kinds, weights, taus, ons, strict=True):
        new = kind.update_scale(w.detach().float(), t)  # (out,) or (out, G)
        t.copy_(torch.where(on, new, t))


class ScaleKeeper:
    """Keeps the fitted τ of a model's quantised layers current; knows which τ the optimiser owns."""

    def __init__(
        self,
        layers: dict[str, nn.Module],
        *,
        tau_update: Literal["lloyd", "none"] = "lloyd",
        compile: bool = False,
        backend: str = "inductor",
    ) -> None:
        if tau_update not in ("lloyd", "none"):
            raise ValueError(f"qat.tau_update must be 'lloyd' or 'none', got {tau_update!r}")
        self.layers = layers
        self.fitted = [m for m in layers.values() if has_scale(m) and not is_learned(m)]
        self.learned = [m for m in layers.values() if has_scale(m) and is_learned(m)]
        # the per-step update: fitted layers whose update is not a refit in disguise
        self.updatable = (
            [m for m in self.fitted if getattr(m, "tau_method", "mse") != "std"]
            if tau_update == "lloyd"
            else []
        )
        self._update: Callable[..., None] = _update_all
        if compile and self.updatable:
            self._update = torch.compile(_update_all, fullgraph=True, dynamic=False, backend=backend)

    def refit(self, layers: Iterable[nn.Module], *, learned: bool = False) -> int:
        """Exact refit of τ on `layers` (learned τ only when `learned`: their initialisation); returns how many."""
        n = 0
        for m in layers:
            if has_scale(m) and (learned or not is_learned(m)):
                m.refresh_tau()
                n += 1
        return n

    def refit_active(self) -> int:
        """Exact refit of every QAT-on fitted τ (the periodic refit, phase 3, the end); returns how many."""
        return self.refit([m for m in self.fitted if m.qat])

    def update(self) -> None:
        """One cheap step (Lloyd / statistic) on every QAT-on fitted τ; off layers keep theirs. No host sync."""
        if not self.updatable:
            return
        self._update(
            [m.kind for m in self.updatable],
            [m.weight for m in self.updatable],
            [m.tau for m in self.updatable],
            [m.qat_on for m in self.updatable],
        )

    @torch.no_grad()
    def settle(self, iters: int) -> int:
        """`iters` Lloyd steps from the current τ on every updatable layer (the optimum training tracked,
        not the exact solve's, which may sit elsewhere); returns how many layers."""
        for m in self.updatable:
            w = m.weight.detach().float()
            for _ in range(iters):
                m.tau.copy_(m.kind.update_scale(w, m.tau))
        return len(self.updatable)

    def learned_params(self) -> list[nn.Parameter]:
        """The τ Parameters AdamW trains (empty unless a spec has `scale = "learned"`)."""
        return [m.tau for m in self.learned]


def move_to_scale_group(
    optimizers: list[torch.optim.Optimizer], params: list[nn.Parameter], *, lr: float
) -> None:
    """Take learned τ out of whatever group holds them and give them their own AdamW group (lr, no decay).

    Called before the first step (no optimiser state yet). Raises if a τ is held by Muon or by no
    AdamW group: a scale must never be orthogonalised, and an untrained learned scale is a bug.
    """
    if not params:
        return
    ids = {id(p) for p in params}
    adam = None
    for opt in optimizers:
        for g in opt.param_groups:
            hit = [p for p in g["params"] if id(p) in ids]
            if not hit:
                continue
            if not isinstance(opt, torch.optim.AdamW):
                raise ValueError(f"learned scales landed in {type(opt).__name__}; they must be AdamW's")
            g["params"] = [p for p in g["params"] if id(p) not in ids]
            adam = opt
    if adam is None:
        raise ValueError("learned scales are in no optimiser group (requires_grad off?)")
    adam.param_groups = [g for g in adam.param_groups if g["params"]]
    adam.add_param_group({"params": list(params), "lr": lr, "base_lr": lr, "weight_decay": 0.0})
