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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.client.schemas.objects import StateDetails
from prefect.states import Cancelled, Completed, Failed, State
from prefect.utilities.annotations import quote

from golf.settings import Settings, SettingsError
from golf.tasks.cache import CacheError, StageCache, StageRecord, StageResult, explain_key
from golf.tasks.digests import STORE_NAME, FileDigests
from golf.tasks.inputs import stage_inputs
from golf.tasks.runs import RunDir
from golf.tasks.stages import UPSTREAM, VERIFY_ALWAYS, needed_stages, stage_config
from golf.tasks.subproc import SubprocessFailed, SubprocessTimeout, interrupt_signal

# Library errors that mean "bad input or a failed stage", not "a bug": reported as one line.
_ERROR_NAMES = (
    "golfmodel.data.shards:ShardError",
    "golfmodel.data.tokenise:DocumentError",
    "golfmodel.data.hub:HubError",
    "golf.tasks.fingerprint:FingerprintError",
    "golfmodel.eval.bpb:AuditError",
    "golfmodel.q2bn.format:Q2BNError",
    "golfmodel.q2bn.int8zlib:Int8ZlibError",
    "golfmodel.q2bn.size:BudgetError",
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


class StageInterrupted(StageFailed):
    """A stage was interrupted by a signal (SIGINT, SIGTERM, SIGHUP); the run ends Cancelled."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


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


def inputs_for(stage: str, settings: Settings, cache: StageCache) -> dict[str, str]:
    """Content hashes of the files `stage` reads outside its upstream (remembered under the cache root)."""
    digests = FileDigests(cache.root / STORE_NAME)
    try:
        return stage_inputs(stage, settings, digests)
    finally:
        digests.save()


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
    inputs_arg: bool = False,
) -> StageRecord | State[Any]:
    """Serve `stage` from the cache (a Cached state) or compute it (its record); Failed on a stage error.

    The key holds the content hashes of the stage's input files (`golf.tasks.inputs`); with
    `inputs_arg`, `compute(work, inputs)` receives them (download fetches the commit it was keyed
    on). Stages in VERIFY_ALWAYS have every cached output re-hashed before it is served.
    The Failed state carries the exception as its data, so a task's `retry_condition_fn` can
    decide on it (the download task retries network faults).
    """
    log = logger()
    cache = cache_for(settings)
    try:
        inputs = inputs_for(stage, settings, cache)
        fn = (lambda work: compute(work, inputs)) if inputs_arg else compute
        record, hit = cache.run(
            stage, stage_config(stage, settings), upstream, fn, resume=resume, force=force,
            inputs=inputs, verify=stage in VERIFY_ALWAYS,
        )  # fmt: skip
    except stage_errors() as e:
        return failed(stage, e)
    except KeyboardInterrupt as e:  # SIGINT/SIGTERM/SIGHUP; the trainer's group is already killed
        sig = interrupt_signal(e)
        log.warning("%s: interrupted by signal %d; its work folder is kept (a rerun resumes)", stage, sig)
        return Cancelled(message=f"{stage}: interrupted by signal {sig}")  # the runner reads N back
    if why := cache.invalid.get(stage):
        log.warning("%s: the cached entry was invalid (%s); re-ran the stage", stage, why)
    if hit:
        # Why it hit: the key held by the stage record (never recomputed here) and what it holds,
        # in the log, the state message and the state's cache key.
        log.info("%s: cached, key %s (%s; %s)", stage, record.key, record.dir, explain_key(record))
        return Completed(
            name="Cached",
            message=f"{stage} served from the cache (key {record.key[:16]})",
            data=record,
            state_details=StateDetails(cache_key=record.key),
        )
    log.info("%s: done in %.1f s (%s)", stage, record.seconds, record.dir)
    return record


class StageRunner:
    """Runs a selected stage as its task, or looks an unselected one up in the cache; keeps the status table.

    `runner(name, task, *upstream_records)` returns the stage's record (None when the stage is
    not needed by the selection) and raises StageFailed with the one-line reason on failure.
    """

    def __init__(self, settings: Settings, selected: list[str], force: list[str], run: RunDir) -> None:
        self.settings, self.selected, self.force, self.run = settings, selected, set(force), run
        self.needed = needed_stages(selected)
        self.records: dict[str, StageRecord] = {}
        self.status: dict[str, dict[str, Any]] = {}

    def __call__(
        self, name: str, task: Callable[..., Any], *upstream: StageRecord | None
    ) -> StageRecord | None:
        if name not in self.needed:
            return None
        ups = dict(zip(UPSTREAM[name], upstream, strict=True))
        t0 = time.perf_counter()
        if name in self.selected:
            # quote(): Prefect must not walk the settings for upstream links (it drew every
            # earlier task as an input of every task); the records are the real edges.
            state: State[Any] = task(
                quote(self.settings), *upstream, force=name in self.force, return_state=True
            )
            if state.is_cancelled():
                self.status[name] = {"status": "cancelled", "seconds": round(time.perf_counter() - t0, 3),
                                     "cached": False}  # fmt: skip
                message = state.message or f"{name} interrupted"
                raise StageInterrupted(message, interrupt_signal(StageFailed(message)))
            if not state.is_completed():
                self.status[name] = {
                    "status": "failed",
                    "seconds": round(time.perf_counter() - t0, 3),
                    "cached": False,
                }
                raise StageFailed(state.message or f"{name} failed")
            record: StageRecord = state.result()
            cached = state.name == "Cached"
            status = "cached" if cached else "completed"
        else:
            cache = cache_for(self.settings)
            try:
                inputs = inputs_for(name, self.settings, cache)
            except stage_errors() as e:
                raise StageFailed(f"{name}: {str(e).strip().splitlines()[0]}") from e
            found = cache.lookup(
                name, stage_config(name, self.settings), ups, inputs=inputs, verify=name in VERIFY_ALWAYS
            )
            if found is None:
                why = cache.invalid.get(name)
                state = f"is cached, but {why}" if why else "is not cached for these settings"
                missing = f"stage {name!r} {state}; it is needed by " + ", ".join(
                    s for s in self.selected if name in needed_stages([s])
                )
                raise StageFailed(f"{missing}. Run it too: --stages {name},... or --from {name}")
            record, cached, status = found, True, "from cache"
        self.records[name] = record
        self.status[name] = {
            "status": status,
            "seconds": round(time.perf_counter() - t0, 3),
            "cached": cached,
            "compute_seconds": round(record.seconds, 3),
            "dir": record.dir,
            "key": explain_key(record),  # why a cached stage hit: what its key was made of
        }
        self.run.write_record(record, self.status[name])
        return record
