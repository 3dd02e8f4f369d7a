"""The minigolf study on Prefect: every unit (arm × budget × seed, LR points) is a task run.

    golf bench minigolf --engine prefect --arms q2,int8 --budgets 80000,160000   # the golf CLI
    golf_bench_study(argv=[...], workers=2)                                       # the flow itself

`golf-bench-study` runs `golfmodel.bench.minigolf_bench.main(argv)` with an executor that submits
each wave of units as `bench-unit` task runs, `workers` at a time (ThreadPoolTaskRunner; each
unit's trainer is its own one-thread subprocess, so two workers use two cores as the local pool
does). Units are cached and resumable in their run folders, so a study longer than a session
resumes where it stopped. `golf-bench-arm` is one unit as a flow, the entry point of a
deployment: with `deployment="golf-bench-arm/NAME"` each unit becomes a flow run of that
deployment instead, so a work pool of GPU nodes spreads them; the study folder must then be on
storage every worker shares (the unit's result is read back from its run folder).
"""

# No `from __future__ import annotations`: Prefect builds the parameter models from the annotations.

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from golf.tasks.bench import bench_unit


@task(name="bench-unit-remote")
def bench_unit_remote(spec: dict[str, Any], deployment: str) -> dict[str, Any]:
    """Run one unit as a flow run of `deployment` and read its result back from its run folder."""
    import json

    from prefect.deployments import run_deployment

    state = run_deployment(deployment, parameters={"spec": spec}, timeout=None).state
    if state is None or not state.is_completed():
        raise RuntimeError(
            f"unit {spec['name']} (run folder {spec['run_dir']}): deployment run ended {state}"
        )
    return json.loads((Path(spec["run_dir"]) / "result.json").read_text())


def task_executor(deployment: str | None = None) -> Any:
    """An executor for `golfmodel.bench.study.run_study`: one task run per unit (inside a flow)."""
    from golfmodel.bench.minigolf_arm import ArmSpec

    def execute(specs: Sequence[ArmSpec]) -> dict[str, dict[str, Any]]:
        unique = {s.key: s for s in specs}
        if deployment is None:
            futures = {k: bench_unit.submit(s.to_dict()) for k, s in unique.items()}
        else:
            futures = {k: bench_unit_remote.submit(s.to_dict(), deployment) for k, s in unique.items()}
        return {k: f.result() for k, f in futures.items()}

    return execute


@flow(name="golf-bench-arm", persist_result=False)
def golf_bench_arm(spec: dict[str, Any]) -> dict[str, Any]:
    """One study unit (for a `golf-bench-arm` deployment on a GPU work pool)."""
    return bench_unit(spec)


@flow(name="golf-bench-study", persist_result=False, log_prints=True)
def golf_bench_study(argv: list[str], deployment: str | None = None) -> int:
    """The whole study: `golf bench minigolf ARGV` with every unit a task run (or deployment flow run)."""
    from golfmodel.bench import minigolf_bench

    code = minigolf_bench.main(argv, execute=task_executor(deployment))
    if code != 0:
        raise RuntimeError(f"golf bench minigolf {' '.join(argv)} exited {code}")
    return code


def run(argv: list[str], *, workers: int = 2, deployment: str | None = None) -> int:
    """Run the study flow with `workers` units at a time; the exit code of the bench."""
    import torch

    torch.set_num_threads(1)  # units score in this process's threads: one thread each, as the local pool
    study = golf_bench_study.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    state = study(argv=list(argv), deployment=deployment, return_state=True)
    if state.is_completed():
        return int(state.result())
    print(f"error: the study flow ended {state.type.value}: {state.message}", file=sys.stderr)
    return 1
