"""param_report: per-tensor storage kinds and payload bytes, checked against the real packers."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from golfmodel.model import ModelConfig, build_model, param_report
from golfmodel.q2bn.artifact import pack_model
from golfmodel.q2bn.int8zlib import pack_int8zlib

META = {"tokenizer": {"id": "test", "vocab_size": 64}, "settings_hash": "0" * 64}


def test_q2_rows_cost_two_bits_plus_fp16_tau(q2_model: nn.Module) -> None:
    """A (out, in) Q2Linear weight costs out·(2 + ceil(in/4)) bytes; its τ is not listed apart."""
    rows = {r.name: r for r in param_report(q2_model)}
    down = rows["groups.0.0.mlp.down.weight"]  # (32, 80)
    assert (down.kind, down.shape, down.bytes) == ("q2", (32, 80), 32 * (2 + 20))
    assert not any(name.endswith(".tau") for name in rows)


def test_tied_head_is_an_alias_of_zero_bytes(q2_model: nn.Module) -> None:
    """lm_head.weight aliases the int8 embedding."""
    rows = {r.name: r for r in param_report(q2_model)}
    assert (rows["lm_head.weight"].kind, rows["lm_head.weight"].bytes) == ("alias", 0)
    assert (rows["tok_emb.weight"].kind, rows["tok_emb.weight"].bytes) == ("int8", 64 * (32 + 2))


def test_report_matches_the_q2bn_packer(q2_model: nn.Module, tmp_path: Path) -> None:
    """Every tensor's kind and payload equal what pack_model writes (an alias record holds a u16 index)."""
    model = q2_model
    packed = {t.name: t for t in pack_model(model, tmp_path / "m.q2bn", meta=META).tensors}
    report = param_report(model)
    assert [r.name for r in report] == list(packed)
    for r in report:
        t = packed[r.name]
        kind = {"q2_rows": "q2", "int8_rows": "int8"}.get(t.kind, t.kind)
        assert (kind, r.bytes + (2 if r.kind == "alias" else 0)) == (r.kind, t.payload_bytes), r.name


def test_report_matches_the_int8zlib_packer(tiny_gpt: ModelConfig, tmp_path: Path) -> None:
    """gpt-int8 kinds and payloads follow the baseline export (small tensors float, control ones fp32)."""
    cfg = ModelConfig.from_dict({**tiny_gpt.to_dict(), "d_model": 256, "n_heads": 4, "vocab_size": 260})
    model = build_model(cfg)
    packed = {t.name: t for t in pack_int8zlib(model, tmp_path / "m.ptz", meta=META).tensors}
    names = {"float16": "fp16", "float32": "fp32"}
    report = param_report(model)
    assert {r.name for r in report} == set(packed)
    for r in report:
        assert (names.get(packed[r.name].kind, packed[r.name].kind), packed[r.name].payload_bytes) == (
            r.kind,
            r.bytes,
        ), r.name
    assert {r.kind for r in report} == {"int8", "fp16", "fp32", "alias"}


def test_report_counts_every_parameter_once(q2_model: nn.Module) -> None:
    """Summed numel of non-alias rows = parameters + the bigram buffer."""
    model = q2_model
    rows = param_report(model)
    stored = sum(r.numel for r in rows if r.kind != "alias")
    assert stored == sum(p.numel() for p in model.parameters()) + 64 * 64
    assert all(r.numel == math.prod(r.shape) for r in rows)


def test_report_works_on_the_meta_device(q2_model: nn.Module, tiny_q2: ModelConfig) -> None:
    """Shapes are enough: a meta model gives the same report."""
    with torch.device("meta"):
        meta_rows = param_report(build_model(tiny_q2))
    assert meta_rows == param_report(q2_model)
