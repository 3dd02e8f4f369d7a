"""The validate stage: reload the model from the packed artifact only, score the val shards (sliding window).

The scoring runs as `python -m golfmodel.eval` (under `torchrun --standalone` when `train.nproc` > 1,
the windows split across the ranks, bf16 on GPU), in its own process group like training.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.settings.convert import threads_per_process
from golf.tasks.cache import StageRecord, StageResult, write_json_atomic
from golf.tasks.common import cached_stage, logger
from golf.tasks.subproc import run_streaming


def load_artifact(path: Path) -> Any:
    """The model stored in an artifact (Q2BN, or the gpt-int8 arm's int8 + zlib), in eval mode."""
    from golfmodel.eval.loading import load_artifact as load

    return load(path)[0]


def score_artifact(settings: Settings, pack: StageRecord, tokenise: StageRecord, work: Path) -> StageResult:
    """Score the artifact's model on the validation tokens with `train.nproc` ranks (`python -m golfmodel.eval`
    under torchrun, killed with its group on timeout); bpb, loss, tokens, bytes, byte audit, time."""
    from golfmodel.eval.run import ArtifactEval, eval_command

    tok = tokenise.values.get("tokenizer")
    e = settings.eval
    spec = ArtifactEval(
        artifact=str(pack.path(pack.values["artifact"])), val=tuple(str(p) for p in tokenise.paths("val_shards")),
        tokenizer=str(tokenise.path(tok)) if tok else "byte260", seq_len=e.seq_len, stride=e.stride, rule=e.rule,
        batch_size=e.batch_size, max_tokens=e.max_tokens, device="cpu" if settings.train.device == "cpu" else "auto",
    )  # fmt: skip
    cmd = eval_command(spec, nproc=settings.train.nproc, json_out=work / "eval.json", python=sys.executable)
    log = logger()
    log.info("validate: %s", " ".join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads_per_process(settings))}
    run_streaming(
        cmd, on_line=lambda line: log.info("%s", line), timeout=settings.train.timeout_seconds, env=env
    )
    rec = json.loads((work / "eval.json").read_text())
    out = {"final_bpb": rec["bpb"], "loss": rec["loss"], "tokens": rec["tokens"], "bytes": rec["bytes"],
           "audit_bytes": rec["audit_bytes"], "seconds": rec["seconds"], "mode": rec["mode"], "rule": rec["rule"],
           "seq_len": rec["seq_len"], "stride": rec["stride"], "nproc": rec["nproc"]}  # fmt: skip
    write_json_atomic(work / "validate.json", out)
    return StageResult(values={k: v for k, v in out.items() if k != "seconds"}, metrics=rec)


@task(name="validate", cache_policy=NO_CACHE, persist_result=False)
def validate(settings: Settings, pack: StageRecord, tokenise: StageRecord, force: bool = False) -> Any:
    """Score the model reloaded from the artifact on the validation shards (sliding window)."""
    return cached_stage(
        "validate", settings, {"pack": pack, "tokenise": tokenise},
        lambda work: score_artifact(settings, pack, tokenise, work), force=force,
    )  # fmt: skip


def read(record: StageRecord) -> dict[str, Any]:
    """The validation numbers of a validate record."""
    return json.loads(record.path("validate.json").read_text())
