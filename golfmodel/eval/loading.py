"""Reload a scored model from its artifact alone, and wrap it for the scorer (autocast by device).

    model, fmt = load_artifact(path)          # fmt: "q2bn" | "int8_zlib", told by the file's first byte
    model_fn = model_fn_for(model, device)    # idx (B,T) -> logits, bf16 autocast on CUDA

Kept apart from `golfmodel.eval.run` (the CLI engine) because the exported train_gpt.py ships
these few lines and not the engine: every shipped byte counts against the 16,000,000.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

Dtype = Literal["auto", "bf16", "fp32"]


def load_artifact(path: str | Path) -> tuple[nn.Module, str]:
    """(model in eval mode, format "q2bn" | "int8_zlib") rebuilt from an artifact file alone."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such artifact")
    from golfmodel.q2bn.container import load_artifact as load
    from golfmodel.q2bn.format import ZSTD_MAGIC

    with path.open("rb") as f:
        head = f.read(len(ZSTD_MAGIC))
    model, _ = load(path)  # the container is told apart by these same first bytes
    return model.eval(), "q2bn" if head == ZSTD_MAGIC else "int8_zlib"


def model_fn_for(model: nn.Module, device: torch.device, dtype: Dtype = "auto") -> Any:
    """idx (B,T) -> logits (B,T,V): bf16 autocast on CUDA unless dtype=fp32; fp32 on CPU."""
    bf16 = device.type == "cuda" and dtype != "fp32"

    def fn(idx: torch.Tensor) -> torch.Tensor:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            return model(idx)

    return fn
