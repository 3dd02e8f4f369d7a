"""The fused residual add + RMSNorm (golfmodel/model/norm_triton.py) against its torch reference.

Off CUDA the kernels run under Triton's interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1 before golfmodel is imported); a CUDA machine runs the compiled kernels.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="the fused add + RMSNorm needs triton (installed by the test extra)")

from golfmodel.model import norm_triton  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _grads(fn, x, m, w, gs, gy):  # noqa: ANN001, ANN202 - test helper
    leaves = [t.clone().requires_grad_() for t in (x, m, w)]
    s, y = fn(*leaves, None)
    ((s * gs).sum() + (y.float() * gy).sum()).backward()
    return s.detach(), y.detach(), *[t.grad for t in leaves]


@pytest.mark.parametrize("shape", [(2, 5, 24), (1, 7, 40)])  # rows not a multiple of ROWS; D not a power of 2
def test_fused_add_rms_norm_matches_the_reference_forward_and_backward(shape: tuple[int, int, int]) -> None:
    """s, y and ∂x, ∂m, ∂w of the kernel equal the torch ops' within fp32 rounding."""
    g = torch.Generator().manual_seed(0)
    x, m, gs, gy = (torch.randn(*shape, generator=g).to(DEVICE) for _ in range(4))
    w = (1 + 0.1 * torch.randn(shape[-1], generator=g)).to(DEVICE)
    fused = _grads(norm_triton.fused_add_rms_norm, x, m, w, gs, gy)
    ref = _grads(norm_triton.add_rms_norm_reference, x, m, w, gs, gy)
    for name, a, b in zip(("s", "y", "dx", "dm", "dw"), fused, ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), name


def test_fused_add_rms_norm_writes_y_in_the_autocast_dtype_and_m_grad_in_ms() -> None:
    """Under bf16 autocast y is bf16 (what the next linear reads) and ∂m has m's dtype; s stays fp32."""
    x = torch.randn(2, 3, 16, device=DEVICE)
    m = torch.randn(2, 3, 16, device=DEVICE, dtype=torch.bfloat16).requires_grad_()
    w = torch.ones(16, device=DEVICE)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        s, y = norm_triton.fused_add_rms_norm(x, m, w, None)
    y.float().sum().backward()
    assert (s.dtype, y.dtype, m.grad.dtype) == (torch.float32, torch.bfloat16, torch.bfloat16)
