"""The pack stage: the recalibrated model → the artifact (Q2BN + zstd-22, or int8 + zlib for gpt-int8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings, settings_hash
from golf.tasks.cache import StageRecord, StageResult
from golf.tasks.common import cached_stage

ARTIFACT = {"q2-geode": "model.q2bn", "gpt-int8": "model.int8.ptz"}


def pack_artifact(settings: Settings, recalibrate: StageRecord, work: Path) -> StageResult:
    """Load the recalibrated weights and write the artifact of the model's arm into `work`."""
    from golfmodel.q2bn.artifact import pack_model
    from golfmodel.q2bn.int8zlib import pack_int8zlib
    from golfmodel.train.checkpoint import load_final

    model, _ = load_final(recalibrate.path(recalibrate.values["final"]))
    arm = model.config.arm
    meta = {"tokenizer": recalibrate.values.get("tokenizer", ""), "settings_hash": settings_hash(settings)}
    path = work / ARTIFACT[arm]
    if arm == "gpt-int8":
        res = pack_int8zlib(model, path, meta=meta)
    else:
        res = pack_model(model, path, meta=meta, linear_kind=settings.pack.linear_kind)
    return StageResult(
        values={"artifact": path.name, "arm": arm, "artifact_bytes": res.compressed_bytes,
                "raw_bytes": res.raw_bytes, "kind_bytes": res.kind_totals()},
        outputs=[path.name],
    )  # fmt: skip


@task(name="pack", cache_policy=NO_CACHE, persist_result=False)
def pack(settings: Settings, recalibrate: StageRecord, force: bool = False) -> Any:
    """Pack the recalibrated model into its artifact."""
    return cached_stage(
        "pack", settings, {"recalibrate": recalibrate},
        lambda work: pack_artifact(settings, recalibrate, work), force=force,
    )  # fmt: skip
