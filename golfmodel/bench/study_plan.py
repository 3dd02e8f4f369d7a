"""Planning the multi-arm study (issue 12): shapes per arm × budget, token budgets, and the unit runs.

    cfg = StudyConfig(bench=BenchConfig(...), arms=("q2", "int8"), budgets=(40_000, 80_000))
    shapes = plan_budget(cfg, 80_000, data, out)      # {arm: ArmPlan} at that budget
    spec = unit_spec(cfg, arm, shape, data, out, budget=80_000, seed=1337, lr=(0.04, 0.008), group="main")

Every arm is solved for the same budget on TRAINED bytes (`budget.solve` with its plan; fill ≥
`min_fill`, 95% by default, checked here and printed by the study); fp32 twins take their arm's
shape and tokens. Tokens: the int8 arm keeps the tokens per parameter of the reference point
(`bench.int8_tokens` at `bench.budget_bytes`) at every budget, so compute grows as budget²;
every other arm gets int8_tokens·(params_int8/params)^0.5 (`--match gpu-tokens`, as the 3-arm
bench). Each (arm, budget, seed) is one `ArmSpec` — an independent unit, cached by its key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golfmodel.bench.minigolf_arm import ArmSpec, arm_key
from golfmodel.bench.minigolf_config import Ablation, BenchConfig, check_changes
from golfmodel.bench.minigolf_data import BenchData
from golfmodel.bench.minigolf_mixed import mixed_plan_for
from golfmodel.bench.minigolf_plan import (
    ArmPlan,
    _model_config,
    _param_count,
    make_job,
    matched_tokens,
    solve_shape,
    steps_for,
)
from golfmodel.bench.study_arms import BASELINE, DEFAULT_ARMS, StudyArm, parse_arms
from golfmodel.bench.study_lr import DEFAULT_ADAM_LRS, DEFAULT_HOLDOUT_TOKENS, DEFAULT_MUON_LRS

STUDY_MIN_FILL = 0.95
# the first solve of an arm stops the study only below this fill (the 3-arm bench's minimum); between
# it and min_fill the arm runs flagged ⚠ (int6 with SubLN at 120 KB: 94.4%, the solver's MLP step of 16)
SOLVER_FLOOR = 0.9


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """The study: arms × budgets × seeds, the LR sweep and the bigram prior; trainer/eval from `bench`."""

    bench: BenchConfig = field(default_factory=BenchConfig)  # budget_bytes = the main (reference) budget
    arms: tuple[str, ...] = DEFAULT_ARMS
    bigram_prior: str = "off"  # off | on | both
    budgets: tuple[int, ...] = ()  # extra budgets of the scaling trend (the main budget is always run)
    trend_seeds: int = 1  # seeds at budgets other than the main one
    lr_sweep: str = "coord"  # off | coord | grid
    muon_lrs: tuple[float, ...] = DEFAULT_MUON_LRS
    adam_lrs: tuple[float, ...] = DEFAULT_ADAM_LRS
    sweep_scale: float = 0.25  # sweep runs train this fraction of the arm's tokens
    sweep_at: str = "all"  # all: every budget sweeps; main: the trend budgets take the main budget's LRs
    holdout_tokens: int = DEFAULT_HOLDOUT_TOKENS  # held-out TRAINING tokens the sweep is scored on
    min_fill: float = STUDY_MIN_FILL

    def __post_init__(self) -> None:
        for arm in parse_arms(self.arms, bigram=self.bigram_prior):  # raises naming the bad arm
            if arm.lever is not None:
                try:
                    check_changes(arm.ablation, sub_norm=self.bench.sub_norm)
                except ValueError as e:
                    raise ValueError(f"--arms: {arm.name!r}: {e}") from None
        if self.sweep_at not in ("all", "main"):
            raise ValueError(f"sweep_at: must be all or main, got {self.sweep_at!r}")
        if self.lr_sweep not in ("off", "coord", "grid"):
            raise ValueError(f"lr_sweep: must be off, coord or grid, got {self.lr_sweep!r}")
        for name, lrs in (("muon_lrs", self.muon_lrs), ("adam_lrs", self.adam_lrs)):
            if not 1 <= len(lrs) <= 3 or any(x <= 0 for x in lrs):
                raise ValueError(f"{name}: 1 to 3 positive learning rates, got {lrs}")
        if any(b <= 0 for b in self.budgets):
            raise ValueError(f"budgets: every budget must be > 0 bytes, got {self.budgets}")
        if not 0 < self.sweep_scale <= 1:
            raise ValueError(f"sweep_scale: must be in (0, 1], got {self.sweep_scale}")
        if self.trend_seeds < 1:
            raise ValueError(f"trend_seeds: must be >= 1, got {self.trend_seeds}")
        if self.bench.match != "gpu-tokens":
            raise ValueError(
                "the study matches arms by gpu-tokens (a token budget per arm); --match time is 3-arm only"
            )

    @property
    def all_budgets(self) -> tuple[int, ...]:
        """Every budget of the study, ascending (the main budget included)."""
        return tuple(sorted({self.bench.budget_bytes, *self.budgets}))

    def seeds_at(self, budget: int) -> int:
        return self.bench.seeds if budget == self.bench.budget_bytes else self.trend_seeds

    def study_arms(self) -> tuple[StudyArm, ...]:
        return parse_arms(self.arms, bigram=self.bigram_prior)

    def arms_at(self, budget: int) -> tuple[StudyArm, ...]:
        """The arms run at `budget`: lever arms (the ablation rows) at the main budget only."""
        arms = self.study_arms()
        return arms if budget == self.bench.budget_bytes else tuple(a for a in arms if a.lever is None)

    def at(self, budget: int) -> BenchConfig:
        """The bench config of one budget (its keep-float threshold scales with it)."""
        return dataclasses.replace(self.bench, budget_bytes=budget, min_fill=self.min_fill)


def _solve(
    arm: StudyArm, cfg: BenchConfig, data: BenchData, out: Path, q2_model: dict[str, Any] | None,
    scale: float = 1.0, depth: int | None = None,
) -> ArmPlan:  # fmt: skip
    """The arm's own shape at cfg's budget (not for twins; a lever arm's model fields re-solve it).

    depth: the gpt arm's refit keeps at least this many layers (its first shape's): a refit corrects
    the size and may not turn the baseline into fewer transformer blocks (the solver prefers a deeper
    model only within 2% of the most parameters, so scaled sizes had flipped int8 from 2 layers to 1
    at 120 and 160 KB: 2.89 against 2.80 bpb). A geode depth is a group of four blocks, and there the
    solver's own pick stands (at 80 KB its 1-group refit of q2-learned beat the 2-group first shape).
    """
    cache = out / "solver.json"
    plan: str | dict[str, Any] | None = None if arm.arch == "gpt" else arm.plan
    if arm.plan == "q2-mixed":
        if q2_model is None:
            raise ValueError("q2-mixed needs the q2 shape of its budget first (its probe runs at that shape)")
        ab = Ablation(name="q2-mixed", description="the allocator's plan", quant={"plan": "q2-mixed"})
        plan = mixed_plan_for(q2_model, ab, cfg, data, out).to_dict()
    try:
        solver = _solve_shape(arm, cfg, data, cache, plan, scale)
        if arm.arch == "gpt" and depth is not None and solver["config"]["depth"] < depth:
            solver = _solve_shape(arm, cfg, data, cache, plan, scale, depth)
    except ValueError as e:
        raise ValueError(f"arm {arm.name} (plan {arm.plan}) at {cfg.budget_bytes:,} bytes: {e}") from None
    model = _model_config(solver, cfg)
    return ArmPlan(
        name=arm.name, kind=arm.kind, model=model, params=_param_count(model), tokens=None, steps=None,
        seconds=None, solver=solver,
    )  # fmt: skip


def _solve_shape(
    arm: StudyArm, cfg: BenchConfig, data: BenchData, cache: Path, plan: Any, scale: float = 1.0,
    depth: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The solver's plan (cached), its fill checked (raises ValueError below the floor).

    scale multiplies the size prediction (`run_study`'s fit to trained bytes; 1.0 = the shipped ratios).
    The first solve (scale 1.0) is refused only below SOLVER_FLOOR: between it and cfg.min_fill the
    solver's grid has no fuller shape, so the arm runs flagged ⚠ (the study's log and table say so)
    instead of stopping a study of hours; a refit (scale ≠ 1.0) must reach cfg.min_fill or is not taken.
    """
    model = arm.ablation.model if arm.lever is not None else {}  # sub_norm / pattern, at equal bytes
    kw = {k: model[k] for k in ("pattern", "sub_norm") if k in model}
    if scale == 1.0:
        cfg = dataclasses.replace(cfg, min_fill=min(cfg.min_fill, SOLVER_FLOOR))
    return solve_shape(
        arm.solver_arm, data.vocab_size, cfg, cache, plan=plan,
        bigram_prior=arm.bigram, bigram_table=data.bigram_logprior, size_scale=scale, groups=depth, **kw,
    )  # fmt: skip


def int8_tokens_per_param(cfg: StudyConfig, data: BenchData, out: Path) -> tuple[float, int]:
    """(tokens per parameter of the int8 arm at the reference point, its parameter count there)."""
    ref = _solve(parse_arms(BASELINE)[0], cfg.at(cfg.bench.budget_bytes), data, out, None)
    return cfg.bench.int8_tokens / ref.params, ref.params


def plan_budget(
    cfg: StudyConfig, budget: int, data: BenchData, out: Path, scales: dict[str, float] | None = None,
    depths: dict[str, int] | None = None,
) -> dict[str, ArmPlan]:  # fmt: skip
    """Every arm's shape and token budget at `budget` (the int8 shape is solved even when not an arm).

    scales: arm name → size-prediction factor from the fit to trained bytes (`run_study`). The token
    budgets stay anchored to the unscaled int8 solve (the reference point), so refitting one arm's
    shape changes no other arm's tokens; a refitted int8 arm keeps its tokens with fewer parameters.
    depths: arm name → its first shape's depth, the least a gpt arm's refit may have (see `_solve`).
    """
    scales, depths = scales or {}, depths or {}
    bcfg = cfg.at(budget)
    arms = cfg.arms_at(budget)
    tpp, _ = int8_tokens_per_param(cfg, data, out)
    i8 = _solve(parse_arms(BASELINE)[0], bcfg, data, out, None)
    int8_tokens = max(1, round(tpp * i8.params))
    shapes: dict[str, ArmPlan] = {}
    q2_models: dict[bool, dict[str, Any]] = {}
    for arm in sorted(
        (a for a in arms if not a.is_twin), key=lambda a: (a.lever is not None, a.plan == "q2-mixed")
    ):
        if arm.lever is not None and not arm.ablation.model:
            shapes[arm.name] = dataclasses.replace(shapes[arm.base], name=arm.name)  # type: ignore[index]
            continue
        if arm.plan == "q2-mixed" and arm.bigram not in q2_models:
            q2_models[arm.bigram] = _solve(
                parse_arms("q2" + ("+bigram" if arm.bigram else ""))[0], bcfg, data, out, None
            ).model
        shape = _solve(
            arm, bcfg, data, out, q2_models.get(arm.bigram), scales.get(arm.name, 1.0), depths.get(arm.name)
        )
        if arm.plan == "q2":
            q2_models[arm.bigram] = shape.model
        tokens = int8_tokens if arm.arch == "gpt" else matched_tokens(int8_tokens, i8.params, shape.params)
        steps = steps_for(tokens, bcfg.global_batch_tokens)
        shapes[arm.name] = dataclasses.replace(shape, tokens=steps * bcfg.global_batch_tokens, steps=steps)
    for arm in arms:
        if arm.is_twin:
            src = shapes[arm.shape_of]  # type: ignore[index]
            shapes[arm.name] = dataclasses.replace(src, name=arm.name, kind=arm.kind)
    return {a.name: shapes[a.name] for a in arms}


def unit_spec(
    cfg: StudyConfig,
    arm: StudyArm,
    shape: ArmPlan,
    data: BenchData,
    out: Path,
    *,
    budget: int,
    seed: int,
    lr: tuple[float, float],
    group: str,
    scale: float = 1.0,
) -> ArmSpec:
    """One unit run: `arm` at `budget` × `seed` with (muon_lr, adam_lr); group "main" or "sweep".

    A sweep unit trains `scale` of the arm's steps on `data` (the held-out split) with no periodic
    validation, and is scored on `data.val_shards` — held-out training tokens, never validation.
    """
    bcfg = cfg.at(budget)
    if group == "sweep":
        bcfg = dataclasses.replace(
            bcfg, val_points=0, checkpoints=0, eval=dataclasses.replace(bcfg.eval, max_tokens=None)
        )
    steps = max(1, round((shape.steps or 1) * scale))
    plan = dataclasses.replace(shape, steps=steps, tokens=steps * bcfg.global_batch_tokens)
    lever = arm.ablation  # None, or the lever's trainer overrides (the LR stays the sweep's)
    ab = Ablation(
        name="lr" if lever is None else lever.name, description="",
        optim={**(lever.optim if lever else {}), "muon_lr": lr[0], "adam_lr": lr[1]},
        qat=lever.qat if lever else {}, averaging=lever.averaging if lever else {},
        schedule=lever.schedule if lever else {},
    )  # fmt: skip
    recal = bcfg.recalibrate if lever is None or lever.recalibrate is None else lever.recalibrate
    job = make_job(plan, bcfg, data, seed=seed, est_steps=steps, ablation=ab)
    spec = ArmSpec(
        name=arm.name, kind=arm.kind, seed=seed, job=job, eval=bcfg.eval, val_shards=data.val_shards,
        tokenizer=data.tokenizer, recalibrate=recal if arm.kind == "q2-geode" else "off",
        data_hash=data.hash,
        pack_options={"keep_float": bcfg.int8_keep_float_numel} if arm.kind == "gpt-int8" else {},
        group=group, ablation=None,
        extra={"budget": budget, "plan": arm.plan, "arch": arm.arch, "solver_fill": shape.solver["fill"],
               "muon_lr": lr[0], "adam_lr": lr[1], "description": "", "lever": arm.lever, "base": arm.base},
    )  # fmt: skip
    key = arm_key(spec)
    tag = "sweep-" if group == "sweep" else ""
    safe = arm.name.replace("+", "_").replace("~", "_").replace("=", "-")
    run_dir = out / "arms" / f"{tag}{safe}-b{budget}-s{seed}-{key[:10]}"
    return dataclasses.replace(spec, job={**job, "out_dir": str(run_dir)}, key=key, run_dir=str(run_dir))


def fill_table(cfg: StudyConfig, data: BenchData, out: Path) -> str:
    """Every arm's solver fill at every budget, without training (`--plan-only`); ⚠ below `min_fill`.

    Solves with the minimum lifted (so every point is shown) and marks the ones the study would refuse.
    """
    loose = dataclasses.replace(cfg, min_fill=0.0)
    arms = [a for a in cfg.study_arms() if not a.is_twin and (a.lever is None or a.ablation.model)]
    lines = ["| budget | " + " | ".join(a.name for a in arms) + " |", "|---:|" + "---:|" * len(arms)]
    for b in cfg.all_budgets:
        shapes = plan_budget(loose, b, data, out)
        cells = []
        for a in arms:
            p = shapes[a.name]
            mark = "" if p.solver["fill"] >= cfg.min_fill else " ⚠"
            cells.append(f"{p.solver['fill']:.2%} ({p.params:,} p){mark}")
        lines.append(f"| {b:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
