"""Which container stores a model (its plan's `export`), and loading any artifact by its bytes.

    res = pack_artifact(model, work, meta=meta)    # work/model.q2bn, or work/model.int8.ptz for plan int8
    model, header = load_artifact(path)            # Q2BN (zstd magic) or the baseline's int8 + zlib

The plan table (`golfmodel/quant/plan.py`) says which container an arm exports to, so callers
(the pack and validate stages, the exported runner) never test an arm's name (STYLE §11).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from golfmodel.q2bn.artifact import PackResult, load_model, pack_model, storage_plan
from golfmodel.q2bn.format import ZSTD_MAGIC
from golfmodel.q2bn.int8zlib import load_int8zlib, pack_int8zlib
from golfmodel.quant.plan import EXPORT_SUFFIX

SUFFIX = EXPORT_SUFFIX
LABEL = {"q2bn": "q2bn", "int8zlib": "int8_zlib"}  # as the challenge's logs name them


def export_of(model: nn.Module) -> str:
    """The container of `model`'s plan: "q2bn" or "int8zlib"."""
    return storage_plan(model).export


def artifact_filename(model: nn.Module, stem: str = "model") -> str:
    """`stem` + the container's suffix (model.q2bn, model.int8.ptz)."""
    return stem + SUFFIX[export_of(model)]


def pack_artifact(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any],
    linear_kind: str = "q2",
    stem: str = "model",
) -> PackResult:
    """Write `model` in its plan's container; `path` is a file, or a folder (then `stem` + suffix inside)."""
    target = Path(path)
    if target.is_dir():
        target = target / artifact_filename(model, stem)
    if export_of(model) == "int8zlib":
        return pack_int8zlib(model, target, meta=meta)
    return pack_model(model, target, meta=meta, linear_kind=linear_kind)


def load_artifact(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Load either container, told apart by the file's first bytes (zstd frame → Q2BN, else int8 + zlib)."""
    with Path(path).open("rb") as f:
        head = f.read(4)
    return (load_model if head == ZSTD_MAGIC else load_int8zlib)(path)
