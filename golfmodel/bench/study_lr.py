"""The study's per-arm LR sweep: a held-out slice of the TRAINING shards, the grid, and the choice.

    fit, holdout = split_holdout(data, 65_536, out / "data")   # BenchData for sweep runs
    points = sweep_points(cfg, wave=1)                          # [(muon_lr, adam_lr), ...]
    best = choose_lr(rows)                                      # lowest held-out bpb wins

Selection never looks at validation tokens (SPEC §3): sweep runs train on the training shards
minus their last `holdout_tokens` tokens (cut at a document start when one is near) and are
scored — packed, reloaded, bits per byte, exactly like a main run — on that held-out tail.
`coord` sweeps Muon's LR at the grid's middle Adam LR (wave 1), then Adam's LR at the best Muon LR
(wave 2): 5 runs for 3 + 3 points; `grid` runs every pair in one wave (9 runs).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from golfmodel.bench.minigolf_arm import sha256_json
from golfmodel.bench.minigolf_data import BenchData

# Centred on what the default-token sweep chose (16 M int8 tokens, 120 KB: Muon 0.04 and Adam 0.032 for
# q2, int6 and int8 alike); the first grid (Adam 0.004-0.016) had its corner chosen by 6 of 7 arms at
# 2 M tokens (docs/decisions/study.md). The trainer's 0.02/0.008 is under-tuned at this scale.
DEFAULT_MUON_LRS = (0.02, 0.04, 0.08)
DEFAULT_ADAM_LRS = (0.016, 0.032, 0.064)
DEFAULT_HOLDOUT_TOKENS = 65_536
DOC_SEARCH = 4096  # tokens before the cut searched for a document start (BOS)
BOS = 1


def split_holdout(data: BenchData, holdout_tokens: int, out_dir: Path) -> BenchData:
    """`data` for sweep runs: train = the training stream minus its tail, val = the tail (training tokens).

    Written once as two official shards under out_dir/holdout-<key>/ (keyed by the data hash and
    the size); the returned BenchData's `val_shards` are the held-out TRAINING tokens.
    """
    from golfmodel.atomic import atomic_write_json
    from golfmodel.data.shards import read_shard, write_shard

    if holdout_tokens < 2:
        raise ValueError(f"holdout_tokens: must be >= 2, got {holdout_tokens}")
    key = sha256_json({"data": data.hash, "holdout": holdout_tokens})[:16]
    dest = out_dir / f"holdout-{key}"
    fit, held = dest / "fineweb_train_000000.bin", dest / "fineweb_holdout_000000.bin"
    if not (dest / "done.json").exists():
        stream = np.concatenate(
            [np.asarray(read_shard(p, vocab_size=data.vocab_size)) for p in data.train_shards]
        )
        if len(stream) < 4 * holdout_tokens:
            raise ValueError(
                f"holdout_tokens: {holdout_tokens} is more than a quarter of the {len(stream)} training tokens"
            )
        cut = len(stream) - holdout_tokens
        window = stream[max(0, cut - DOC_SEARCH) : cut + 1]
        starts = np.flatnonzero(window == BOS)
        if starts.size:  # start the held-out slice at a document boundary when one is close
            cut = max(0, cut - DOC_SEARCH) + int(starts[-1])
        write_shard(fit, stream[:cut])
        write_shard(held, stream[cut:])
        atomic_write_json(
            dest / "done.json", {"cut": cut, "fit_tokens": cut, "holdout_tokens": len(stream) - cut}
        )
    return dataclasses.replace(
        data,
        train_shards=(str(fit),),
        val_shards=(str(held),),
        hash=sha256_json({"data": data.hash, "holdout": holdout_tokens, "role": "lr-sweep"}),
    )


def default_adam(adam_lrs: Sequence[float]) -> float:
    """The Adam LR wave 1 holds fixed: the middle point of the grid (the upper middle of two)."""
    return sorted(adam_lrs)[len(adam_lrs) // 2]


def sweep_points(
    mode: str,
    muon_lrs: Sequence[float],
    adam_lrs: Sequence[float],
    *,
    wave: int,
    best_muon: float | None = None,
) -> list[tuple[float, float]]:
    """(muon_lr, adam_lr) pairs of one wave; coord wave 2 needs the best Muon LR of wave 1."""
    if mode == "grid":
        return [(m, a) for m in muon_lrs for a in adam_lrs] if wave == 1 else []
    if mode != "coord":
        raise ValueError(f"lr_sweep: must be off, coord or grid, got {mode!r}")
    a0 = default_adam(adam_lrs)
    if wave == 1:
        return [(m, a0) for m in muon_lrs]
    if best_muon is None:
        raise ValueError("coord wave 2 needs the best Muon LR of wave 1")
    return [(best_muon, a) for a in adam_lrs if a != a0]


def choose_lr(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The sweep row with the lowest held-out final bpb (ties: the earlier row): {muon_lr, adam_lr, bpb, points}."""
    if not rows:
        raise ValueError("choose_lr: no sweep rows")
    best = min(rows, key=lambda r: r["holdout_bpb"])
    return {
        "muon_lr": best["muon_lr"],
        "adam_lr": best["adam_lr"],
        "holdout_bpb": best["holdout_bpb"],
        "points": [{k: r[k] for k in ("muon_lr", "adam_lr", "holdout_bpb")} for r in rows],
    }


def format_choices(choices: dict[str, dict[str, Any]]) -> str:
    """One line per arm@budget: the chosen LRs and the sweep's held-out bpb at each point."""
    lines = []
    for name, c in choices.items():
        pts = ", ".join(f"{p['muon_lr']:g}/{p['adam_lr']:g}: {p['holdout_bpb']:.4f}" for p in c["points"])
        lines.append(
            f"LR {name}: muon {c['muon_lr']:g}, adam {c['adam_lr']:g} (held-out train bpb {c['holdout_bpb']:.4f}; "
            f"muon/adam: bpb {pts})"
        )
    return "\n".join(lines)


def save_choices(path: Path, choices: dict[str, dict[str, Any]]) -> None:
    from golfmodel.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(choices, indent=2, sort_keys=True) + "\n")
