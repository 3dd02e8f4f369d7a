"""The pack stage: the recalibrated model → the artifact (Q2BN + zstd-22, or int8 + zlib for gpt-int8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.tasks.cache import StageRecord, StageResult, sha256_json
from golf.tasks.common import cached_stage
from golf.tasks.stages import needed_stages, stage_config

ARTIFACT = {"q2bn": "model.q2bn", "int8zlib": "model.int8.ptz"}  # by the plan's export container


def artifact_settings_hash(settings: Settings) -> str:
    """Hash of the settings that shaped the artifact (the stages up to pack), for its header.

    Not the hash of every setting: an eval or housekeeping change must not alter the artifact's
    bytes (the pack stage stays cached, and so does everything scored on it).
    """
    return sha256_json({s: stage_config(s, settings) for s in needed_stages(["pack"])})


def pack_artifact(settings: Settings, recalibrate: StageRecord, work: Path) -> StageResult:
    """Load the recalibrated weights and write the artifact of the model's arm into `work`."""
    from golfmodel.q2bn.artifact import pack_model
    from golfmodel.q2bn.int8zlib import pack_int8zlib
    from golfmodel.train.checkpoint import load_final

    model, _ = load_final(recalibrate.path(recalibrate.values["final"]))
    arm, export = model.config.arm, model.config.quant_plan.export
    tokenizer = {"id": recalibrate.values["tokenizer"], "vocab_size": model.config.vocab_size}
    meta = {"tokenizer": tokenizer, "settings_hash": artifact_settings_hash(settings)}
    path = work / ARTIFACT[export]
    if export == "int8zlib":
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
