"""The golf pipeline flow: download → tokenise → bigram → train → recalibrate → pack → size check →
validate → report.

    golf run --preset smoke                      # every stage (cached ones are skipped)
    golf run --preset smoke --stages train,pack  # those two; upstream records come from the cache
    golf run --preset smoke --from pack          # pack and everything after it

The flow only orders the tasks. Stage selection: a selected stage runs as a task (a cache hit
shows as Cached); an unselected stage that a selected one needs is looked up in the cache, and
when it is not there the flow fails naming it (it never runs stages you did not ask for).
"""

# No `from __future__ import annotations`: Prefect builds the parameter model (the UI form) from
# the real annotation objects; a served run cannot resolve string annotations.

import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from golf.settings import Settings
from golf.tasks import bigram, download, pack, recalibrate, report, size_check, tokenise, train, validate
from golf.tasks.cache import StageRecord
from golf.tasks.common import TRACE_LOGGER, StageFailed, StageRunner, quiet_failed_state_log
from golf.tasks.runs import RunDir, finish_report
from golf.tasks.stages import select_stages

_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", TRACE_LOGGER)


@flow(name="golf-pipeline", validate_parameters=True)
def golf_pipeline(
    settings: Settings,
    stages: list[str] | None = None,
    from_stage: str | None = None,
    force: list[str] | None = None,
) -> dict[str, Any] | State[Any]:
    """Train, pack, size-check and score a Parameter Golf model; every stage cached on its inputs."""
    log = get_run_logger()
    selected = select_stages(stages, from_stage, settings.pipeline.stages)
    run = RunDir.create(settings)
    handler = _attach_run_log(run.log_path)
    try:
        run.write_settings(settings)
        run.write_provenance(settings, {"stages": selected})
        log.info("run folder: %s; stages: %s", run.path, ", ".join(selected))
        step = StageRunner(settings, selected, force or [], run)
        message = None
        try:
            dl = step("download", download.download)
            tok = step("tokenise", tokenise.tokenise, dl)
            bg = step("bigram", bigram.bigram, tok)
            tr = step("train", train.train, tok, bg)
            rc = step("recalibrate", recalibrate.recalibrate, tr, tok)
            pk = step("pack", pack.pack, rc)
            sc = step("size_check", size_check.size_check, pk)
            va = step("validate", validate.validate, pk, tok)
            step("report", report.report, bg, tr, rc, pk, sc, va)
        except StageFailed as e:
            message = str(e)
            log.error("pipeline stopped: %s", message)
        if dl := step.records.get("download"):
            run.update_provenance(data=dl.metrics.get("provenance", {}))
        summary = finish_report(run, step.records.get("report"), step.status, summarise(step.records))
        run.write_status(step.status, "failed" if message else "completed", message)
        create_markdown_artifact(
            markdown=(run.path / "report.md").read_text(),
            key="golf-report",
            description=f"golf run {run.path.name}",
        )
        result = {"run_dir": str(run.path), "summary": summary, "message": message}
        return Failed(message=message, data=result) if message else result
    finally:
        _detach_run_log(handler)


def summarise(records: dict[str, StageRecord]) -> dict[str, Any]:
    """Headline numbers from whichever stages this run has records for."""
    out: dict[str, Any] = {}
    for rec in records.values():
        for k, v in rec.values.items():
            if k.endswith(("_bpb", "_bytes")) or k in ("bpb",):
                out[k] = v
    return out


def _attach_run_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    for name in _RUN_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("prefect.task_runs").addFilter(quiet_failed_state_log)
    trace = logging.getLogger(TRACE_LOGGER)
    trace.setLevel(logging.DEBUG)
    trace.propagate = False
    return handler


def _detach_run_log(handler: logging.Handler) -> None:
    logging.getLogger("prefect.task_runs").removeFilter(quiet_failed_state_log)
    for name in _RUN_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
