"""Fixtures of the scorer tests: the sample validation tokens, the sp1024 byte table, tiny fake vocabularies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from golfmodel.eval import ByteTable


@pytest.fixture(scope="session")
def val_tokens(val_shard: Path) -> np.ndarray:
    """The sample validation shard's 93,187 tokens (uint16)."""
    try:
        from golfmodel.data.shards import read_shard
    except ImportError:  # the shard reader is another package's; fall back to the raw format
        return np.fromfile(val_shard, dtype="<u2", offset=1024)
    return np.asarray(read_shard(val_shard, vocab_size=1024))


@pytest.fixture(scope="session")
def sp_table(sp_model_path: Path) -> ByteTable:
    return ByteTable.from_sentencepiece(sp_model_path)


@pytest.fixture()
def tiny_table() -> ByteTable:
    """8 ids: 0..1 boundary (pad, BOS), 2..4 plain pieces of 1..3 bytes, 5..7 `▁`-pieces of 1..3 bytes."""
    return ByteTable(
        base_bytes=np.array([0, 0, 1, 2, 3, 1, 2, 3], dtype=np.int16),
        has_space=np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=np.bool_),
        is_boundary=np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=np.bool_),
        vocab_size=8,
        kind="test",
    )
