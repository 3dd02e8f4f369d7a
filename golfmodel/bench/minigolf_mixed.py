"""Minigolf bench: the q2-mixed arm's plan — the sensitivity probe on the bench's training shards, then the allocator."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_write_json
from golfmodel.bench.minigolf_arm import sha256_json, source_hash
from golfmodel.bench.minigolf_config import Ablation, BenchConfig
from golfmodel.bench.minigolf_data import BenchData


def mixed_plan_for(
    model: dict[str, Any], ab: Ablation, cfg: BenchConfig, data: BenchData, out_dir: Path
) -> Any:
    """q2-mixed for the bench: the probe on the bench's TRAINING shards at the q2 shape, then the allocator.

    The probe's table and the allocation are saved (and cached by shape, data, probe and source)
    as `sensitivity-<key>.json` in the bench folder, and printed.
    """
    from golfmodel.model.allocate import allocate, format_allocation
    from golfmodel.model.config import ModelConfig
    from golfmodel.model.sensitivity import (
        ProbeConfig,
        SensitivityTable,
        format_table,
        load_train_tokens,
        probe_tokens_needed,
        run_probe,
    )
    from golfmodel.model.trained_ratio import load_ratios
    from golfmodel.quant.plan import plan_from_table

    kw: dict[str, Any] = {"seq_len": min(128, cfg.seq_len), "seed": cfg.first_seed}
    if "probe_steps" in ab.quant:
        kw["steps"] = int(ab.quant["probe_steps"])
    if "mixed_candidates" in ab.quant:
        kw["candidates"] = tuple(ab.quant["mixed_candidates"])
    probe = ProbeConfig(**kw)
    key = sha256_json(
        {"model": model, "probe": dataclasses.asdict(probe), "data": data.hash, "src": source_hash()}
    )
    path = out_dir / f"sensitivity-{key[:12]}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        print(format_table(SensitivityTable.from_dict(saved["sensitivity"], where=str(path))), flush=True)
        return plan_from_table(saved["allocation"]["plan"])
    cfg_model = ModelConfig.from_dict(model)
    tokens = load_train_tokens(list(data.train_shards), data.vocab_size, probe_tokens_needed(probe))
    prior = data.bigram_logprior if cfg_model.bigram_prior else None
    ratios = load_ratios(budget_bytes=cfg.budget_bytes)
    table = run_probe(cfg_model, tokens, probe, bigram_logprior=prior, ratios=ratios)
    alloc = allocate(table, export=cfg_model.quant_plan.export, ratios=ratios)
    print(format_table(table) + "\n" + format_allocation(alloc), flush=True)
    atomic_write_json(path, {"sensitivity": table.to_dict(), "allocation": alloc.to_dict()})
    return alloc.plan
