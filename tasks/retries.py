"""Task retries on transient faults only, declared on every stage (each stage is idempotent).

Transient = a network fault (connection error, timeout, HTTP 408/429/5xx from the hub: the
library's classification, `golfmodel.data.hub.is_network_fault`) or a lost or overloaded
Prefect API (httpx transport errors, HTTP 502/503/504 from the server), anywhere in the cause
chain. Never retried: bad input, a failed check, a crashed or diverged trainer — a retry
would only fail again. Why every stage may retry: a stage computes into a work folder keyed by
its cache key and commits it atomically, so a second attempt cannot see half a result (the
train stage's kept work folder makes its retry resume from the last checkpoint).
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

RETRIES = 2
RETRY_DELAYS = [10, 60]  # seconds between whole-task attempts (backoff)
API_RETRY_STATUS = (502, 503, 504)


def is_transient(exc: BaseException) -> bool:
    """True for faults a retry can cure: network faults and a lost/overloaded Prefect API."""
    from golfmodel.data.hub import exception_chain, is_network_fault

    if is_network_fault(exc):
        return True
    for e in exception_chain(exc):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if type(e).__name__ in ("HTTPStatusError", "PrefectHTTPStatusError") and status in API_RETRY_STATUS:
            return True
    return False


def failure_of(state: State[Any]) -> BaseException | None:
    """The exception behind a Failed state: a stage's returned Failed carries it as data
    (`golf.tasks.common.failed`); a raised one is the state's result."""
    if isinstance(state.data, BaseException):
        return state.data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as e:  # an unreadable result: judge the error that reading it raised
        return e
    return result if isinstance(result, BaseException) else None


def retry_on_transient_fault(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry only when the attempt failed on a transient fault."""
    exc = failure_of(state)
    return exc is not None and is_transient(exc)


# The decorator arguments every stage task takes: `@task(name=..., **TRANSIENT_RETRIES)`.
TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": retry_on_transient_fault,
}
