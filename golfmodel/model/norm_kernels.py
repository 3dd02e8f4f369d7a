"""Triton kernels of the fused residual add + RMSNorm, forward and backward (docs/decisions/gpu.md).

Per row r of the residual stream x (fp32) and the branch output m (any float dtype), width D:

    s = x + m                                   (the new residual stream, fp32)
    rstd = 1 / sqrt(mean(s²) + eps),   y = s·rstd·w          (y in the output dtype, bf16 under autocast)

Backward, with ŝ = s·rstd, gy the gradient of y and gs the gradient reaching s from later uses
of the residual stream:

    gŝ = gy·w,   ∂s = rstd·(gŝ − ŝ·mean(gŝ·ŝ)) + gs,   ∂x = ∂s (fp32), ∂m = ∂s (m's dtype),
    ∂w = Σ_rows gy·ŝ  (per-program partials, summed by the caller)

One program takes ROWS consecutive rows, one row of BLOCK_D ≥ D columns at a time, all in fp32
registers: the forward reads x, m, w once and writes s, y and rstd (one fp32 per row); the
backward reads gy, gs, s, rstd, w once and writes ∂x, ∂m and its ∂w partial. The (B, T, D)
fp32 norm input is never re-read and y is written once in bf16. Under TRITON_INTERPRET=1 (set
before this module is imported) the kernels run on CPU tensors, which is how the tests check them.
"""

from __future__ import annotations

try:  # optional dependency: the CPU path of the library never needs it
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is missing
    raise ImportError("golfmodel.model.norm_kernels needs triton (pip install 'golf[gpu]')") from exc


@triton.jit
def add_rms_norm_fwd_kernel(
    x_ptr, m_ptr, w_ptr, s_ptr, y_ptr, rstd_ptr, n_rows, D, eps,
    ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    for i in range(ROWS):
        row = pid * ROWS + i
        if row < n_rows:
            off = row.to(tl.int64) * D + cols
            s = tl.load(x_ptr + off, mask=cmask, other=0.0).to(tl.float32)
            s += tl.load(m_ptr + off, mask=cmask, other=0.0).to(tl.float32)
            rstd = 1.0 / tl.sqrt(tl.sum(s * s, axis=0) / D + eps)
            tl.store(s_ptr + off, s, mask=cmask)
            tl.store(y_ptr + off, (s * rstd * w).to(y_ptr.dtype.element_ty), mask=cmask)
            tl.store(rstd_ptr + row, rstd)


@triton.jit
def add_rms_norm_bwd_kernel(
    gy_ptr, gs_ptr, s_ptr, rstd_ptr, w_ptr, dx_ptr, dm_ptr, dw_ptr, n_rows, D,
    ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(ROWS):
        row = pid * ROWS + i
        if row < n_rows:
            off = row.to(tl.int64) * D + cols
            rstd = tl.load(rstd_ptr + row)
            sh = tl.load(s_ptr + off, mask=cmask, other=0.0).to(tl.float32) * rstd
            gy = tl.load(gy_ptr + off, mask=cmask, other=0.0).to(tl.float32)
            gsh = gy * w
            ds = rstd * (gsh - sh * (tl.sum(gsh * sh, axis=0) / D))
            ds += tl.load(gs_ptr + off, mask=cmask, other=0.0).to(tl.float32)
            tl.store(dx_ptr + off, ds, mask=cmask)
            tl.store(dm_ptr + off, ds.to(dm_ptr.dtype.element_ty), mask=cmask)
            dw += gy * sh
    tl.store(dw_ptr + pid.to(tl.int64) * D + cols, dw, mask=cmask)
