"""The q2-mixed sensitivity probe (toy size) and the allocator's choice on synthetic tables."""

from __future__ import annotations

import numpy as np
import pytest

from golfmodel.model import build_model
from golfmodel.model.allocate import allocate
from golfmodel.model.config import ModelConfig
from golfmodel.model.sensitivity import ProbeConfig, SensitivityRow, SensitivityTable, _batches, run_probe
from golfmodel.model.trained_ratio import TrainedRatios

FLAT = TrainedRatios({"q2bn": {"q2": 1.0, "int4": 1.0, "int8": 1.0}})


def _table(rows: list[SensitivityRow], gain: float = 0.0) -> SensitivityTable:
    cfg = ModelConfig(arm="geode", vocab_size=64, d_model=32, depth=2, n_heads=2, n_kv_heads=1, mlp_mult=2.0)
    return SensitivityTable(
        config=cfg.to_dict(), probe={}, base_loss=3.0, narrow_loss=None, narrow_d_model=None,
        width_gain_per_byte=gain, rows=tuple(rows), seconds=0.0,
    )  # fmt: skip


def _rows(family: str, depth: int, numel: int, deltas: dict[str, float]) -> list[SensitivityRow]:
    bits = {"q2": 2, "int4": 4, "int8": 8}
    return [
        SensitivityRow(
            family=family, depth=depth, spec=s, numel=numel, payload_bytes=numel * bits[s] // 8, delta_loss=d
        )
        for s, d in deltas.items()
    ]


def test_sensitive_part_is_upgraded_and_robust_part_is_not() -> None:
    """The part whose 2-bit error is large gets more bits; one that loses nothing stays at q2."""
    rows = _rows("mlp_down", 0, 1000, {"q2": 0.2, "int4": 0.01, "int8": 0.0})
    rows += _rows("attn_qkv", 0, 1000, {"q2": 0.0005, "int4": 0.0, "int8": 0.0})
    alloc = allocate(_table(rows, gain=1e-5), ratios=FLAT)
    chosen = {r.family: r.spec for r in alloc.choices}
    assert chosen["attn_qkv"] == "q2" and chosen["mlp_down"] in ("int4", "int8")


def test_width_rate_blocks_upgrades_that_pay_less() -> None:
    """An upgrade saving less loss per byte than width buys is refused."""
    rows = _rows("mlp_in", 1, 1000, {"q2": 0.01, "int8": 0.0})  # 0.01 nats for 750 bytes
    assert allocate(_table(rows, gain=1e-3), ratios=FLAT).choices[0].spec == "q2"
    assert allocate(_table(rows, gain=1e-6), ratios=FLAT).choices[0].spec == "int8"


def test_budget_caps_the_upgrades() -> None:
    """With a fixed-shape budget the parts' bytes never exceed it; the best rate is bought first."""
    rows = _rows("mlp_down", 0, 1000, {"q2": 0.2, "int8": 0.0})  # 0.2 for 750 B
    rows += _rows("mlp_in", 0, 1000, {"q2": 0.05, "int8": 0.0})  # 0.05 for 750 B
    alloc = allocate(_table(rows), budget_bytes=1500, ratios=FLAT)
    assert sum(alloc.compressed_bytes.values()) <= 1500
    assert {r.family: r.spec for r in alloc.choices} == {"mlp_down": "int8", "mlp_in": "q2"}


def test_allocated_plan_builds_the_chosen_layers() -> None:
    """The q2-mixed plan gives the chosen part its spec and every other part the default plan's."""
    rows = _rows("mlp_down", 1, 1000, {"q2": 0.3, "int8": 0.0})
    plan = allocate(_table(rows), ratios=FLAT).plan
    cfg = ModelConfig(
        arm="geode", plan=plan, vocab_size=64, d_model=32, depth=2, n_heads=2, n_kv_heads=1, mlp_mult=2.0
    )
    assert plan.name == "q2-mixed"
    assert cfg.quant_plan.spec_for("mlp_down", 1).label == "int8"
    assert cfg.quant_plan.spec_for("mlp_down", 0).label == "q2"
    build_model(cfg)  # the layers exist for every family and depth


def test_probe_holds_out_the_tail_of_the_training_tokens() -> None:
    """The held-out slice is the last training tokens and the trained part never reaches it."""
    tokens = np.arange(5000) % 64
    train, held = _batches(tokens, ProbeConfig(seq_len=16, eval_seqs=4, batch_seqs=2))
    assert held.numel() == 4 * 17 and len(train) == 5000 - 4 * 17
    assert held.flatten().tolist() == (tokens[-68:]).tolist()


def test_toy_probe_measures_every_part_and_spec(tmp_path) -> None:
    """A 3-step probe at toy size: a row per part x candidate (embed: int kinds + its default) that round-trips."""
    cfg = ModelConfig(
        arm="q2-geode",
        vocab_size=64,
        d_model=32,
        depth=1,
        pattern="GC",
        n_heads=2,
        n_kv_heads=1,
        mlp_mult=2.0,
    )
    rng = np.random.default_rng(0)
    probe = ProbeConfig(
        steps=3, batch_seqs=2, seq_len=16, eval_seqs=2, candidates=("q2", "int8"), width_frac=0.5
    )
    table = run_probe(cfg, rng.integers(0, 64, 2000), probe)
    parts = {(r.family, r.depth) for r in table.rows}
    assert ("mlp_down", 0) in parts and ("cfc_out", 0) in parts and ("embed", None) in parts
    assert {r.spec for r in table.rows if r.family == "embed"} == {"int8", "int8:absmax"}  # + its default
    assert len([r for r in table.rows if r.family == "mlp_down"]) == 2
    table.save(tmp_path / "s.json")
    assert SensitivityTable.load(tmp_path / "s.json") == table


def test_probe_refuses_too_few_tokens() -> None:
    """Fewer training tokens than one batch plus the held-out slice is an error naming the count."""
    cfg = ModelConfig(
        arm="q2-geode",
        vocab_size=64,
        d_model=32,
        depth=1,
        pattern="GC",
        n_heads=2,
        n_kv_heads=1,
        mlp_mult=2.0,
    )
    with pytest.raises(ValueError, match="training tokens"):
        run_probe(cfg, np.zeros(50, dtype=np.int64), ProbeConfig(seq_len=16, eval_seqs=2, batch_seqs=2))


def test_part_breakdown_shows_spec_per_family_and_depth() -> None:
    """The report's plan table: one row per family × depth with the stored spec and its payload bytes."""
    from golfmodel.model.probe import part_breakdown

    rows = _rows("mlp_down", 1, 1000, {"q2": 0.3, "int8": 0.0})
    plan = allocate(_table(rows), ratios=FLAT).plan
    cfg = ModelConfig(
        arm="geode", plan=plan, vocab_size=64, d_model=32, depth=2, n_heads=2, n_kv_heads=1, mlp_mult=2.0
    )
    parts = {(r["family"], r["depth"]): r for r in part_breakdown(cfg)}
    assert parts[("mlp_down", 1)]["specs"] == ["int8"] and parts[("mlp_down", 0)]["specs"] == ["q2"]
    assert parts[("mlp_down", 1)]["payload_bytes"] > parts[("mlp_down", 0)]["payload_bytes"]
    assert parts[("embed", None)]["specs"] == ["int8"]
