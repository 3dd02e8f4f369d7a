"""The download stage: manifest, shards, tokenizer (and docs when tokenising them) from the hub or a mirror.

The only stage that touches the hub. Like every stage it retries transient faults with backoff
(`golf.tasks.retries`: connection errors, timeouts, HTTP 408/429/5xx, a lost Prefect API); a
404, a checksum mismatch or a missing mirror fail at once. The library retries each file too; these
task-level retries resume the partial download (the work folder is kept).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from golf.settings import Settings
from golf.settings.convert import hub_config
from golf.tasks.cache import StageResult
from golf.tasks.common import cached_stage
from golf.tasks.inputs import resolved_commit
from golf.tasks.retries import TRANSIENT_RETRIES


def is_network_fault(exc: BaseException) -> bool:
    """Transient network faults only (the library's classification)."""
    from golfmodel.data.hub import is_network_fault as library_is_network_fault

    return library_is_network_fault(exc)


def retry_on_network_fault(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry only when the attempt failed on a network fault."""
    exc = state.data  # a stage's Failed state carries its exception (golf.tasks.common.failed)
    return isinstance(exc, BaseException) and is_network_fault(exc)


def fetch(settings: Settings, work: Path, inputs: Mapping[str, str]) -> StageResult:
    """Download into `work` (laid out like the repository root) at the hub commit the key was computed
    for; paths in the record are relative."""
    from golfmodel.data.hub import download as library_download

    cfg = hub_config(settings)
    if (commit := resolved_commit(inputs)) is not None:
        cfg = dataclasses.replace(cfg, revision=commit)
    res = library_download(cfg, work)

    def rel(p: Path | None) -> str | None:
        return None if p is None else Path(p).resolve().relative_to(work.resolve()).as_posix()

    # Provenance names the source (a mirror's path): a measurement, not content, so it is kept out
    # of `values` — the same bytes fetched from another folder leave downstream keys unchanged.
    return StageResult(
        values={
            "variant": settings.data.variant,
            "train_shards": [rel(p) for p in res.train_paths],
            "val_shards": [rel(p) for p in res.val_paths],
            "tokenizer": rel(res.tokenizer_path),
            "docs": rel(res.docs_path),
        },
        metrics={
            "provenance": {
                "source": res.source,
                "revision": res.revision,
                "requested": settings.data.revision,
                "verified": list(res.verified),
            }
        },
    )


@task(name="download", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def download(settings: Settings, force: bool = False) -> Any:
    """Fetch the challenge data (hub at a pinned revision, or a local mirror), sha256-verified."""
    return cached_stage(
        "download", settings, {}, lambda work, inputs: fetch(settings, work, inputs),
        resume=True, force=force, inputs_arg=True,
    )  # fmt: skip
