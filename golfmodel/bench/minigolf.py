"""The minigolf bench: the Q² claim measured on a CPU, in two parts (issue 6).

    data = prepare_data(train_shards, val_shards, variant="byte260", sp_model=..., out_dir=out / "data")
    result = run_bench(BenchConfig(budget_bytes=120_000, int8_tokens=N, seeds=3), data, out)

Arms, trained by the same trainer (`python -m golfmodel.train`, one thread each, `workers` side by
side) on the same training shards and scored by the same scorer on the same validation stream,
each on the model reloaded from its packed artifact:
- (a) `q2-geode`: the solver's q2-geode shape for `budget_bytes`, 2-bit QAT, packed as Q2BN;
- (b) `q2-geode-fp32`: the same ModelConfig and token count, QAT never on, Q2BN with fp32 rows;
- (c) `gpt-int8`: the solver's gpt-int8 shape for the same budget, int8 + zlib after training.
The 2-bit penalty is a − b (paired by seed), the A/B gain c − a (positive: q2-geode wins).

Matching (a) and (c): `gpu-tokens` gives gpt-int8 `int8_tokens` tokens and every other arm
int8_tokens·(params_int8/params_arm)^0.5 — the H100 observation that a 4.3× larger model ran
2.1× slower per step (the ternary record against the baseline), so token budgets are known up
front and arms run side by side; `time` gives every arm `seconds` of training wall-clock (the
challenge's rule; on a CPU it over-penalises the larger arm). Steps = tokens / global batch.

Ablations (`ablations=("gqa-only", ...)`) are small overrides of the q2-geode arm's job, run at
`ablation_scale` of its budget with one seed and reported against q2-geode at the same budget.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from golfmodel.bench import stats
from golfmodel.bench.minigolf_arm import (
    ArmSpec,
    cached_result,
    run_arm,
)
from golfmodel.bench.minigolf_config import (
    ABLATION_NAMES,
    DEFAULT_BUDGET_BYTES,
    DEFAULT_INT8_TOKENS,
    MAIN_ARMS,
    MIN_FILL,
    Ablation,
    BenchConfig,
    Log,
    expand_ablations,
    parse_ablation,
)
from golfmodel.bench.minigolf_data import BenchData, ensure_bigram, prepare_data, shard_variant
from golfmodel.bench.minigolf_plan import build_specs, matched_tokens, solve_shape, steps_for

# The bench's public surface (the CLI and tests use `minigolf.<name>`); the pieces live in
# minigolf_config (options, ablations), minigolf_data (shards, bigram), minigolf_plan (shapes,
# token matching, jobs), minigolf_arm (one run) and minigolf_report (tables, JSON, plot).
__all__ = [
    "ABLATION_NAMES",
    "DEFAULT_BUDGET_BYTES",
    "DEFAULT_INT8_TOKENS",
    "MAIN_ARMS",
    "MIN_FILL",
    "Ablation",
    "BenchConfig",
    "BenchData",
    "aggregate",
    "expand_ablations",
    "matched_tokens",
    "parse_ablation",
    "prepare_data",
    "public_json",
    "run_bench",
    "shard_variant",
    "solve_shape",
    "steps_for",
]

# --- running -----------------------------------------------------------------------------------------


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _label(s: ArmSpec) -> str:
    """`q2 seed 1337`, with the study's budget and, for sweep units, the LR point."""
    x = s.extra
    at = f" @{x['budget']:,} B" if "budget" in x else ""
    lr = f" (sweep: muon {x['muon_lr']:g}, adam {x['adam_lr']:g})" if s.group == "sweep" else ""
    return f"{s.name}{at} seed {s.seed}{lr}"


def run_specs(specs: Sequence[ArmSpec], workers: int, log: Log = print) -> dict[str, dict[str, Any]]:
    """Run every distinct spec (by key), `workers` at a time; results by key. Cached ones are read back."""
    unique: dict[str, ArmSpec] = {}
    for s in specs:
        unique.setdefault(s.key, s)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for key, s in unique.items():
        hit = cached_result(s)
        if hit is not None:
            results[key] = {**hit, "cached": True}
        else:
            todo.append(s)
    if results:
        log(f"{len(results)} of {len(unique)} runs cached in their run folders")
    total, done = len(todo), 0
    t0 = time.perf_counter()

    def report(s: ArmSpec, r: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        log(
            f"[{done}/{total}] {_label(s)}: {r['tokens']:,} tokens, {r['tokens_per_s']:,.0f} tok/s, "
            f"prequant {r['prequant_bpb']:.4f}, final {r['final_bpb']:.4f} bpb "
            f"({r['wall_seconds'] / 60:.1f} min; {(time.perf_counter() - t0) / 60:.1f} min elapsed)"
        )

    if workers == 1 or len(todo) <= 1:
        for s in todo:
            log(f"running {_label(s)} in {s.run_dir}")
            results[s.key] = run_arm(s)
            report(s, results[s.key])
        return results
    import multiprocessing as mp

    with ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
    ) as pool:
        futures: dict[Future[dict[str, Any]], ArmSpec] = {}
        for s in todo:
            futures[pool.submit(run_arm, s)] = s
        log(f"running {total} runs, {workers} at a time (one thread each)")
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                s = futures[f]
                results[s.key] = f.result()
                report(s, results[s.key])
    return results


# --- aggregation ---------------------------------------------------------------------------------------


PER_SEED_FIELDS = (
    "seed", "steps", "tokens", "tokens_per_s", "train_seconds", "prequant_bpb", "final_bpb",
    "prequant_nll", "final_nll", "artifact_bytes", "recalibration", "curve", "cached",
)  # fmt: skip


def aggregate_arm(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One arm's entry of the bench JSON: shape, means ± std over seeds, and the per-seed values."""
    rows = sorted(rows, key=lambda r: r["seed"])
    first = rows[0]
    pre = stats.summarize([r["prequant_bpb"] for r in rows])
    fin = stats.summarize([r["final_bpb"] for r in rows])
    tokens = stats.summarize([r["tokens"] for r in rows]).mean
    return {
        "params": first["params"],
        "artifact_bytes": round(stats.summarize([r["artifact_bytes"] for r in rows]).mean),
        "steps": round(stats.summarize([r["steps"] for r in rows]).mean),
        "tokens": round(tokens),
        "tokens_per_param": tokens / first["params"],
        "tokens_per_s": stats.summarize([r["tokens_per_s"] for r in rows]).mean,
        "prequant_bpb": pre.mean,
        "prequant_bpb_std": pre.std,
        "final_bpb": fin.mean,
        "final_bpb_std": fin.std,
        "n_seeds": len(rows),
        "model": first["model"],
        "seeds": [{k: r.get(k) for k in PER_SEED_FIELDS} for r in rows],
    }


def tokens_per_byte(rows: Sequence[dict[str, Any]]) -> float:
    """Scored targets per byte of the validation stream (identical for every arm of one bench)."""
    r = rows[0]
    return r["n_targets"] / r["n_bytes"]


def aggregate(
    specs: Sequence[ArmSpec], results: dict[str, dict[str, Any]], cfg: BenchConfig
) -> dict[str, Any]:
    """The bench JSON: `{arm: {...}, penalty_bpb, gain_bpb, p_penalty, p_gain}` plus `details` (see `public_json`)."""
    by_arm: dict[str, list[dict[str, Any]]] = {a: [] for a in MAIN_ARMS}
    for s in specs:
        if s.group == "main":
            by_arm[s.name].append(results[s.key])
    arms = {a: aggregate_arm(rows) for a, rows in by_arm.items()}
    seed_of = {a: {r["seed"]: r["final_bpb"] for r in rows} for a, rows in by_arm.items()}
    seeds = sorted(set(seed_of["q2-geode"]) & set(seed_of["q2-geode-fp32"]))
    pen = stats.penalty_test(
        [seed_of["q2-geode"][s] for s in seeds], [seed_of["q2-geode-fp32"][s] for s in seeds]
    )
    tpb = tokens_per_byte(by_arm["gpt-int8"])
    gain = stats.gain_test(
        [r["final_bpb"] for r in by_arm["gpt-int8"]],
        [r["final_bpb"] for r in by_arm["q2-geode"]],
        tokens_per_byte=tpb,
        margin_nats=cfg.margin_nats,
    )
    out: dict[str, Any] = {
        **arms,
        "penalty_bpb": arms["q2-geode"]["final_bpb"] - arms["q2-geode-fp32"]["final_bpb"],
        "gain_bpb": arms["gpt-int8"]["final_bpb"] - arms["q2-geode"]["final_bpb"],
        "p_penalty": pen.p,
        "p_gain": gain.p,
    }
    ablation_rows = []
    ref = None
    for s in specs:
        if s.group != "ablation":
            continue
        r = results[s.key]
        row = {
            "ablation": s.ablation or "default",
            "description": s.extra.get("description") or "q2-geode as in the main table",
            "params": r["params"],
            "artifact_bytes": r["artifact_bytes"],
            "tokens": r["tokens"],
            "prequant_bpb": r["prequant_bpb"],
            "final_bpb": r["final_bpb"],
        }
        if s.ablation is None:
            ref = row
        ablation_rows.append(row)
    for row in ablation_rows:
        row["delta_bpb"] = row["final_bpb"] - ref["final_bpb"] if ref is not None else None
    out["details"] = {
        "penalty_test": pen.to_dict(),
        "gain_test": gain.to_dict(),
        "tokens_per_byte": tpb,
        "margin_nats": cfg.margin_nats,
        "margin_bpb": stats.nats_to_bpb(cfg.margin_nats, tpb),
        "penalty_std": stats.summarize(
            [seed_of["q2-geode"][s] - seed_of["q2-geode-fp32"][s] for s in seeds]
        ).std
        if seeds
        else None,
        "ablations": ablation_rows,
        "eval": dataclasses.asdict(cfg.eval),
    }
    return out


def public_json(result: dict[str, Any]) -> dict[str, Any]:
    """Exactly the documented shape: the three arms, penalty_bpb, gain_bpb, p_penalty, p_gain."""
    return {k: result[k] for k in (*MAIN_ARMS, "penalty_bpb", "gain_bpb", "p_penalty", "p_gain")}


def run_bench(
    cfg: BenchConfig,
    data: BenchData,
    out_dir: str | Path,
    *,
    json_path: str | Path | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Plan, run (cached) and aggregate the bench; writes minigolf.{json,md,png} and bench.json into out_dir."""
    from golfmodel.bench import minigolf_report as report

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if any(parse_ablation(a).model.get("bigram_prior") for a in cfg.ablations):
        data = ensure_bigram(data, out / "data", log)
    specs, plan = build_specs(cfg, data, out)
    for name, p in plan["arms"].items():
        budget = f"{p['tokens']:,} tokens ({p['steps']} steps)" if p["tokens"] else f"{p['seconds']:g} s"
        log(f"{name}: {p['params']:,} params, solver fill {p['solver']['fill']:.1%}, {budget}")
    results = run_specs(specs, cfg.workers, log)
    result = aggregate(specs, results, cfg)
    result["details"]["config"] = _jsonable(dataclasses.asdict(cfg))
    result["details"]["data"] = data.to_dict()
    result["details"]["plan"] = plan
    report.write_all(result, out, json_path=None if json_path is None else Path(json_path))
    return result


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
