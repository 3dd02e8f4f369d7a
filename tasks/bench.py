"""Prefect task of the minigolf study: one unit (arm × budget × seed, or an LR-sweep point).

    result = bench_unit.submit(spec.to_dict()).result()     # inside a flow (golf.flows.bench)

A thin adapter over `golfmodel.bench.minigolf_arm.run_arm`: the unit trains in its own trainer
subprocess (one thread) and is cached by its key in its run folder, so a retried or re-run unit
reads its result back (or resumes from its last checkpoint). Retries: transient faults only.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.tasks.retries import TRANSIENT_RETRIES


def unit_run_name() -> str:
    """Task-run name: the unit's arm, budget and seed (LR points for sweep units)."""
    from prefect.runtime import task_run

    s = task_run.parameters["spec"]
    x = s.get("extra", {})
    tag = f" lr {x.get('muon_lr')}/{x.get('adam_lr')}" if s.get("group") == "sweep" else ""
    return f"{s.get('group')}-{s['name']}-b{x.get('budget')}-s{s['seed']}{tag}"


@task(
    name="bench-unit",
    task_run_name=unit_run_name,
    cache_policy=NO_CACHE,
    persist_result=False,
    **TRANSIENT_RETRIES,
)
def bench_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """Train, pack, reload and score one unit; its result record (cached in its run folder)."""
    from golfmodel.bench.minigolf_arm import ArmSpec, run_arm

    return run_arm(ArmSpec.from_dict(spec))
