"""Task plumbing shared by every stage: the cache call, the Cached state, clean failures.

A task body is one call: `return cached_stage("bigram", settings, {"tokenise": tok}, compute)`.
A cache hit returns `Completed(name="Cached")` so the Prefect UI shows the stage as Cached;
a library error (bad shard, bad artifact, a budget overrun, divergence, ...) becomes a
`Failed` state whose message is the error's one line — no traceback wall in the UI log
(the traceback goes to the run's log file at DEBUG level).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.states import Completed, Failed, State

from golf.settings import Settings, SettingsError
from golf.tasks.cache import CacheError, StageCache, StageRecord, StageResult
from golf.tasks.stages import stage_config
from golf.tasks.subproc import SubprocessFailed, SubprocessTimeout

# Library errors that mean "bad input or a failed stage", not "a bug": reported as one line.
_ERROR_NAMES = (
    "golfmodel.data.shards:ShardError",
    "golfmodel.data.tokenise:DocumentError",
    "golfmodel.data.hub:DownloadError",
    "golfmodel.data.hub:HubError",
    "golfmodel.eval.bpb:AuditError",
    "golfmodel.q2bn.format:Q2BNError",
    "golfmodel.q2bn.size:BudgetExceeded",
    "golfmodel.q2bn.size:SizeError",
    "golfmodel.model.budget:BudgetError",
    "golfmodel.train.trainer:TrainingDiverged",
)


def stage_errors() -> tuple[type[BaseException], ...]:
    """The exception types reported as a clean one-line stage failure (those that exist so far)."""
    found: list[type[BaseException]] = [
        SettingsError, CacheError, SubprocessFailed, SubprocessTimeout, ValueError, OSError,
    ]  # fmt: skip
    for spec in _ERROR_NAMES:
        module, name = spec.split(":")
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


TRACE_LOGGER = "golf.trace"  # tracebacks of failed stages: the run's log file only, never the UI


class StageFailed(RuntimeError):
    """A stage failed; the message is the one line the UI log shows."""


def quiet_failed_state_log(record: logging.LogRecord) -> bool:
    """Logging filter: drop Prefect's "Task run failed with state" echo (with its empty traceback).

    A stage that returns a Failed state has already logged its one-line reason; Prefect's echo
    adds the same text plus a "NoneType: None" traceback line. Exceptions (bugs) still log in full.
    """
    no_exception = record.exc_info is None or record.exc_info[0] is None
    return not (no_exception and record.getMessage().startswith("Task run failed with state"))


def cache_for(settings: Settings) -> StageCache:
    """The stage cache under `pipeline.artifacts_dir`."""
    return StageCache(Path(settings.pipeline.artifacts_dir) / "cache")


def logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a run, the module logger outside one (plain calls in tests)."""
    try:
        return get_run_logger()
    except Exception:  # MissingContextError outside a run
        return logging.getLogger("golf.tasks")


def failed(stage: str, exc: BaseException) -> State[Any]:
    """A Failed state with the error's first line; the traceback is kept at DEBUG level."""
    log = logger()
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    log.error("%s failed: %s", stage, text)
    logging.getLogger(TRACE_LOGGER).debug("%s failed", stage, exc_info=exc)
    return Failed(message=f"{stage}: {first}", data=exc)


def cached_stage(
    stage: str,
    settings: Settings,
    upstream: Mapping[str, StageRecord],
    compute: Callable[[Path], StageResult],
    *,
    resume: bool = False,
    force: bool = False,
) -> StageRecord | State[Any]:
    """Serve `stage` from the cache (a Cached state) or compute it (its record); Failed on a stage error.

    The Failed state carries the exception as its data, so a task's `retry_condition_fn` can
    decide on it (the download task retries network faults).
    """
    log = logger()
    try:
        record, hit = cache_for(settings).run(
            stage, stage_config(stage, settings), upstream, compute, resume=resume, force=force
        )
    except stage_errors() as e:
        return failed(stage, e)
    if hit:
        log.info("%s: cached (%s)", stage, record.dir)
        return Completed(name="Cached", message=f"{stage} served from the cache", data=record)
    log.info("%s: done in %.1f s (%s)", stage, record.seconds, record.dir)
    return record
