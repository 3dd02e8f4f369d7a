"""`QLinear`: an nn.Linear with an fp32 shadow weight quantised by any storage kind (SPEC §4 rev. 2).

    layer = QLinear(in, out, spec=QuantSpec(kind="int", bits=4, group_size=64))
    layer.set_qat(True)     # fills the 0-dim bool buffer `qat_on`: the compiled graph does not change
    layer.refresh_tau()     # exact refit of the scale (QAT switches, phase 3, the end of training)
    layer.update_scale()    # one Lloyd step between refits: two reductions, no sort, no host sync

The forward always computes both branches and selects with `torch.where(qat_on, ŵ, w)`, so
switching QAT never recompiles (issue 10 item 4). With QAT on it uses ŵ = ℓ·τ, exactly the
weight the packer stores, and the backward is the kind's straight-through estimator (q2:
masked to |w| <= 3τ; `ste_masked=False` = plain STE). Under autocast a per-row kind computes
y = (x ℓᵀ)·τ with τ in fp32, so bf16 uses exactly the stored τ (SPEC §4); the fp32 path keeps
W = ℓ·τ, the bits the loaded artifact holds. `tau` is the scale of every scaled kind: a
persistent buffer (checkpoints carry it; fp16-representable), or with `scale="learned"` an
nn.Parameter with LSQ's gradient scale, fp16-rounded in the forward through an STE. fp16 /
fp32 kinds have no τ. `Q2Linear` is the q2 case (the default spec), kept for existing code.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.quant.kinds import kind_for
from golfmodel.quant.q2 import FP16_MIN_NORMAL
from golfmodel.quant.spec import QuantSpec

Q2_SPEC = QuantSpec(kind="q2")
_FIT_AT_INIT = contextvars.ContextVar("qlinear_fit_at_init", default=True)


@contextmanager
def no_tau_init() -> Iterator[None]:
    """Build QLinear layers without fitting τ to their random init (τ = placeholder until set).

    For models whose weights and τ are about to be loaded (artifacts, checkpoints): fitting τ
    costs a sort per row, tens of seconds for a full-size model on a small CPU.
    """
    token = _FIT_AT_INIT.set(False)
    try:
        yield
    finally:
        _FIT_AT_INIT.reset(token)


class QLinear(nn.Linear):
    """Linear layer with quantisation-aware training of storage kind `spec`; bias off by default."""

    tau: Tensor | None
    qat_on: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        spec: QuantSpec = Q2_SPEC,
        ste_masked: bool = True,
    ) -> None:
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "kind", kind_for(spec))
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._qat = False
        self.ste_masked = ste_masked
        # τ rule: "mse" = the kind's squared-error fit (q2: the exact per-row solve); "std" =
        # tau_std_mult·row std, the naive recipe, kept for the ablation that measures the fit.
        self.tau_method = "mse"
        self.tau_std_mult = 0.98
        dev = self.weight.device
        self.register_buffer("qat_on", torch.zeros((), dtype=torch.bool, device=dev), persistent=False)
        if spec.has_scale:
            shape = self.kind.scale_shape((out_features, in_features))  # checks the group size
            tau = torch.full(shape, FP16_MIN_NORMAL, device=dev, dtype=torch.float32)
            if spec.learned:
                self.tau = nn.Parameter(tau)
            else:
                self.register_buffer("tau", tau)
        else:
            self.register_buffer("tau", None)
        if _FIT_AT_INIT.get():
            self.refresh_tau()

    def reset_parameters(self) -> None:
        """Re-initialise the shadow weight (nn.Linear's init) and refit τ to it."""
        super().reset_parameters()
        if hasattr(self, "qat_on") and _FIT_AT_INIT.get():  # nn.Linear.__init__ calls this before τ exists
            self.refresh_tau()

    # --- QAT state and scales --------------------------------------------------------------------

    @property
    def qat(self) -> bool:
        """Whether the quantised forward is on (a Python mirror of the `qat_on` buffer)."""
        return self._qat

    @qat.setter
    def qat(self, on: bool) -> None:
        self.set_qat(on)

    @property
    def scale_learned(self) -> bool:
        """τ is an nn.Parameter the optimiser trains (refresh_tau re-initialises it; update_scale skips it)."""
        return self.spec.learned

    def set_qat(self, on: bool) -> None:
        """Switch the quantisation-aware forward on or off (fills a buffer: no recompile)."""
        self._qat = bool(on)
        with torch.no_grad():
            self.qat_on.fill_(self._qat)

    @torch.no_grad()
    def refresh_tau(self, act_weight: Tensor | None = None) -> None:
        """Exact refit of τ to the shadow weight (columns optionally weighted by act_weight (in,))."""
        if self.tau is None or self.weight.is_meta:
            return
        w = self.weight.detach().float()
        if self.tau_method == "std":
            g = self.kind._view(w)  # (out, G, g): one std per row or group
            t = self.kind.round_scale(self.tau_std_mult * g.std(dim=-1)).reshape(self.tau.shape)
        else:
            t = self.kind.fit_scale(w, act_weight)
        self.tau.copy_(t)

    @torch.no_grad()
    def update_scale(self) -> None:
        """Cheap refresh between exact refits: one Lloyd step (fitted τ), the statistic, or nothing (learned)."""
        if self.tau is None or self.spec.learned or self.tau_method == "std":
            return
        self.tau.copy_(self.kind.update_scale(self.weight.detach().float(), self.tau))

    @torch.no_grad()
    def quick_scale(self) -> None:
        """A cheap τ without a fit, for random or stand-in weights (size probes): the kind's statistic
        (q2: 0.996·rms per row/group, the Gaussian MSE optimum of SPEC §4; int/fp8 absmax; ternary absmean)."""
        if self.tau is None or self.weight.is_meta:
            return
        self.tau.copy_(self.kind.stat_scale(self.weight.detach().float()).reshape(self.tau.shape))

    @torch.no_grad()
    def set_tau(self, tau: Tensor) -> None:
        """Set τ directly; it is rounded to fp16 as everywhere else."""
        if self.tau is None:
            raise ValueError(f"set_tau: kind {self.spec.label} has no scale")
        self.tau.copy_(self.kind.round_scale(tau.to(self.tau.device)).reshape(self.tau.shape))

    def stored_scale(self) -> Tensor | None:
        """τ as the artifact stores it (fp16-rounded, fp32), detached; None for fp16 / fp32 kinds."""
        return None if self.tau is None else self.kind.round_scale(self.tau.detach())

    def _scale(self) -> Tensor:
        """τ as the forward uses it: learned → fp16-rounded value, gradient × LSQ's scale (STE)."""
        t = self.tau
        assert t is not None
        if not self.spec.learned:
            return t
        t_g = t * self.kind.lsq_grad_scale(self.in_features)
        return self.kind.round_scale(t).detach() + (t_g - t_g.detach())

    # --- forward ---------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if self.tau is None:  # fp16 / fp32: ŵ = w rounded (plain STE)
            return F.linear(x, torch.where(self.qat_on, self.kind.fake_quant(w), w), self.bias)
        t = self._scale()
        if not self.spec.group_size and torch.is_autocast_enabled(x.device.type):
            lv = self.kind.levels_ste(w, t, masked=self.ste_masked)  # (out, in) exact levels
            y = F.linear(x, torch.where(self.qat_on, lv, w))  # (..., out) in the autocast dtype
            y = (y * torch.where(self.qat_on, t, torch.ones_like(t))).to(y.dtype)  # τ applied in fp32
            return y if self.bias is None else y + self.bias.to(y.dtype)
        wq = self.kind.fake_quant(w, t, masked=self.ste_masked)  # ℓ·τ, exact in fp32
        return F.linear(x, torch.where(self.qat_on, wq, w), self.bias)

    @torch.no_grad()
    def effective_weight(self) -> Tensor:
        """The (out,in) weight the forward uses, detached."""
        if not self.qat:
            return self.weight.detach().clone()
        return self.kind.dequant(self.weight.detach(), self.stored_scale()).to(self.weight.dtype)

    @torch.no_grad()
    def quantized_state(self) -> tuple[Tensor, Tensor]:
        """q2 only (Q2BN v1's record): symbols (out,in) uint8 and τ (out,) fp16."""
        if self.spec != Q2_SPEC:
            raise ValueError(f"quantized_state: only per-row fitted q2 has v1 symbols, this is {self.spec}")
        t = self.stored_scale()
        assert t is not None
        sym = (self.kind.levels(self.weight.detach().float(), t) + 1.5).to(torch.uint8)
        return sym, t.half()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, spec={self.spec.label}:{self.spec.scale}, qat={self.qat}, ste_masked={self.ste_masked}"


class Q2Linear(QLinear):
    """The q2 case of QLinear (per-row fitted τ by default), kept under its old name."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        ste_masked: bool = True,
        spec: QuantSpec = Q2_SPEC,
    ) -> None:
        if spec.kind != "q2":
            raise ValueError(f"Q2Linear: spec must be of kind 'q2', got {spec.kind!r} (use QLinear)")
        super().__init__(in_features, out_features, bias, device, dtype, spec=spec, ste_masked=ste_masked)


def make_linear(spec: QuantSpec | None, in_features: int, out_features: int) -> nn.Linear:
    """The layer a plan asks for: Q2Linear for q2, QLinear for other kinds, nn.Linear for None (no QAT)."""
    if spec is None:
        return nn.Linear(in_features, out_features, bias=False)
    cls = Q2Linear if spec.kind == "q2" else QLinear
    return cls(in_features, out_features, bias=False, spec=spec)


def qlinears(model: nn.Module) -> list[QLinear]:
    """All quantised linear layers (every kind) of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, QLinear)]


q2_linears = qlinears  # old name: every QLinear (the trainer switches QAT on all of them)
