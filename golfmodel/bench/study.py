"""The multi-arm study (issue 12): every arm tuned, at equal trained bytes, at several budgets.

    result = run_study(StudyConfig(arms=("q2", "int8"), budgets=(40_000,)), data, out, execute=local(2))

Order: (1) shapes of every arm × budget (`study_plan.plan_budget`; fill ≥ 95% checked, printed);
(2) the LR sweep, in waves, on held-out TRAINING tokens (`study_lr`), the choice printed and
saved as `lr.json`; (3) the main units, arm × budget × seed, with the chosen LRs; (4) the
aggregate (`aggregate_budget`), the fits (`study_fit`) and the report (`study_report`).

Units are independent `ArmSpec`s run by `execute(specs) -> {key: result}`: the local pool of the
3-arm bench (`local(workers)`: two at a time, one thread each) or the Prefect task runs of
`golf.flows.bench` (each unit a task run; a work pool can spread them). Each unit is cached by
its key in its run folder, so an interrupted study resumes unit by unit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from golfmodel.bench import stats
from golfmodel.bench.minigolf import aggregate_arm, run_specs, tokens_per_byte
from golfmodel.bench.minigolf_arm import ArmSpec
from golfmodel.bench.minigolf_config import Log
from golfmodel.bench.minigolf_data import BenchData, ensure_bigram
from golfmodel.bench.minigolf_plan import ArmPlan
from golfmodel.bench.study_arms import BASELINE, BIGRAM_SUFFIX, StudyArm
from golfmodel.bench.study_lr import choose_lr, format_choices, save_choices, split_holdout, sweep_points
from golfmodel.bench.study_plan import StudyConfig, plan_budget, unit_spec

Execute = Callable[[Sequence[ArmSpec]], dict[str, dict[str, Any]]]
MAX_REFITS = 2  # rounds of the fit to trained bytes
REFIT_HEADROOM = 1.01  # a refit aims ~1% under the budget: trained sizes vary by a few 0.1% across seeds


def local(workers: int, log: Log = print) -> Execute:
    """The local executor: the 3-arm bench's process pool, `workers` units side by side."""
    return lambda specs: run_specs(specs, workers, log)


def _sweep(
    cfg: StudyConfig, plans: dict[int, dict[str, ArmPlan]], arms: Sequence[StudyArm], data: BenchData,
    out: Path, execute: Execute, log: Log,
) -> dict[tuple[str, int], tuple[float, float]]:  # fmt: skip
    """The chosen (muon_lr, adam_lr) of every arm × budget; twins take their arm's, levers their base's.

    sweep_at "main": only the main budget sweeps; the trend budgets take its choices (fewer runs;
    the LRs of a width-scaled model are assumed to transfer across these small budget steps).
    """
    from golfmodel.train.config import OptimConfig

    d = OptimConfig()
    own = [a for a in arms if not a.is_twin and a.lever is None]
    swept = {b: s for b, s in plans.items() if cfg.sweep_at == "all" or b == cfg.bench.budget_bytes}
    lrs: dict[tuple[str, int], tuple[float, float]] = {
        (a.name, b): (d.muon_lr, d.adam_lr) for a in own for b in swept
    }
    if cfg.lr_sweep != "off":
        held = split_holdout(data, cfg.holdout_tokens, out / "data")
        rows: dict[tuple[str, int], list[dict[str, Any]]] = {k: [] for k in lrs}
        best_muon: dict[tuple[str, int], float] = {}
        for wave in (1, 2):
            specs = []
            for a in own:
                for b, shapes in swept.items():
                    pts = sweep_points(
                        cfg.lr_sweep,
                        cfg.muon_lrs,
                        cfg.adam_lrs,
                        wave=wave,
                        best_muon=best_muon.get((a.name, b)),
                    )
                    for lr in pts:
                        specs.append(unit_spec(cfg, a, shapes[a.name], held, out, budget=b, seed=cfg.bench.first_seed,
                                               lr=lr, group="sweep", scale=cfg.sweep_scale))  # fmt: skip
            if not specs:
                continue
            log(f"LR sweep wave {wave}: {len(specs)} runs at {cfg.sweep_scale:g}x tokens, "
                "scored on held-out training tokens")  # fmt: skip
            res = execute(specs)
            for s in specs:
                r = res[s.key]
                rows[(s.name, s.extra["budget"])].append(
                    {
                        "muon_lr": s.extra["muon_lr"],
                        "adam_lr": s.extra["adam_lr"],
                        "holdout_bpb": r["final_bpb"],
                    }
                )
            best_muon = {k: choose_lr(v)["muon_lr"] for k, v in rows.items() if v}
        choices = {f"{n}@{b}": choose_lr(v) for (n, b), v in rows.items()}
        save_choices(out / "lr.json", choices)
        log(format_choices(choices))
        lrs = {k: (choices[f"{k[0]}@{k[1]}"]["muon_lr"], choices[f"{k[0]}@{k[1]}"]["adam_lr"]) for k in lrs}
    main_b = cfg.bench.budget_bytes
    for a in own:
        for b in plans:
            lrs.setdefault((a.name, b), lrs[(a.name, main_b)])  # sweep_at main: the main budget's choice
    for a in arms:
        if a.is_twin or a.lever is not None:
            for b in plans:
                lrs[(a.name, b)] = lrs[(a.shape_of or a.base, b)]  # type: ignore[index]
    return lrs


def _fit_bytes(
    cfg: StudyConfig, plans: dict[int, dict[str, ArmPlan]], lrs: dict[tuple[str, int], tuple[float, float]],
    data: BenchData, out: Path, execute: Execute, log: Log,
) -> tuple[dict[int, dict[str, ArmPlan]], list[dict[str, Any]]]:  # fmt: skip
    """Fit every budget-bound arm to its budget on TRAINED bytes, at its chosen LR (the plans, the refits).

    The first seed of every arm (twins aside) trains at every budget; an arm whose artifact lands
    outside [min_fill, 100%] of its budget is re-solved with its size prediction scaled by
    measured/predicted (× REFIT_HEADROOM) and trained again, up to MAX_REFITS rounds. Why: how well
    trained weights compress depends on the LR and the training length (the int8 arm's int8 + zlib
    rows at 120 KB: 111 KB after 61 steps at Muon LR 0.02, 134 KB at 0.08, 150 KB after 244 steps
    at 0.08), so no ratio table measured beforehand holds for every arm's chosen LR. These runs
    are the main table's first seed (cached units), so an arm that fits costs nothing extra.
    """
    scales: dict[int, dict[str, float]] = {b: {} for b in plans}
    # the first shapes' depths: the gpt arm's refit is never shallower (study_plan._solve)
    depths = {b: {n: int(p.model["depth"]) for n, p in shapes.items()} for b, shapes in plans.items()}
    refits: list[dict[str, Any]] = []
    first = cfg.bench.first_seed
    for rnd in range(MAX_REFITS + 1):
        specs = [
            unit_spec(cfg, a, plans[b][a.name], data, out, budget=b, seed=first, lr=lrs[(a.name, b)], group="main")
            for b in plans
            for a in cfg.arms_at(b)
            if not a.is_twin and (a.lever is None or a.ablation.model)
        ]  # fmt: skip
        res = execute(specs)
        bad = []
        for s in specs:
            b, got = s.extra["budget"], res[s.key]["artifact_bytes"]
            if not cfg.min_fill <= got / b <= 1.0:
                bad.append((s.name, b, got, plans[b][s.name]))
        if not bad or rnd == MAX_REFITS:
            for name, b, got, _ in bad:
                log(f"{b:,} B  {name}: still {got / b:.1%} of the budget after the refits (flagged ⚠)")
            break
        changed = False
        for name, b, got, shape in bad:
            predicted = shape.solver["artifact_bytes"]
            scale = scales[b].get(name, 1.0) * got / predicted * (REFIT_HEADROOM if got > b else 1.0)
            trial = {**scales[b], name: scale}
            try:
                replanned = plan_budget(cfg, b, data, out, trial, depths[b])
            except ValueError as e:  # the solver cannot place a shape in [min_fill, 100%] at this scale
                log(f"{b:,} B  {name}: trained {got / b:.1%} of the budget; no refit ({e}); flagged ⚠")
                continue
            new = replanned[name]
            if new.params == shape.params:
                log(f"{b:,} B  {name}: trained {got / b:.1%} of the budget; the re-solve at sizes × {scale:.4f} "
                    "gives the same shape (the solver's width/MLP steps), kept and flagged ⚠")  # fmt: skip
                continue
            scales[b], plans[b], changed = trial, replanned, True
            refits.append({"arm": name, "budget": b, "round": rnd + 1, "params": shape.params,
                           "predicted_bytes": predicted, "trained_bytes": got, "scale": scale,
                           "new_params": new.params, "new_predicted_bytes": new.solver["artifact_bytes"]})  # fmt: skip
            log(f"{b:,} B  {name}: trained artifact {got:,} B against a prediction of {predicted:,}; re-solved "
                f"with sizes × {scale:.4f}: {shape.params:,} → {new.params:,} params")  # fmt: skip
        if not changed:
            break
    return plans, refits


def run_study(
    cfg: StudyConfig, data: BenchData, out_dir: str | Path, *, execute: Execute | None = None,
    json_path: str | Path | None = None, log: Log = print,
) -> dict[str, Any]:  # fmt: skip
    """Plan, sweep, run and aggregate the study; writes study.md, minigolf.json, bench.json, lr.json and plots."""
    from golfmodel.bench import study_report

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    execute = execute or local(cfg.bench.workers, log)
    arms = cfg.study_arms()
    if any(a.bigram for a in arms):
        data = ensure_bigram(data, out / "data", log)
    plans = {b: plan_budget(cfg, b, data, out) for b in cfg.all_budgets}
    for b, shapes in plans.items():
        for name, p in shapes.items():
            twin = " (fp32 twin: its arm's shape; not budget-bound)" if p.kind == "q2-geode-fp32" else ""
            short = (
                f" ⚠ below the {cfg.min_fill:.0%} minimum: the solver has no shape in between (its width/MLP "
                "steps), so this arm trains on fewer bytes than its budget"
                if not twin and p.solver["fill"] < cfg.min_fill
                else ""
            )
            log(f"{b:,} B  {name}: {p.params:,} params, solver fill {p.solver['fill']:.1%}, "
                f"{p.tokens:,} tokens ({p.steps} steps){twin}{short}")  # fmt: skip
    lrs = _sweep(cfg, plans, arms, data, out, execute, log)
    plans, refits = _fit_bytes(cfg, plans, lrs, data, out, execute, log)
    specs = [
        unit_spec(
            cfg,
            a,
            plans[b][a.name],
            data,
            out,
            budget=b,
            seed=cfg.bench.first_seed + i,
            lr=lrs[(a.name, b)],
            group="main",
        )  # fmt: skip
        for b in plans
        for i in range(cfg.seeds_at(b))
        for a in cfg.arms_at(b)
    ]
    log(f"main runs: {len(specs)} (arms x budgets x seeds)")
    results = execute(specs)
    result = aggregate_study(cfg, arms, plans, specs, results)
    for b, m in (result.get("budgets") or {str(cfg.bench.budget_bytes): result["arms"]}).items():
        for name, e in m.items():
            flag = (
                ""
                if e["fill_ok"]
                else f"  OUTSIDE [{cfg.min_fill:.0%}, 100%] of the budget (the solver predicts trained bytes)"
            )
            log(
                f"{int(b):,} B  {name}: trained artifact {e['artifact_bytes']:,} bytes, fill {e['fill']:.1%}{flag}"
            )
    lr_file = out / "lr.json"
    result["details"]["refits"] = refits
    result["details"]["lr_choices"] = json.loads(lr_file.read_text()) if lr_file.exists() else None
    result["details"]["data"] = data.to_dict()
    result["details"]["out_dir"] = str(out)
    result["details"]["config"] = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    study_report.write_all(result, out, json_path=None if json_path is None else Path(json_path))
    return result


def baseline_of(arm: StudyArm) -> str:
    """The name of the int8 arm `arm` is compared with (`int8+bigram` for a +bigram arm)."""
    return BASELINE + (BIGRAM_SUFFIX if arm.bigram else "")


def aggregate_budget(
    arms: Sequence[StudyArm], shapes: dict[str, ArmPlan], rows: dict[str, list[dict[str, Any]]],
    budget: int, margin_nats: float, min_fill: float = 0.95,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The `arms` map of one budget: shape, fill, tokens, LR, bpb ± std, Δ vs int8 (Welch p), penalty vs twin."""
    out: dict[str, dict[str, Any]] = {}
    for a in arms:
        r = rows[a.name]
        agg = aggregate_arm(r)
        fills = [x["artifact_bytes"] / budget for x in r]
        out[a.name] = {
            "plan": a.plan, "arch": a.arch, "kind": a.kind, "params": agg["params"],
            "artifact_bytes": agg["artifact_bytes"], "budget_bytes": budget,
            "fill": stats.summarize(fills).mean, "solver_fill": shapes[a.name].solver["fill"],
            "budget_bound": not a.is_twin, "fill_ok": a.is_twin or min_fill <= stats.summarize(fills).mean <= 1.0,
            "tokens": agg["tokens"], "tokens_per_param": agg["tokens_per_param"],
            "lr": {"muon": r[0]["lr"][0], "adam": r[0]["lr"][1]},
            "prequant_bpb": agg["prequant_bpb"], "prequant_bpb_std": agg["prequant_bpb_std"],
            "final_bpb": agg["final_bpb"], "final_bpb_std": agg["final_bpb_std"], "n_seeds": agg["n_seeds"],
            "seeds": agg["seeds"],
        }  # fmt: skip
    for a in arms:
        e = out[a.name]
        e["delta_vs_int8"] = e["p_vs_int8"] = e["penalty_vs_twin"] = None
        e["lever"], e["base"] = a.lever, a.base
        e["delta_vs_base"] = e["p_vs_base"] = None
        if a.base is not None and a.base in out:
            e["delta_vs_base"] = e["final_bpb"] - out[a.base]["final_bpb"]
            seed_b = {x["seed"]: x["final_bpb"] for x in rows[a.base]}
            pairs = [(x["final_bpb"], seed_b[x["seed"]]) for x in rows[a.name] if x["seed"] in seed_b]
            if len(pairs) >= 2:  # two-sided paired t-test over the seeds both ran
                e["p_vs_base"] = stats.paired_ttest([p[0] for p in pairs], [p[1] for p in pairs]).p
        ref = baseline_of(a)  # the int8 arm with the same bigram setting: the prior is never one side's edge
        base = rows.get(ref)
        e["vs"] = ref if base is not None and a.name != ref else None
        if e["vs"] is not None:
            tpb = tokens_per_byte(base)
            t = stats.gain_test([x["final_bpb"] for x in base], [x["final_bpb"] for x in rows[a.name]],
                                tokens_per_byte=tpb, margin_nats=margin_nats)  # fmt: skip
            e["delta_vs_int8"], e["p_vs_int8"] = e["final_bpb"] - out[ref]["final_bpb"], t.p
        twin = next((t for t in arms if t.shape_of == a.name), None)
        if twin is not None:
            e["penalty_vs_twin"] = e["final_bpb"] - out[twin.name]["final_bpb"]
    return out


def _gap_pair(arms: Sequence[StudyArm]) -> dict[str, str]:
    """The (q2, int8) pair the trend's gap is fitted on: the plain pair, else the +bigram one."""
    names = {a.name for a in arms}
    for suffix in ("", BIGRAM_SUFFIX):
        if "q2" + suffix in names and BASELINE + suffix in names:
            return {"q2": "q2" + suffix, "int8": BASELINE + suffix}
    return {}


def aggregate_study(
    cfg: StudyConfig, arms: Sequence[StudyArm], plans: dict[int, dict[str, ArmPlan]], specs: Sequence[ArmSpec],
    results: dict[str, dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """The study JSON: the 3-arm bench's keys (main budget) + `arms` (main budget) + `budgets` + `details`."""
    from golfmodel.bench.study_fit import fit_study

    by: dict[int, dict[str, list[dict[str, Any]]]] = {b: {a.name: [] for a in cfg.arms_at(b)} for b in plans}
    for s in specs:
        by[s.extra["budget"]][s.name].append(
            {**results[s.key], "lr": (s.extra["muon_lr"], s.extra["adam_lr"])}
        )
    budgets = {
        b: aggregate_budget(cfg.arms_at(b), plans[b], by[b], b, cfg.bench.margin_nats, cfg.min_fill)
        for b in plans
    }
    main_b = cfg.bench.budget_bytes
    main = budgets[main_b]
    out: dict[str, Any] = {}
    for a in arms:
        if a.legacy:
            out[a.legacy] = aggregate_arm(by[main_b][a.name])
    q2, twin, i8 = (by[main_b].get(n) for n in ("q2", "fp32-twin", BASELINE))
    out["penalty_bpb"] = out["p_penalty"] = out["gain_bpb"] = out["p_gain"] = None
    if q2 and twin:
        seed_t = {r["seed"]: r["final_bpb"] for r in twin}
        pairs = [(r["final_bpb"], seed_t[r["seed"]]) for r in q2 if r["seed"] in seed_t]
        out["penalty_bpb"] = main["q2"]["final_bpb"] - main["fp32-twin"]["final_bpb"]
        out["p_penalty"] = stats.penalty_test([p[0] for p in pairs], [p[1] for p in pairs]).p
    if q2 and i8:
        out["gain_bpb"] = main[BASELINE]["final_bpb"] - main["q2"]["final_bpb"]
        out["p_gain"] = main["q2"]["p_vs_int8"]
    out["arms"] = main
    if len(budgets) > 1:
        out["budgets"] = {str(b): m for b, m in budgets.items()}
    tpb = tokens_per_byte(next(iter(by[main_b].values())))
    out["details"] = {
        "main_budget": main_b, "margin_nats": cfg.bench.margin_nats, "tokens_per_byte": tpb,
        "margin_bpb": stats.nats_to_bpb(cfg.bench.margin_nats, tpb), "eval": dataclasses.asdict(cfg.bench.eval),
        "fit": fit_study({b: budgets[b] for b in budgets}, **_gap_pair(arms)), "lr_sweep": cfg.lr_sweep,
    }  # fmt: skip
    return out
