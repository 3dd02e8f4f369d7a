"""The gpt-int8 arm's int8 + zlib export: the baseline's rules, aliases, round trip, corruption."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest
import torch

from golfmodel.q2bn.int8zlib import (
    Int8ZlibError,
    int8zlib_view,
    load_int8zlib,
    pack_int8zlib,
    quantize_state,
)

from .conftest import TinyLM, build_tiny


def test_baseline_rules_per_tensor() -> None:
    """Large 2-D → int8 rows with fp16 scales; small → fp16; control names → fp32; ints pass through."""
    state = {
        "big.weight": torch.randn(300, 256),
        "small.weight": torch.randn(8, 8),
        "blocks.0.attn_scale": torch.randn(8),
        "steps": torch.tensor([3], dtype=torch.int64),
    }
    obj = quantize_state(state)
    assert obj["quantized"]["big.weight"].dtype == torch.int8
    assert obj["scales"]["big.weight"].dtype == torch.float16 and obj["scales"]["big.weight"].shape == (300,)
    assert obj["passthrough"]["small.weight"].dtype == torch.float16
    assert obj["passthrough"]["blocks.0.attn_scale"].dtype == torch.float32
    assert torch.equal(obj["passthrough"]["steps"], state["steps"])


def test_row_scale_has_the_baseline_floor() -> None:
    """Rows with small values use the baseline's minimum scale 1/127 (before fp16 rounding)."""
    obj = quantize_state({"w": torch.full((300, 256), 0.01)})
    assert obj["scales"]["w"][0].item() == torch.tensor(1 / 127).half().item()


def test_tied_tensors_stored_once() -> None:
    """A tensor reachable under two names is stored once and listed as an alias."""
    w = torch.randn(400, 200)
    obj = quantize_state({"emb.weight": w, "head.weight": w})
    assert list(obj["quantized"]) == ["emb.weight"]
    assert obj["aliases"] == {"head.weight": "emb.weight"}


def test_round_trip_equals_view(tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path) -> None:
    """The loaded model's state equals int8zlib_view bit for bit; the file is a zlib stream."""
    path = tmp_path / "m.ptz"
    result = pack_int8zlib(tiny_model, path, meta=meta)
    assert result.compressed_bytes == path.stat().st_size
    assert len(zlib.decompress(path.read_bytes())) == result.raw_bytes
    loaded, header = load_int8zlib(path, builder=build_tiny)
    assert header["settings_hash"] == meta["settings_hash"]
    view = int8zlib_view(tiny_model)
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, view[name]), name


def test_corrupt_file_rejected(tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path) -> None:
    """A flipped byte or a truncation raises Int8ZlibError naming the file."""
    path = tmp_path / "m.ptz"
    pack_int8zlib(tiny_model, path, meta=meta)
    data = path.read_bytes()
    bad = tmp_path / "bad.ptz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(Int8ZlibError, match="bad.ptz"):
        load_int8zlib(bad, builder=build_tiny)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    bad.write_bytes(bytes(flipped))
    with pytest.raises(Int8ZlibError, match="bad.ptz"):
        load_int8zlib(bad, builder=build_tiny)
