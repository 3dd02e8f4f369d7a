"""The size check stage: compressed artifact + shipped code bytes against `pack.budget_bytes` (SPEC §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.tasks.cache import StageRecord, StageResult, verify_outputs, write_json_atomic
from golf.tasks.common import cached_stage, logger
from golf.tasks.publish import publish_table, record_of, rows
from golf.tasks.retries import TRANSIENT_RETRIES


def shipped_code(work: Path) -> list[Path]:
    """The code a submission ships: the exported single-file script (golfmodel.export), written into `work`."""
    from golfmodel import export

    return [Path(p) for p in export.write_submission_code(work)]


def check_size(settings: Settings, pack: StageRecord, work: Path) -> StageResult:
    """Verify the artifact against its recorded sha256, sum artifact + code bytes, write size.json, fail
    above the budget with the breakdown."""
    from golfmodel.q2bn.size import size_check as library_size_check

    verify_outputs(pack, [pack.values["artifact"]])  # measure exactly the bytes that were packed

    report = library_size_check(
        pack.path(pack.values["artifact"]), shipped_code(work), settings.pack.budget_bytes
    )
    logger().info("size check:\n%s", report.table())
    report.raise_if_over()
    data = report.to_dict()
    write_json_atomic(work / "size.json", data)
    keep = ("artifact_bytes", "code_bytes", "total_bytes", "budget_bytes", "headroom_bytes", "ok")
    return StageResult(values={k: data[k] for k in keep})


@task(name="size_check", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def size_check(settings: Settings, pack: StageRecord, force: bool = False) -> Any:
    """Fail the pipeline when artifact + shipped code exceed the byte budget; print the breakdown."""
    result = cached_stage(
        "size_check", settings, {"pack": pack}, lambda work: check_size(settings, pack, work), force=force
    )
    if (record := record_of(result)) is not None:
        names = ("artifact_bytes", "code_bytes", "total_bytes", "budget_bytes", "headroom_bytes", "ok")
        publish_table(
            "golf-size-breakdown", rows(record.values, names), "size check: artifact + code vs budget"
        )
    return result
