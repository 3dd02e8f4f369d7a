"""The recalibrate stage: activation-weighted τ on the final weights, kept only if held-out *training* bpb improves.

Never reads validation (golfmodel.train.recalibrate). mode "mse" is folded into training (the
trainer's final refit): the stage passes the weights through and records the held-out bpb.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.tasks.cache import StageRecord, StageResult
from golf.tasks.common import cached_stage, logger
from golf.tasks.retries import TRANSIENT_RETRIES


def recalibrate_tau(settings: Settings, train: StageRecord, work: Path) -> StageResult:
    """Run golfmodel's τ recalibration on train's final.pt (quant.recalibrate=off passes it through)."""
    import torch

    from golfmodel.train.config import TrainJob
    from golfmodel.train.recalibrate import recalibrate as library_recalibrate

    final, out = train.path(train.values["final"]), work / "recalibrated.pt"
    mode = settings.quant.recalibrate
    job = TrainJob.from_json(train.path("RUN.json"))
    tokenizer = (
        "byte260" if job.tokenizer == "byte260" else Path(job.tokenizer).stem
    )  # an id, not a local path
    if mode == "off":
        os.link(final, out)
        return StageResult(values={"final": out.name, "mode": mode, "before_bpb": None, "after_bpb": None,
                                   "tokenizer": tokenizer})  # fmt: skip
    device = "cuda" if settings.train.device != "cpu" and torch.cuda.is_available() else "cpu"
    res = library_recalibrate(
        final, job, mode=mode, calib_batches=settings.quant.calib_batches, out_path=out, device=device
    )
    logger().info(
        "recalibrate (%s): held-out training bpb %.4f → %.4f, kept=%s (%d layers, %d left to their own rule)",
        mode, res.bpb_before, res.bpb_after, res.kept, res.layers, res.skipped,
    )  # fmt: skip
    return StageResult(
        values={"final": out.name, "mode": mode, "before_bpb": res.bpb_before, "after_bpb": res.bpb_after,
                "kept": res.kept, "decided_on": res.decided_on, "tokenizer": tokenizer},
        metrics=res.to_dict(),
        outputs=[out.name],
    )  # fmt: skip


@task(name="recalibrate", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def recalibrate(settings: Settings, train: StageRecord, tokenise: StageRecord, force: bool = False) -> Any:
    """Activation-weighted τ on the final weights, kept if held-out training bpb improves ("mse": pass-through)."""
    return cached_stage(
        "recalibrate", settings, {"train": train, "tokenise": tokenise},
        lambda work: recalibrate_tau(settings, train, work), force=force,
    )  # fmt: skip
