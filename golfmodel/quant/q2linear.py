"""`Q2Linear`: an nn.Linear with an fp32 shadow weight and a per-row Q² scale τ (SPEC §4).

With `qat` off the layer is a plain linear on the shadow weight (phase 1, the fp32 twin). With
`qat` on, the forward uses `fake_quant(weight, tau)` — the exact dequantised weight the packer
stores — and the backward is the straight-through estimator masked to |w| <= 3τ
(`ste_masked=False` gives the plain STE for the ablation). The optimiser only sees `weight`.

`tau` is a persistent buffer (it goes into checkpoints) kept fp16-representable. Under DDP,
buffers are broadcast from rank 0 at each forward by default; the trainer refreshes τ on
every rank at the same step from identical weights, so the broadcast is a no-op either way.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.quant.q2 import FP16_MIN_NORMAL, dequant, fake_quant, fit_tau, round_tau, symbols

_FIT_AT_INIT = contextvars.ContextVar("q2linear_fit_at_init", default=True)


@contextmanager
def no_tau_init() -> Iterator[None]:
    """Build Q2Linear layers without fitting τ to their random init (τ = placeholder until set).

    For models whose weights and τ are about to be loaded (artifacts, checkpoints): fitting τ
    costs a sort per row, tens of seconds for a full-size model on a small CPU.
    """
    token = _FIT_AT_INIT.set(False)
    try:
        yield
    finally:
        _FIT_AT_INIT.reset(token)


class Q2Linear(nn.Linear):
    """Linear layer with 2-bit quantisation-aware training; bias off by default (kept fp32 if on)."""

    tau: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        ste_masked: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.qat = False
        self.ste_masked = ste_masked
        # τ rule: "mse" = exact per-row squared-error fit (the default); "std" = tau_std_mult·row std,
        # the naive recipe, kept for the ablation that measures what the MSE fit buys.
        self.tau_method = "mse"
        self.tau_std_mult = 0.98
        tau = torch.full((out_features,), FP16_MIN_NORMAL, device=self.weight.device, dtype=torch.float32)
        self.register_buffer("tau", tau)
        if _FIT_AT_INIT.get():
            self.refresh_tau()

    def reset_parameters(self) -> None:
        """Re-initialise the shadow weight (nn.Linear's init) and refit τ to it."""
        super().reset_parameters()
        if hasattr(self, "tau") and _FIT_AT_INIT.get():  # nn.Linear.__init__ calls this before tau exists
            self.refresh_tau()

    @torch.no_grad()
    def refresh_tau(self, act_weight: Tensor | None = None) -> None:
        """Refit τ to the current shadow weight (optionally weighting columns by act_weight (in,))."""
        if self.weight.is_meta:
            return
        w = self.weight.detach().float()
        if self.tau_method == "std":
            self.tau.copy_(round_tau(self.tau_std_mult * w.std(dim=1)))
        else:
            self.tau.copy_(fit_tau(w, act_weight))

    @torch.no_grad()
    def set_tau(self, tau: Tensor) -> None:
        """Set τ (out,) directly; it is rounded to fp16 as everywhere else."""
        self.tau.copy_(round_tau(tau.to(self.tau.device)))

    def set_qat(self, on: bool) -> None:
        """Switch quantisation-aware forward on or off."""
        self.qat = bool(on)

    def forward(self, x: Tensor) -> Tensor:
        if not self.qat:
            return F.linear(x, self.weight, self.bias)
        return F.linear(x, fake_quant(self.weight, self.tau, self.ste_masked), self.bias)

    @torch.no_grad()
    def effective_weight(self) -> Tensor:
        """The (out,in) weight the forward uses, detached."""
        if not self.qat:
            return self.weight.detach().clone()
        return dequant(symbols(self.weight.detach(), self.tau), self.tau).to(self.weight.dtype)

    @torch.no_grad()
    def quantized_state(self) -> tuple[Tensor, Tensor]:
        """What Q2BN stores: symbols (out,in) uint8 and τ (out,) fp16."""
        return symbols(self.weight.detach().float(), self.tau), self.tau.half()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, qat={self.qat}, ste_masked={self.ste_masked}"


def q2_linears(model: nn.Module) -> list[Q2Linear]:
    """All Q2Linear modules of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, Q2Linear)]
