"""Minigolf bench planning: solver shapes for both arms, token matching, and the per-arm training jobs."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_write_json
from golfmodel.bench.minigolf_arm import (
    ArmSpec,
    arm_key,
    sha256_json,
    source_hash,
)
from golfmodel.bench.minigolf_config import BASELINE_KEEP_FLOAT, Ablation, BenchConfig, parse_ablation
from golfmodel.bench.minigolf_data import BenchData
from golfmodel.bench.minigolf_mixed import mixed_plan_for

# --- planning -----------------------------------------------------------------------------------------


def matched_tokens(int8_tokens: int, params_int8: int, params_arm: int) -> int:
    """gpu-tokens matching: tokens of an arm = int8_tokens·(params_int8/params_arm)^0.5 (rounded)."""
    if params_int8 <= 0 or params_arm <= 0:
        raise ValueError(f"parameter counts must be > 0, got {params_int8} and {params_arm}")
    return round(int8_tokens * math.sqrt(params_int8 / params_arm))


def steps_for(tokens: int, global_batch_tokens: int) -> int:
    """Optimiser steps that train on about `tokens` tokens (at least one)."""
    return max(1, round(tokens / global_batch_tokens))


def solve_shape(
    arm: str,
    vocab: int,
    cfg: BenchConfig,
    cache_path: Path,
    *,
    pattern: str = "GCCC",
    bigram_prior: bool = False,
    bigram_table: str | None = None,
    sub_norm: bool | None = None,
    plan: str | dict[str, Any] | None = None,
    size_scale: float = 1.0,
    groups: int | None = None,
) -> dict[str, Any]:
    """The solver's plan for an arm at the bench budget (cached in `cache_path` by inputs + source).

    bigram_table: the bench's real bigram log-prior (.npz, named by the data hash); with
    bigram_prior the solver packs it instead of a random table, so the shape fills the budget.
    plan: a quantisation plan (name or table) for the arm's architecture instead of its default.
    size_scale: multiplies the solver's size prediction (the study's fit to trained bytes: measured
    artifact / predicted, after a first training at the chosen LR; 1.0 = the shipped ratios).
    sub_norm: None = the bench's block (cfg.sub_norm on geode; the gpt baseline never has SubLN).
    groups: fix the depth (geode groups / gpt layers) instead of letting the solver choose it.
    """
    from golfmodel.model import budget
    from golfmodel.quant.plan import arm_arch, parse_arm

    arch_arm = arm if plan is None else arm_arch(arm)  # an alias arm name fixes its own plan
    if sub_norm is None:
        sub_norm = cfg.sub_norm and arm_arch(arm) == "geode"
    baseline_export = parse_arm(arch_arm, plan)[1].export == "int8zlib"  # the baseline's float rules apply
    keep = cfg.int8_keep_float_numel if baseline_export else None
    key = sha256_json(
        {"arm": arm, "vocab": vocab, "budget": cfg.budget_bytes, "pattern": pattern, "bigram": bigram_prior,
         "bigram_table": bigram_table if bigram_prior else None, "sub_norm": sub_norm, "keep_float": keep,
         "plan": plan, "mlp_step": cfg.mlp_step, "src": source_hash(),
         **({"size_scale": size_scale} if size_scale != 1.0 else {}), **({"groups": groups} if groups else {})}
    )  # fmt: skip
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if key not in cache:
        kw: dict[str, Any] = {
            "bigram_prior": bigram_prior,
            "sub_norm": sub_norm,
            "bigram_logprior": bigram_table,
            "mlp_step": cfg.mlp_step,
        }
        if size_scale != 1.0:
            kw["ratios"] = _scaled_ratios(cfg.budget_bytes, size_scale)
        if groups is not None:
            kw["groups"] = groups
        if plan is not None:
            kw["plan"], arm = plan, arch_arm
        if keep is None:
            kw["pattern"] = pattern
        elif keep != BASELINE_KEEP_FLOAT:
            kw.update(_int8_solver_options(keep))  # type: ignore[arg-type]
        try:
            plan = budget.solve(arm, vocab, cfg.budget_bytes, **kw)
        except RuntimeError as e:
            raise ValueError(
                f"the budget solver found no {arm} shape for {cfg.budget_bytes} bytes with tensors of <= {keep} "
                f"elements kept float ({e}); pass --int8-keep-float {BASELINE_KEEP_FLOAT} for the baseline's rule"
            ) from None
        cache[key] = plan.to_dict()
        atomic_write_json(cache_path, cache)
    plan = cache[key]
    if plan["fill"] < cfg.min_fill:
        raise ValueError(
            f"the solver's {arm} model fills {plan['fill']:.1%} of {cfg.budget_bytes} bytes, below the bench's "
            f"minimum of {cfg.min_fill:.0%}; pick another budget (or lower min_fill)"
        )
    return plan


def _scaled_ratios(budget_bytes: int, scale: float) -> Any:
    """The shipped trained-byte ratios of this budget's regime with every container factor × scale."""
    from golfmodel.model.trained_ratio import TrainedRatios, load_ratios

    base = load_ratios(None, budget_bytes)
    containers = {e: base.container(e) * scale for e in ("q2bn", "int8zlib")}
    return TrainedRatios(base.ratios, containers, f"{base.source} × {scale:.4f} (fit to trained bytes)")


def _int8_solver_options(keep_float: int) -> dict[str, Any]:
    """solve() options for a gpt-int8 export that keeps only tensors of <= keep_float elements float.

    The solver's estimate follows its export config when it takes one (`int8_config`); otherwise
    only its confirming packer does, which converges when the estimate is not far off.
    """
    import inspect

    from golfmodel.model import budget

    params = inspect.signature(budget.solve).parameters
    if "int8_config" in params:
        from golfmodel.q2bn.int8zlib import Int8ZlibConfig

        return {"int8_config": Int8ZlibConfig(keep_float_max_numel=keep_float)}
    return {"packer": int8_packer(keep_float)}


def int8_packer(keep_float: int) -> Callable[[Any, Path], int]:
    """The solver's gpt-int8 packer with the bench's keep-float threshold."""
    from golfmodel.q2bn.int8zlib import Int8ZlibConfig, pack_int8zlib

    icfg = Int8ZlibConfig(keep_float_max_numel=keep_float)
    meta = {"tokenizer": {"id": "budget-probe", "vocab_size": 0}, "settings_hash": "0" * 64}

    def pack(model: Any, path: Path) -> int:
        return pack_int8zlib(model, path, meta=meta, cfg=icfg).compressed_bytes

    return pack


def _model_config(plan: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    model = dict(plan["config"])
    model["max_seq_len"] = max(cfg.seq_len, cfg.eval.seq_len)  # RoPE tables are not stored: bytes unchanged
    return model


def _param_count(model: dict[str, Any]) -> int:
    import torch

    from golfmodel.model import build_model
    from golfmodel.model.config import ModelConfig

    with torch.device("meta"):
        m = build_model(ModelConfig.from_dict(model))
    return int(sum(p.numel() for p in m.parameters()))


def probe_step_seconds(model: dict[str, Any], cfg: BenchConfig, *, qat: bool, steps: int = 3) -> float:
    """Seconds per optimiser step of `model` on this CPU with one thread (random tokens, after a warm-up step)."""
    import torch
    import torch.nn.functional as F

    from golfmodel.model import build_model
    from golfmodel.model.config import ModelConfig
    from golfmodel.train.config import OptimConfig
    from golfmodel.train.muon import build_optimizers

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = build_model(ModelConfig.from_dict(model))
        if qat:
            for group in m.qat_groups():
                for layer in group:
                    layer.set_qat(True)
        opts = build_optimizers(m, OptimConfig())
        accum = cfg.global_batch_tokens // (cfg.seq_len * cfg.micro_batch_seqs)
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, int(model["vocab_size"]), (cfg.micro_batch_seqs, cfg.seq_len + 1), generator=g)
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            for _ in range(accum):
                logits = m(x[:, :-1])  # (B, T, V)
                F.cross_entropy(logits.flatten(0, 1), x[:, 1:].reshape(-1)).backward()
            for o in opts:
                o.step()
                o.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
        return sorted(times[1:])[len(times[1:]) // 2]
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True, kw_only=True)
class ArmPlan:
    """One row of the bench before it runs: shape, token budget (or seconds), steps."""

    name: str
    kind: str
    model: dict[str, Any]
    params: int
    tokens: int | None  # gpu-tokens: the planned tokens; time: None
    steps: int | None
    seconds: float | None
    solver: dict[str, Any]


def _budget(kind_tokens: int, cfg: BenchConfig, scale: float) -> tuple[int | None, int | None, float | None]:
    if cfg.match == "time":
        return None, None, cfg.seconds * scale
    steps = steps_for(round(kind_tokens * scale), cfg.global_batch_tokens)
    return steps * cfg.global_batch_tokens, steps, None


def plan_arms(
    cfg: BenchConfig, data: BenchData, out_dir: Path
) -> tuple[list[ArmPlan], list[tuple[Ablation, ArmPlan]]]:
    """Shapes and budgets of the three main arms and of each ablation (and its default reference)."""
    solver_cache = out_dir / "solver.json"
    q2 = solve_shape("q2-geode", data.vocab_size, cfg, solver_cache)
    i8 = solve_shape("gpt-int8", data.vocab_size, cfg, solver_cache)
    q2_model, i8_model = _model_config(q2, cfg), _model_config(i8, cfg)
    p_q2, p_i8 = _param_count(q2_model), _param_count(i8_model)

    def arm_plan(
        name: str, kind: str, model: dict[str, Any], params: int, solver: dict[str, Any], scale: float
    ) -> ArmPlan:
        tokens = cfg.int8_tokens if kind == "gpt-int8" else matched_tokens(cfg.int8_tokens, p_i8, params)
        t, s, sec = _budget(tokens, cfg, scale)
        return ArmPlan(
            name=name, kind=kind, model=model, params=params, tokens=t, steps=s, seconds=sec, solver=solver
        )

    main = [
        arm_plan("q2-geode", "q2-geode", q2_model, p_q2, q2, 1.0),
        arm_plan("q2-geode-fp32", "q2-geode-fp32", q2_model, p_q2, q2, 1.0),
        arm_plan("gpt-int8", "gpt-int8", i8_model, p_i8, i8, 1.0),
    ]
    ablations: list[tuple[Ablation, ArmPlan]] = []
    if cfg.ablations:
        ref = arm_plan("q2-geode", "q2-geode", q2_model, p_q2, q2, cfg.ablation_scale)
        ablations.append((Ablation(name="default", description="q2-geode as in the main table"), ref))
        for name in cfg.ablations:
            ab = parse_ablation(name)
            model, params, solver = q2_model, p_q2, q2
            if ab.quant.get("plan") is not None:
                qplan = ab.quant["plan"]
                if qplan == "q2-mixed":
                    qplan = mixed_plan_for(q2_model, ab, cfg, data, out_dir).to_dict()
                solver = solve_shape(
                    "q2-geode", data.vocab_size, cfg, solver_cache, plan=qplan,
                    pattern=ab.model.get("pattern", "GCCC"),
                    bigram_prior=ab.model.get("bigram_prior", False), bigram_table=data.bigram_logprior,
                    sub_norm=ab.model.get("sub_norm"),
                )  # fmt: skip
                model = _model_config(solver, cfg)
                params = _param_count(model)
            elif ab.model:
                solver = solve_shape(
                    "q2-geode",
                    data.vocab_size,
                    cfg,
                    solver_cache,
                    pattern=ab.model.get("pattern", "GCCC"),
                    bigram_prior=ab.model.get("bigram_prior", False),
                    bigram_table=data.bigram_logprior,
                    sub_norm=ab.model.get("sub_norm"),
                )
                model = _model_config(solver, cfg)
                params = _param_count(model)
            ablations.append(
                (ab, arm_plan(f"q2-geode+{ab.name}", "q2-geode", model, params, solver, cfg.ablation_scale))
            )
    return main, ablations


def _est_steps(plan: ArmPlan, probes: dict[str, float]) -> int:
    """The run's steps: planned (gpu-tokens), or estimated from the probe's seconds per step (time)."""
    if plan.steps is not None:
        return plan.steps
    return max(1, int(plan.seconds / probes[sha256_json(plan.model)]))  # type: ignore[operator]


def _probes(plans: Sequence[ArmPlan], cfg: BenchConfig, out_dir: Path) -> dict[str, float]:
    """Seconds per step of each shape (time matching only: spaces the periodic validation); cached."""
    path = out_dir / "probe.json"
    probes: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for p in plans:
        key = sha256_json(p.model)
        if p.seconds is not None and key not in probes:
            probes[key] = probe_step_seconds(p.model, cfg, qat=p.kind == "q2-geode")
            changed = True
    if changed:
        atomic_write_json(path, probes)
    return probes


def make_job(
    plan: ArmPlan, cfg: BenchConfig, data: BenchData, *, seed: int, est_steps: int, ablation: Ablation | None
) -> dict[str, Any]:
    """The TrainJob dict of one arm × seed (out_dir filled in later, from the key).

    est_steps (the planned steps, or an estimate under time matching) spaces the periodic
    validation (`val_points` per run), the checkpoints and the log lines.
    """
    from golfmodel.model.config import ModelConfig
    from golfmodel.train.config import (
        AveragingConfig,
        OptimConfig,
        QATConfig,
        ScheduleConfig,
        TrainConfig,
        TrainJob,
    )

    ab = ablation or Ablation(name="default", description="")
    train = TrainConfig(
        seed=seed,
        global_batch_tokens=cfg.global_batch_tokens,
        seq_len=cfg.seq_len,
        micro_batch_seqs=cfg.micro_batch_seqs,
        max_steps=plan.steps,
        max_wallclock_seconds=plan.seconds,
        val_every=max(1, est_steps // cfg.val_points) if cfg.val_points else 0,
        val_tokens=cfg.val_tokens,
        val_batch_seqs=32,
        final_val=False,  # the bench scores the whole validation stream itself
        checkpoint_every=max(1, est_steps // cfg.checkpoints) if cfg.checkpoints else 0,
        device=cfg.device,
        dtype="fp32" if cfg.device == "cpu" else "auto",  # bf16 autocast on CUDA, as the pipeline
        threads=1,
        log_every=max(1, est_steps // 50),
        progress_bar=False,
    )
    job = TrainJob(
        model=ModelConfig.from_dict(plan.model),
        train=train,
        qat=QATConfig(**{"enabled": plan.kind == "q2-geode", **ab.qat}),
        averaging=AveragingConfig(**ab.averaging),
        optim=OptimConfig(**ab.optim),
        schedule=ScheduleConfig(**ab.schedule),
        train_shards=data.train_shards,
        val_shards=data.val_shards,
        tokenizer=data.tokenizer,
        bigram_logprior=data.bigram_logprior if plan.model.get("bigram_prior") else None,
        out_dir="-",
    )
    return job.to_dict()


def build_specs(cfg: BenchConfig, data: BenchData, out_dir: Path) -> tuple[list[ArmSpec], dict[str, Any]]:
    """Every arm × seed (main table) and every ablation run, with keys and run folders; plus the plan."""
    main, ablations = plan_arms(cfg, data, out_dir)
    probes = (
        _probes([p for p in main] + [p for _, p in ablations], cfg, out_dir) if cfg.match == "time" else {}
    )
    specs: list[ArmSpec] = []

    def add(plan: ArmPlan, seed: int, group: str, ab: Ablation | None) -> None:
        job = make_job(plan, cfg, data, seed=seed, est_steps=_est_steps(plan, probes), ablation=ab)
        recal = cfg.recalibrate if ab is None or ab.recalibrate is None else ab.recalibrate
        spec = ArmSpec(
            name=plan.name,
            kind=plan.kind,
            seed=seed,
            job=job,
            eval=cfg.eval,
            val_shards=data.val_shards,
            tokenizer=data.tokenizer,
            recalibrate=recal if plan.kind == "q2-geode" else "off",
            data_hash=data.hash,
            pack_options={"keep_float": cfg.int8_keep_float_numel} if plan.kind == "gpt-int8" else {},
            group=group,
            ablation=None if ab is None else ab.name,
            extra={"solver_fill": plan.solver["fill"], "description": "" if ab is None else ab.description},
        )
        key = arm_key(spec)
        run_dir = out_dir / "arms" / f"{plan.name.replace('=', '_')}-s{seed}-{key[:10]}"
        job = {**job, "out_dir": str(run_dir)}
        specs.append(dataclasses.replace(spec, job=job, key=key, run_dir=str(run_dir)))

    for i in range(cfg.seeds):
        for plan in main:
            add(plan, cfg.first_seed + i, "main", None)
    for ab, plan in ablations:
        add(plan, cfg.first_seed, "ablation", None if ab.name == "default" else ab)
    info = {
        "arms": {
            p.name: {
                "params": p.params,
                "tokens": p.tokens,
                "steps": p.steps,
                "seconds": p.seconds,
                "solver": p.solver,
            }
            for p in main
        },  # fmt: skip
        "ablations": {
            ab.name: {"params": p.params, "tokens": p.tokens, "seconds": p.seconds} for ab, p in ablations
        },
    }
    return specs, info
