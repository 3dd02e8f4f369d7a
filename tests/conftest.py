"""Shared fixtures: the real FineWeb sample mirror (../shared/fineweb-sample) and tmp dirs.

Area-specific fixtures live in `tests/<area>/conftest.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The fused CfC scan's Triton kernels take CPU tensors only under Triton's interpreter, which
# `triton.jit` reads when it decorates them (when golfmodel is imported): set it before any test
# module imports golfmodel, on machines without CUDA (a GPU machine tests the compiled kernels).
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("GOLFTEST_SAMPLE", REPO.parent / "shared" / "fineweb-sample")).resolve()


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """Root of the sample mirror (the hub repository's root; holds `datasets/`)."""
    if not (SAMPLE / "datasets" / "manifest.json").exists():
        pytest.fail(f"sample mirror missing at {SAMPLE} (set GOLFTEST_SAMPLE)")
    return SAMPLE


@pytest.fixture(scope="session")
def sample_data(sample_root: Path) -> Path:
    """The sample's `datasets/` folder (manifest.json, datasets/, tokenizers/, docs_selected.jsonl)."""
    return sample_root / "datasets"


@pytest.fixture(scope="session")
def sp_model_path(sample_data: Path) -> Path:
    return sample_data / "tokenizers" / "fineweb_1024_bpe.model"


@pytest.fixture(scope="session")
def val_shard(sample_data: Path) -> Path:
    return sample_data / "datasets" / "fineweb10B_sp1024" / "fineweb_val_000000.bin"


@pytest.fixture(scope="session")
def train_shard(sample_data: Path) -> Path:
    return sample_data / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000000.bin"


@pytest.fixture(scope="session")
def docs_jsonl(sample_data: Path) -> Path:
    return sample_data / "docs_selected.jsonl"


@pytest.fixture(scope="session")
def step_cost_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts dir whose step-cost cache holds `golfmodel.doctor.SMOKE_MODEL`'s counts (counted once)."""
    from golfmodel.bench.step_count import count_arm
    from golfmodel.doctor import SMOKE_MODEL, SMOKE_SEQ_LEN

    root = tmp_path_factory.mktemp("artifacts")
    count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=root / "cache" / "step_cost")
    return root
