"""`golf bench step`: the step-cost model's table for a job, today's design beside the fused one.

    golf bench step --preset h100x8 [--arm gpt-int8] [--gpu H200] [--design after] [--json FILE]

The command line (presets, settings) lives in `golf.flows.cli`, which builds the `TrainJob` and
calls `run(job, ...)` here. Counting the blocks on this CPU takes ~1-2 minutes the first time;
the counts are cached under `cache_dir` (by model config, counted code and torch version).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfmodel.bench.step_cost import AFTER, GPUS, TODAY, Projection, calibration_ratio, project
from golfmodel.bench.step_count import count_arm

DESIGNS = {"today": TODAY, "after": AFTER}


@dataclass(frozen=True, kw_only=True)
class StepCost:
    """Both designs of one job, calibrated, and the calibration run itself."""

    today: Projection
    after: Projection
    baseline: Projection | None  # the calibration arm (gpt-int8, the baseline's loop), calibrated
    ratio: float
    uncalibrated_baseline_ms: float | None  # None: the ratio was given, not computed

    def summary(self, design: str = "today") -> dict[str, Any]:
        p = self.today if design == "today" else self.after
        return {
            "arm": p.arm,
            "params": p.params,
            "gpu": p.gpu,
            "world_size": p.world_size,
            "design": p.design,
            "step_ms": p.step_ms,
            "uncalibrated_step_ms": p.uncalibrated_step_ms,
            "calibration_ratio": self.ratio,
            "baseline_uncalibrated_ms": self.uncalibrated_baseline_ms,
            "steps_in_budget": p.steps_in_budget,
            "tokens_in_budget": p.tokens_in_budget,
            "eval_seconds": p.eval_seconds,
            "graphs": p.graphs,
            "compile_warmup_seconds": p.compile_warmup_seconds,
            "projection": True,  # until `golf doctor gpu` measures it
            "designs": {"today": self.today.to_dict(), "after": self.after.to_dict()},
            "calibration": self.baseline.to_dict() if self.baseline else None,
        }

    def format(self) -> str:
        head = (
            f"# step-cost model (PROJECTION): {self.today.arm}, {self.today.world_size} x {self.today.gpu}, "
            f"{self.today.tokens_per_step:,} tokens/step\n"
        )
        if self.baseline is None or self.uncalibrated_baseline_ms is None:
            return (
                head
                + f"# calibration ratio {self.ratio:.3f} (given)\n"
                + format_table([self.today, self.after])
            )
        err = self.uncalibrated_baseline_ms / self.baseline.step_ms - 1
        head += (
            f"# calibration: gpt-int8 (the baseline's loop) projects {self.uncalibrated_baseline_ms:.2f} ms "
            f"vs the measured {self.baseline.step_ms:.2f} ms ({err:+.0%}); ratio {self.ratio:.3f} applied below"
        )
        return head + "\n" + format_table([self.baseline, self.today, self.after])


def step_cost(
    job: Any,
    *,
    world_size: int,
    gpu: str = "H100",
    cache_dir: str | Path | None = None,
    eval_stride: int = 64,
    ratio: float | None = None,
) -> StepCost:
    """Count (or load) the arm's and the baseline's units, project both designs, calibrate.

    ratio: use this calibration ratio instead of counting the baseline (tests, or a measured one).
    """
    if gpu not in GPUS:
        raise ValueError(f"gpu: unknown {gpu!r}; known: {sorted(GPUS)}")
    from golfmodel.bench.step_cost import baseline_job

    base = None
    if ratio is None:
        base_job = baseline_job(job.model.vocab_size)
        base_counts = count_arm(base_job.model, seq_len=base_job.train.seq_len, cache_dir=cache_dir)
        ratio, base = calibration_ratio(base_counts)
    counts = count_arm(job.model, seq_len=job.train.seq_len, cache_dir=cache_dir)
    kw = dict(world_size=world_size, gpu=GPUS[gpu], eval_stride=eval_stride)
    today = project(job, counts, design=TODAY, **kw).calibrated(ratio)
    after = project(job, counts, design=AFTER, **kw).calibrated(ratio)
    return StepCost(
        today=today,
        after=after,
        baseline=base.calibrated(ratio) if base else None,
        ratio=ratio,
        uncalibrated_baseline_ms=base.uncalibrated_step_ms if base else None,
    )


def run(
    job: Any,
    *,
    world_size: int,
    gpu: str = "H100",
    design: str = "today",
    json_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    ratio: float | None = None,
) -> int:
    """Print the table; write the summary of `design` (with both designs inside) to `json_path`."""
    if design not in DESIGNS:
        raise ValueError(f"design: must be one of {sorted(DESIGNS)}, got {design!r}")
    sc = step_cost(job, world_size=world_size, gpu=gpu, cache_dir=cache_dir, ratio=ratio)
    print(sc.format())
    if json_path:
        from golfmodel.atomic import atomic_write_text

        atomic_write_text(json_path, json.dumps(sc.summary(design), indent=2) + "\n")
    return 0


def format_table(projections: list[Projection]) -> str:
    """Component rows (device ms per step) side by side, then the step, the budget and the evaluation."""
    names: list[str] = []
    for p in sorted(projections, key=lambda p: -len(p.rows)):  # the fullest projection sets the order
        for r in p.rows:
            if r.component not in names:
                names.append(r.component)
    heads = [f"{p.arm} {p.design}" for p in projections]
    w0 = max(len(n) for n in [*names, "tokens in budget (M)"]) + 2
    ws = [max(12, len(h) + 2) for h in heads]
    out = [f"{'component (ms / step)':<{w0}}" + "".join(f"{h:>{w}}" for h, w in zip(heads, ws, strict=True))]
    for n in names:
        cells = []
        for p, w in zip(projections, ws, strict=True):
            r = next((r for r in p.rows if r.component == n), None)
            cells.append(f"{(r.device_s * 1e3 if r else 0.0):>{w}.2f}" if r else f"{'-':>{w}}")
        out.append(f"{n:<{w0}}" + "".join(cells))
    summary = [
        ("step, uncalibrated", lambda p: f"{p.uncalibrated_step_ms:.2f}"),
        ("calibration ratio", lambda p: f"{p.calibration_ratio:.3f}"),
        ("step, calibrated", lambda p: f"{p.step_ms:.2f}"),
        ("steps in budget", lambda p: f"{p.steps_in_budget:,}"),
        ("tokens in budget (M)", lambda p: f"{p.tokens_in_budget / 1e6:,.0f}"),
        ("eval s (stride 64, all)", lambda p: f"{p.eval_seconds:.1f}"),
        ("graphs to compile", lambda p: f"{p.graphs}"),
        ("compile warm-up s", lambda p: f"{p.compile_warmup_seconds:.0f}"),
    ]
    out.append("-" * (w0 + sum(ws)))
    for label, fn in summary:
        out.append(f"{label:<{w0}}" + "".join(f"{fn(p):>{w}}" for p, w in zip(projections, ws, strict=True)))
    return "\n".join(out)
