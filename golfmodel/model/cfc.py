"""Closed-form continuous-time (CfC) mixer: an input-gated diagonal linear recurrence (SPEC §6, the "C" block).

For a normalised input x̂ (B, T, d), per channel:

    a = softplus(W1 x̂) ≥ 0,   b = W2 x̂,   Δt = exp(log_dt)
    decay_t = exp(-a_t Δt),   c_t = b_t (1 - exp(-a_t Δt)) / a_t      (→ b_t Δt as a_t → 0)
    h_t = decay_t ⊙ h_{t-1} + c_t,   h_{-1} = 0,   decay_t = 0 where token t is BOS
    y = W_out h

The gates depend on the input only (not on h), so the recurrence is a linear scan and
parallelises over time. `cfc_scan` runs it in log space: within a chunk of `chunk` tokens a
Hillis–Steele prefix scan (log2(chunk) vectorised steps) combines (log-decay, state) pairs,
(A1, h1) ∘ (A2, h2) = (A1 + A2, exp(A2)·h1 + h2), so every exponent is a sum of log-decays ≤ 0
(never a difference of large cumulative sums, which loses precision and turns a BOS reset's
-inf into NaN); then one sequential pass over the chunks carries the state (a Python loop over
T/chunk chunks, not over tokens). The backward pass is the same scan run in reverse (a custom
autograd Function), so training keeps only the log-decays and states, not the scan's steps. docs/decisions/model.md compares this with the masked
(chunk x chunk) decay-matrix form, whose (B, T, chunk, d) intermediate is too large for
per-channel decays. Gates and scan run in fp32 even under bf16 autocast.

On CUDA the mixer runs the fused Triton scan instead (`scan_triton.fused_cfc_scan`: gates and
recurrence in one kernel per pass, docs/decisions/scan.md); `scan` ("auto" | "torch" | "triton",
`ModelConfig.cfc_scan`) picks it: "auto" is the fused scan on CUDA where triton is installed and
this chunked torch scan everywhere else, which stays the CPU path and the reference. The trainer
logs the choice (`scan_in_use`). Under autocast the fused scan stores h directly in the autocast
dtype W_out reads (state still fp32 in registers), so no cast pass follows it; the torch scan
returns fp32 h and autocast casts it at W_out, as before.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfmodel.model import scan_triton
from golfmodel.model.config import CFC_SCANS
from golfmodel.model.layers import RMSNorm, linear_factory
from golfmodel.quant.assign import LinearFactory

DT_MIN, DT_MAX = 0.01, 1.0  # Δt init range (log-uniform): memory of ~1.4 to ~140 tokens at a ≈ softplus(0)
_SERIES_BELOW = 1e-2  # a·Δt below this uses the Taylor series of (1 - e^-z)/z (error < z^4/120)


def resolve_scan(choice: str, device: torch.device) -> str:
    """The scan that `choice` runs on `device`: "triton" (fused kernel) or "torch" (chunked scan).

    "auto": triton on CUDA where the fused scan is available, torch otherwise. "triton" is never
    downgraded: it raises here if triton (or torch.library.triton_op) is missing.
    """
    if choice not in CFC_SCANS:
        raise ValueError(f"cfc_scan: must be one of {CFC_SCANS}, got {choice!r}")
    if choice == "triton" and not scan_triton.available():
        raise RuntimeError(
            f"cfc_scan='triton' but the fused scan cannot run: {scan_triton.unavailable_reason()}"
        )
    if choice == "auto":
        return "triton" if device.type == "cuda" and scan_triton.available() else "torch"
    return choice


def scan_in_use(model: nn.Module, device: torch.device) -> str:
    """Which CfC scan `model`'s mixers run on `device` ("triton", "torch", "none" without CfC blocks)."""
    names = sorted({resolve_scan(m.scan, device) for m in model.modules() if isinstance(m, CfCMixer)})
    return "+".join(names) if names else "none"


def cfc_gates(a: Tensor, b: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
    """Log-decay -a·Δt (≤ 0) and input c = b·(1 - exp(-a·Δt))/a, finite with finite gradients for all a ≥ 0.

    a, b: (..., d) with a ≥ 0; dt: (d,) > 0. c = b·Δt·φ(z) with z = a·Δt and φ(z) = -expm1(-z)/z;
    φ uses its series 1 - z/2 + z²/6 - z³/24 for z < 1e-2 (so a = 0 gives c = b·Δt exactly), and
    the closed form elsewhere evaluated at a safe z (no 0/0 in the discarded branch of `where`).
    Large z is harmless: expm1(-z) → -1 and φ → 1/z.
    """
    z = a * dt  # (..., d) ≥ 0
    small = z < _SERIES_BELOW
    z_safe = torch.where(small, torch.ones_like(z), z)
    phi_series = 1.0 - z * (0.5 - z * (1.0 / 6.0 - z / 24.0))
    phi = torch.where(small, phi_series, -torch.expm1(-z_safe) / z_safe)
    return -z, b * dt * phi


def _chunked_scan(ld: Tensor, c: Tensor, chunk: int) -> Tensor:
    """h_t = exp(ld_t)·h_{t-1} + c_t from h_{-1} = 0 for (B, T, D) inputs of one float dtype (no reset handling)."""
    B, T, D = c.shape
    n_chunks = math.ceil(T / chunk)
    pad = n_chunks * chunk - T
    if pad:  # identity elements (log-decay 0, input 0) at the end; sliced off below
        ld = F.pad(ld, (0, 0, 0, pad))
        c = F.pad(c, (0, 0, 0, pad))
    A = ld.reshape(B, n_chunks, chunk, D)  # log-decay over (t - 2^j, t] within the chunk
    h = c.reshape(B, n_chunks, chunk, D)  # state over the same span, from a zero start
    k = 1
    while k < chunk:  # Hillis–Steele: after the step with offset k, spans are 2k long
        A_prev = F.pad(A[:, :, :-k], (0, 0, k, 0))  # (B, n, chunk, D); identity before the chunk start
        h_prev = F.pad(h[:, :, :-k], (0, 0, k, 0))
        h = h + torch.exp(A) * h_prev
        A = A + A_prev
        k *= 2
    # A[:, j, t] = Σ log-decay over chunk j up to t; h[:, j, t] = chunk-local state. Carry across chunks.
    decay_end = torch.exp(A[:, :, -1])  # (B, n, D)
    h_end = h[:, :, -1]  # (B, n, D)
    carry = torch.zeros(B, D, dtype=h.dtype, device=h.device)
    starts = []
    for j in range(n_chunks):
        starts.append(carry)
        carry = decay_end[:, j] * carry + h_end[:, j]
    start = torch.stack(starts, dim=1)  # (B, n, D): state entering each chunk
    h = h + torch.exp(A) * start[:, :, None]  # (B, n, chunk, D)
    return h.reshape(B, n_chunks * chunk, D)[:, :T]


class _ScanFn(torch.autograd.Function):
    """The chunked scan with a hand-written backward, which is the same scan run in reverse.

    For h_t = a_t h_{t-1} + c_t (a_t = exp(ld_t)) and upstream gradient G_t = ∂L/∂h_t:
    g_t = G_t + a_{t+1} g_{t+1} (a reverse scan), ∂L/∂c_t = g_t, ∂L/∂ld_t = g_t a_t h_{t-1}.
    Only ld and h are saved — two (B, T, D) tensors instead of the ~4·log2(chunk) intermediates
    autograd would keep — and a BOS reset (ld = -inf, a = 0) stops the gradient exactly as it
    stops the state.
    """

    @staticmethod
    def forward(ctx, ld: Tensor, c: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        h = _chunked_scan(ld, c, chunk)
        ctx.save_for_backward(ld, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        ld, h = ctx.saved_tensors
        ld_next = F.pad(ld[:, 1:], (0, 0, 0, 1))  # (B, T, D): ld_{t+1}, 0 past the end
        g = _chunked_scan(ld_next.flip(1), grad_h.flip(1), ctx.chunk).flip(1)  # (B, T, D)
        h_prev = F.pad(h[:, :-1], (0, 0, 1, 0))  # h_{t-1}, 0 before the start
        return g * torch.exp(ld) * h_prev, g, None


def cfc_scan(log_decay: Tensor, c: Tensor, reset: Tensor | None, chunk: int) -> Tensor:
    """h_t = exp(log_decay_t)·h_{t-1} + c_t from h_{-1} = 0, with decay 0 where `reset` (B, T) is True.

    log_decay, c: (B, T, D); returns h (B, T, D) in fp32. Chunked log-space scan: no loop over tokens.
    """
    if chunk < 1:
        raise ValueError(f"chunk: must be >= 1, got {chunk}")
    ld = log_decay.float()
    if reset is not None:
        ld = ld.masked_fill(reset[..., None], float("-inf"))  # decay 0: forget everything before BOS
    return _ScanFn.apply(ld, c.float(), chunk)


def cfc_scan_reference(log_decay: Tensor, c: Tensor, reset: Tensor | None) -> Tensor:
    """Step-by-step reference of `cfc_scan` (a Python loop over tokens; for tests and the benchmark only)."""
    B, T, D = c.shape
    decay = torch.exp(log_decay.float())
    if reset is not None:
        decay = decay.masked_fill(reset[..., None], 0.0)
    c = c.float()
    h = torch.zeros(B, D, dtype=torch.float32, device=c.device)
    out = []
    for t in range(T):
        h = decay[:, t] * h + c[:, t]
        out.append(h)
    return torch.stack(out, dim=1)  # (B, T, D)


class CfCMixer(nn.Module):
    """CfC token mixer: gates W1, W2 (plan family cfc_in) and output W_out (cfc_out), per-channel time step exp(log_dt)."""

    def __init__(
        self,
        d_model: int,
        *,
        chunk: int = 64,
        linear_cls: type[nn.Linear] | None = None,
        linear: LinearFactory | None = None,
        sub_norm: bool = False,
        scan: str = "auto",
    ) -> None:
        super().__init__()
        resolve_scan(scan, torch.device("cpu"))  # validates the name and that a forced triton can run
        make = linear_factory(linear_cls, linear)
        self.chunk = chunk
        self.scan = scan
        self.sub_norm = RMSNorm(d_model) if sub_norm else None  # on h before W_out (SubLN)
        self.w1 = make("cfc_in", d_model, d_model)  # a = softplus(W1 x̂)
        self.w2 = make("cfc_in", d_model, d_model)  # b = W2 x̂
        self.w_out = make("cfc_out", d_model, d_model)
        self.w_out._zero_init = True
        # Δt log-uniform in [DT_MIN, DT_MAX] per channel (as Mamba's Δ init): a spread of time scales.
        u = torch.rand(d_model)
        self.log_dt = nn.Parameter(math.log(DT_MIN) + u * (math.log(DT_MAX) - math.log(DT_MIN)))

    def _h_dtype(self, x: Tensor) -> torch.dtype:
        """The dtype the fused scan stores h in: what W_out would cast it to anyway.

        Under autocast W_out's matmul reads h in the autocast dtype, so the kernel rounds h to it on
        store (the same rounding the cast did: bit for bit). With a sub-norm the norm reads h first
        and stays fed in x's dtype (fp32 under autocast), as without autocast (x.dtype: fp32 eval).
        """
        if self.sub_norm is None and torch.is_autocast_enabled(x.device.type):
            return torch.get_autocast_dtype(x.device.type)
        return x.dtype

    def forward(self, x: Tensor, reset: Tensor | None = None) -> Tensor:
        """x (B, T, d) already normalised; reset (B, T) bool, True at BOS tokens."""
        B, T, C = x.shape
        a_pre = self.w1(x)  # (B, T, d)
        b = self.w2(x)  # (B, T, d)
        if resolve_scan(self.scan, x.device) == "triton":
            # gates + scan in one kernel: reads a_pre, b in their (autocast) dtype, fp32 inside, and
            # stores h in the dtype W_out reads it in, so no cast pass sits between them
            h = scan_triton.fused_cfc_scan(a_pre, b, self.log_dt, reset, out_dtype=self._h_dtype(x))
        else:
            with torch.autocast(device_type=x.device.type, enabled=False):
                a = F.softplus(a_pre.float())
                log_decay, c = cfc_gates(a, b.float(), torch.exp(self.log_dt.float()))
                h = cfc_scan(log_decay, c, reset, self.chunk)  # (B, T, d) fp32
            h = h.to(x.dtype)
        if self.sub_norm is not None:
            h = self.sub_norm(h)
        return self.w_out(h)
