"""Where and how a training process runs: rank/world, device, backend, autocast, weight checks.

Nothing here reads the environment: `golfmodel.train.__main__` reads RANK/WORLD_SIZE/LOCAL_RANK
into a `DistEnv` and passes it down.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from golfmodel.train.config import TrainConfig


@dataclass(frozen=True, kw_only=True)
class DistEnv:
    """Where this process sits in the run (read from RANK/WORLD_SIZE/LOCAL_RANK by `__main__` only)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(cfg: TrainConfig, local_rank: int = 0) -> torch.device:
    """cuda:<local_rank> for device=cuda (or auto with a GPU), else cpu."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_backend(cfg: TrainConfig, device: torch.device) -> str:
    """nccl on CUDA, gloo on CPU, unless the config names one."""
    if cfg.backend != "auto":
        return cfg.backend
    return "nccl" if device.type == "cuda" else "gloo"


def state_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict (names and bytes, in order): equal hashes = identical weights."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (dtype bf16/auto); a no-op on CPU, which always runs fp32."""
    if device.type == "cuda" and dtype in ("bf16", "auto"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def all_finite(model: nn.Module) -> bool:
    """Every parameter finite (one reduction, one host sync)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all().item()) if flags else True
