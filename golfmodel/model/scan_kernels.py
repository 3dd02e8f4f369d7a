"""Triton kernels of the fused CfC scan: gates + linear recurrence, forward and backward (docs/decisions/scan.md).

From the W1/W2 outputs x = W1 x̂ and b = W2 x̂ (B, T, D), any float dtype, and log Δt (D,), per channel:

    a = softplus(x),  z = a·Δt,  decay_t = exp(-z_t) (0 where token t is BOS),  c_t = b_t·Δt·φ(z_t)
    h_t = decay_t·h_{t-1} + c_t,  h_{-1} = 0,   φ(z) = (1 - e^-z)/z

One program owns one sequence and BLOCK_D channels and walks the sequence in chunks of BLOCK_T
tokens: a chunk is one `tl.associative_scan` over the (BLOCK_T, BLOCK_D) tile with the pair
operator (h1, f1)∘(h2, f2) = (h1·f2 + h2, f1·f2), the state entering the chunk folded into its
first element. Gates and state stay in fp32 registers: the forward reads x and b once and writes
h in h_ptr's dtype (fp32, or bf16 under autocast: only the stored copy is rounded, the carried
state stays fp32) plus the fp32 state entering every chunk (B, n_chunks, D), a 1/BLOCK_T-size
checkpoint.

The backward walks the chunks in reverse. Per chunk it recomputes the gates and the forward scan
from the checkpoint, then runs the adjoint recurrence g_t = G_t + decay_{t+1}·g_{t+1} as a
reverse `tl.associative_scan` (decay_{t+1} is a load shifted by one token; the same lines are in
cache; ∂L/∂h is read in h's dtype, bf16 under autocast, and upcast in registers), and forms
∂log-decay_t = g_t·decay_t·h_{t-1} = g_t·(h_t − c_t) from the recomputed fp32 state (no division,
exact zero at a reset), ∂c_t = g_t, then the chain rule through φ and softplus to ∂x, ∂b and a per-sequence
partial sum of ∂log Δt. Nothing of size (B, T, D) is saved between the passes beyond x and b.

This module needs triton; `golfmodel.model.scan_triton` imports it only where triton is installed.
Under TRITON_INTERPRET=1 (set before this module is imported: `triton.jit` reads it when it
decorates) the kernels run on CPU tensors, which is how the test suite checks them.
"""

from __future__ import annotations

try:  # optional dependency: the CPU path of the library never needs it
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is missing
    raise ImportError("golfmodel.model.scan_kernels needs triton (pip install 'golf[gpu]')") from exc

# Constants are literals inside the kernels (a jit function may only read constexpr globals):
# softplus returns x above 20 with gradient 1 (as torch.nn.functional.softplus); φ and φ' use their
# Taylor series below z = 0.1 (truncation error < 2e-10 and < 2e-8).


@triton.jit
def _combine(h1, f1, h2, f2):
    """(h1, f1) then (h2, f2): the affine maps h -> f·h + c composed in time order."""
    return h1 * f2 + h2, f1 * f2


@triton.jit
def _softplus(x):
    """softplus(x) = log(1 + e^x) in the overflow-safe form, x itself above the threshold (as torch)."""
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x))))


@triton.jit
def _phi(z):
    """φ(z) = (1 - e^-z)/z and φ'(z) = (e^-z - φ)/z for z ≥ 0; series below 0.1 (so z = 0 is exact)."""
    small = z < 0.1
    zs = tl.where(small, 1.0, z)  # the closed form never sees 0/0, not even in the discarded branch
    e = tl.exp(-zs)
    phi_s = 1.0 - z * (1.0 / 2.0 - z * (1.0 / 6.0 - z * (1.0 / 24.0 - z * (1.0 / 120.0 - z / 720.0))))
    dphi_s = -1.0 / 2.0 + z * (1.0 / 3.0 - z * (1.0 / 8.0 - z * (1.0 / 30.0 - z / 144.0)))
    phi_c = (1.0 - e) / zs
    phi = tl.where(small, phi_s, phi_c)
    dphi = tl.where(small, dphi_s, (e - phi_c) / zs)
    return phi, dphi


@triton.jit
def _round_to(v, dst: tl.constexpr):
    """fp32 v rounded to dst for a store; bf16 by round-to-nearest-even on the bits (as torch's .to()).

    Compiled Triton already rounds a bf16 downcast to nearest even, but its interpreter truncates,
    so the bf16 rounding is written out in integer ops: the same code, bit for bit torch's
    `c10::detail::round_to_nearest_even` (NaN -> 0x7FC0), compiled and interpreted. Other dtypes
    (fp32: a no-op; fp16) use the plain conversion, which is RNE in both.
    """
    if dst == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)  # non-NaN inputs never wrap (largest: -max -> -inf)
        bits = tl.where(v != v, 0x7FC00000, bits)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return v.to(dst)


@triton.jit
def cfc_scan_fwd_kernel(
    x_ptr,  # (B, T, D) W1 output (pre-softplus), any float dtype
    b_ptr,  # (B, T, D) W2 output
    logdt_ptr,  # (D,) fp32 log Δt
    reset_ptr,  # (B, T) uint8, 1 at BOS
    h_ptr,  # (B, T, D) out: the state, fp32 or the autocast dtype (rounded on store only)
    ckpt_ptr,  # (B, n_chunks, D) fp32 out: the state entering each chunk
    T,
    D,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = tl.arange(0, BLOCK_T)  # (BT,)
    cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BD,)
    col_ok = cols < D
    dt = tl.exp(tl.load(logdt_ptr + cols, mask=col_ok, other=0.0))[None, :]  # (1, BD)
    base = pid_b.to(tl.int64) * T * D
    n_chunks = tl.cdiv(T, BLOCK_T)
    carry = tl.zeros((BLOCK_D,), dtype=tl.float32)  # state entering the chunk
    k = 0
    # a while loop, not range(n_chunks): Triton's interpreter cannot take a runtime range bound (numpy >= 2.4)
    while k < n_chunks:
        t = k * BLOCK_T + rows  # (BT,)
        t_ok = t < T
        m = t_ok[:, None] & col_ok[None, :]
        off = base + t[:, None] * D + cols[None, :]  # (BT, BD)
        x = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32)
        bb = tl.load(b_ptr + off, mask=m, other=0.0).to(tl.float32)
        bos = tl.load(reset_ptr + pid_b.to(tl.int64) * T + t, mask=t_ok, other=0) != 0  # (BT,)
        z = _softplus(x) * dt
        phi, _ = _phi(z)
        decay = tl.where(bos[:, None], 0.0, tl.exp(-z))
        c = bb * dt * phi
        tl.store(ckpt_ptr + (pid_b.to(tl.int64) * n_chunks + k) * D + cols, carry, mask=col_ok)
        c_in = c + tl.where(rows[:, None] == 0, decay * carry[None, :], 0.0)
        h, _ = tl.associative_scan((c_in, decay), 0, _combine)
        tl.store(h_ptr + off, _round_to(h, h_ptr.dtype.element_ty), mask=m)  # the carry stays fp32
        carry = tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, h, 0.0), axis=0)
        k += 1


@triton.jit
def cfc_scan_bwd_kernel(
    x_ptr,
    b_ptr,
    logdt_ptr,
    reset_ptr,
    ckpt_ptr,
    gh_ptr,  # (B, T, D) ∂L/∂h in h's dtype (fp32 or bf16), upcast on load
    dx_ptr,  # (B, T, D) out, dtype of x
    db_ptr,  # (B, T, D) out, dtype of b
    dlogdt_ptr,  # (B, D) fp32 out: per-sequence partial of ∂L/∂log Δt
    T,
    D,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = tl.arange(0, BLOCK_T)
    cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    col_ok = cols < D
    dt_c = tl.exp(tl.load(logdt_ptr + cols, mask=col_ok, other=0.0))  # (BD,)
    dt = dt_c[None, :]  # (1, BD)
    base = pid_b.to(tl.int64) * T * D
    rbase = pid_b.to(tl.int64) * T
    n_chunks = tl.cdiv(T, BLOCK_T)
    carry_g = tl.zeros((BLOCK_D,), dtype=tl.float32)  # adjoint state g at the first token of the next chunk
    acc_dt = tl.zeros((BLOCK_D,), dtype=tl.float32)  # Σ_t ∂L/∂Δt
    k = n_chunks - 1
    while k >= 0:  # chunks in reverse
        t = k * BLOCK_T + rows
        t_ok = t < T
        m = t_ok[:, None] & col_ok[None, :]
        off = base + t[:, None] * D + cols[None, :]
        x = tl.load(x_ptr + off, mask=m, other=0.0).to(tl.float32)
        bb = tl.load(b_ptr + off, mask=m, other=0.0).to(tl.float32)
        bos = tl.load(reset_ptr + rbase + t, mask=t_ok, other=0) != 0
        a = _softplus(x)
        z = a * dt
        phi, dphi = _phi(z)
        decay = tl.where(bos[:, None], 0.0, tl.exp(-z))
        c = bb * dt * phi
        # forward state of this chunk, recomputed from the checkpoint (bitwise the forward's values)
        h0 = tl.load(ckpt_ptr + (pid_b.to(tl.int64) * n_chunks + k) * D + cols, mask=col_ok, other=0.0)
        c_in = c + tl.where(rows[:, None] == 0, decay * h0[None, :], 0.0)
        h, _ = tl.associative_scan((c_in, decay), 0, _combine)
        # decay_{t+1}; 0 past the end of the sequence, so padding rows never feed back
        t1_ok = (t + 1) < T
        m1 = t1_ok[:, None] & col_ok[None, :]
        x1 = tl.load(x_ptr + off + D, mask=m1, other=0.0).to(tl.float32)
        bos1 = tl.load(reset_ptr + rbase + t + 1, mask=t1_ok, other=1) != 0
        decay1 = tl.where(bos1[:, None], 0.0, tl.exp(-_softplus(x1) * dt))
        G = tl.load(gh_ptr + off, mask=m, other=0.0).to(tl.float32)
        G_in = G + tl.where(rows[:, None] == BLOCK_T - 1, decay1 * carry_g[None, :], 0.0)
        g, _ = tl.associative_scan((G_in, decay1), 0, _combine, reverse=True)
        carry_g = tl.sum(tl.where(rows[:, None] == 0, g, 0.0), axis=0)
        # chain rule: ld = -z (fixed -inf at a reset), c = b·Δt·φ(z), z = softplus(x)·Δt
        d_ld = tl.where(bos[:, None], 0.0, g * (h - c))
        dz = g * bb * dt * dphi - d_ld
        sig = tl.where(x > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-x)))
        tl.store(dx_ptr + off, _round_to(dz * dt * sig, dx_ptr.dtype.element_ty), mask=m)
        tl.store(db_ptr + off, _round_to(g * dt * phi, db_ptr.dtype.element_ty), mask=m)
        acc_dt += tl.sum(tl.where(m, dz * a + g * bb * phi, 0.0), axis=0)
        k -= 1
    tl.store(dlogdt_ptr + pid_b.to(tl.int64) * D + cols, acc_dt * dt_c, mask=col_ok)
