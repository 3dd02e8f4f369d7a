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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import TerminationSignal
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Failed, State

from golf.settings import Settings, SettingsError, deep_merge, resolve_settings
from golf.tasks import (
    bigram,
    download,
    drift,
    pack,
    recalibrate,
    report,
    size_check,
    tokenise,
    train,
    validate,
)
from golf.tasks.cache import StageRecord
from golf.tasks.common import TRACE_LOGGER, StageFailed, StageInterrupted, StageRunner, quiet_failed_state_log
from golf.tasks.publish import artifact_links, embed_images
from golf.tasks.runs import RunDir, finish_report
from golf.tasks.stages import select_stages
from golf.tasks.subproc import interrupt_signal

_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", TRACE_LOGGER)


# validate_parameters=False: the body validates (settings + preset + overrides as one tree), so
# a cross-field error is a line in the run's Logs, not a state message behind "See More". The
# form and the deployment's enforce_parameter_schema still check every field's own bounds.
@flow(name="golf-pipeline", validate_parameters=False)
def golf_pipeline(
    settings: Settings,
    preset: str | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    stages: list[str] | None = None,
    from_stage: str | None = None,
    force: list[str] | None = None,
) -> dict[str, Any] | State[Any]:
    """Train, pack, size-check and score a Parameter Golf model; every stage cached on its inputs.

    settings: the full settings tree (the form). preset: resolve this preset instead of `settings`
    (as `golf run --preset` does). overrides: dotted keys ({"train.max_steps": 25}) or a partial
    tree, merged on top; the whole tree is then validated, cross-field checks included.
    """
    log = get_run_logger()
    try:
        if isinstance(settings, Mapping) and isinstance(default := _deployment_settings(), Mapping):
            # A deployment run given a partial tree (`--param settings='{"train": {...}}'`): Prefect
            # replaced the deployment's whole tree with it; merge it back onto that tree instead.
            settings = deep_merge(default, settings)
        settings = resolve_settings(settings, preset, overrides)
        selected = select_stages(stages, from_stage, settings.pipeline.stages)
    except (SettingsError, ValueError) as e:
        log.error("%s", e)
        return Failed(message=str(e).replace("\n", " "))
    run = RunDir.create(settings)
    _name_flow_run(run.path.name, log)
    handler = _attach_run_log(run.log_path)
    try:
        run.write_settings(settings)
        run.write_provenance(settings, {"stages": selected})
        log.info("run folder: %s; stages: %s", run.path, ", ".join(selected))
        step = StageRunner(settings, selected, force or [], run)
        message, signum = None, None
        try:
            dl = step("download", download.download)
            tok = step("tokenise", tokenise.tokenise, dl)
            bg = step("bigram", bigram.bigram, tok)
            tr = step("train", train.train, tok, bg)
            rc = step("recalibrate", recalibrate.recalibrate, tr, tok)
            pk = step("pack", pack.pack, rc)
            sc = step("size_check", size_check.size_check, pk)
            va = step("validate", validate.validate, pk, tok, bg)
            step("report", report.report, bg, tr, rc, pk, sc, va)
        except StageInterrupted as e:
            message, signum = str(e), e.signum
        except StageFailed as e:
            message = str(e)
            log.error("pipeline stopped: %s", message)
        except (KeyboardInterrupt, TerminationSignal) as e:  # between stages
            signum = interrupt_signal(e)
            message = f"interrupted by signal {signum}"
        if signum is not None:
            log.warning("pipeline cancelled: %s", message)
        if dl := step.records.get("download"):
            run.update_provenance(data=dl.metrics.get("provenance", {}))
        summary = finish_report(run, step.records.get("report"), step.status, summarise(step.records))
        if message is None and (problems := _checked_drift(settings, run, summary, log)):
            message = "drift: " + "; ".join(problems)
            log.error("%s", message)
        state = "cancelled" if signum is not None else "failed" if message else "completed"
        run.write_status(step.status, state, message)
        _publish_report(run, log)
        result = {"run_dir": str(run.path), "summary": summary, "message": message, "signal": signum}
        if signum is not None:
            return Cancelled(message=message, data=result)
        return Failed(message=message, data=result) if message else result
    finally:
        _detach_run_log(handler)


def _deployment_settings() -> Any:
    """The `settings` default of the deployment this run belongs to (None outside a deployment)."""
    if deployment.id is None:
        return None
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment(deployment.id).parameters.get("settings")


def _name_flow_run(name: str, log: Any) -> None:
    """Name the flow run after its run folder (the UI's run list then matches `artifacts/runs/`)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, name=name)
    except Exception as e:  # the run itself does not depend on its display name
        log.warning("could not rename the flow run to %s: %s", name, e)


def _publish_report(run: RunDir, log: Any) -> None:
    """The report as the `golf-report` markdown artifact: loss chart inline, stage tables linked."""
    markdown = embed_images((run.path / "report.md").read_text(), run.path)
    try:
        links = artifact_links(flow_run.id, exclude=("golf-report",))
    except Exception as e:
        log.warning("stage artifacts not linked: %s", e)
        links = ""
    if links:
        markdown += f"\n## Stage artifacts\n\n{links}\n"
    create_markdown_artifact(markdown=markdown, key="golf-report", description=f"golf run {run.path.name}")


def _checked_drift(settings: Settings, run: RunDir, summary: dict[str, Any], log: Any) -> list[str]:
    """`_drift_check`, with a check that cannot run (the API unreachable) reported as a failure of it."""
    try:
        return _drift_check(settings, run, summary, log)
    except Exception as e:  # an unchecked nightly must not pass silently
        return [f"the drift check could not run: {type(e).__name__}: {e}"]


def _drift_check(settings: Settings, run: RunDir, summary: dict[str, Any], log: Any) -> list[str]:
    """Compare with the previous successful nightly (and the pinned reference); publish; the drifts."""
    if not drift.should_check(settings, in_deployment=deployment.id is not None):
        return []
    if summary.get("final_bpb") is None or summary.get("artifact_bytes") is None:
        log.info("drift check skipped: this run has no final bpb and artifact bytes (partial run)")
        return []
    current = drift.NightlyNumbers(
        final_bpb=float(summary["final_bpb"]), artifact_bytes=int(summary["artifact_bytes"]),
        run=run.path.name, flow_run_id=str(flow_run.id),
    )  # fmt: skip
    key = drift.baseline_key(settings)
    previous = drift.previous_nightly(key)
    problems = drift.compare(current, previous, settings)
    drift.publish_side_by_side(drift.side_by_side(current, previous, settings, problems))
    if problems:
        return problems
    log.info(
        "drift check: no drift against %s (key %s)",
        previous.run if previous else "nothing yet: this run is the first baseline", key,
    )  # fmt: skip
    drift.publish_nightly(key, current)
    return []


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
