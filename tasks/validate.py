"""The validate stage: reload the model from the packed artifact only, score the val shards (sliding window).

The scoring runs as `python -m golfmodel.eval` (under `torchrun --standalone` when `train.nproc` > 1,
the windows split across the ranks, bf16 on GPU), in its own process group like training.

Quality gate: the bigram model is scored on exactly the targets the artifact was scored on
(the `test` preset scores only `eval.max_tokens`; the bigram stage's own number covers the whole
split), and a final bpb above it fails the stage naming both numbers — a model that learned less
than pair counts is broken (absurd learning rates, a bug), not a result. `pipeline.quality_gate=warn`
logs it instead (experiments). The gate reads the cached record, so changing it re-scores nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from golf.settings import Settings
from golf.settings.convert import threads_per_process
from golf.tasks.cache import StageRecord, StageResult, write_json_atomic
from golf.tasks.common import cached_stage, logger
from golf.tasks.publish import publish_table, record_of, rows
from golf.tasks.retries import TRANSIENT_RETRIES
from golf.tasks.subproc import run_streaming


def load_artifact(path: Path) -> Any:
    """The model stored in an artifact (Q2BN, or the gpt-int8 arm's int8 + zlib), in eval mode."""
    from golfmodel.eval.loading import load_artifact as load

    return load(path)[0]


def score_artifact(
    settings: Settings, pack: StageRecord, tokenise: StageRecord, bigram: StageRecord, work: Path
) -> StageResult:
    """Score the artifact's model on the validation tokens with `train.nproc` ranks (`python -m golfmodel.eval`
    under torchrun, killed with its group on timeout): bpb, loss, tokens, bytes, byte audit, time; and the
    bigram model on the same scored targets (the quality gate's floor)."""
    import numpy as np

    from golfmodel.data.bigram import bigram_bpb, load_logprior
    from golfmodel.data.shards import read_shard
    from golfmodel.eval import ByteTable
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
    vocab = tokenise.values["vocab_size"]
    tokens = np.concatenate(
        [np.asarray(read_shard(p, vocab_size=vocab)) for p in tokenise.paths("val_shards")]
    )
    if e.max_tokens is not None:
        tokens = tokens[: e.max_tokens]
    table = ByteTable.from_sentencepiece(tokenise.path(tok)) if tok else ByteTable.byte260()
    # the first `tokens` targets: those the scorer counted under either rule (all, challenge)
    floor = bigram_bpb(
        load_logprior(bigram.path(bigram.values["logprob"])), tokens[: rec["tokens"] + 1], table
    )
    out = {"final_bpb": rec["bpb"], "bigram_scored_bpb": floor, "loss": rec["loss"], "tokens": rec["tokens"],
           "bytes": rec["bytes"], "audit_bytes": rec["audit_bytes"], "seconds": rec["seconds"], "mode": rec["mode"],
           "rule": rec["rule"], "seq_len": rec["seq_len"], "stride": rec["stride"], "nproc": rec["nproc"]}  # fmt: skip
    write_json_atomic(work / "validate.json", out)
    return StageResult(values={k: v for k, v in out.items() if k != "seconds"}, metrics=rec)


@task(name="validate", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def validate(
    settings: Settings, pack: StageRecord, tokenise: StageRecord, bigram: StageRecord, force: bool = False
) -> Any:
    """Score the model reloaded from the artifact on the validation shards (sliding window); gate on the bigram."""
    result = cached_stage(
        "validate", settings, {"pack": pack, "tokenise": tokenise, "bigram": bigram},
        lambda work: score_artifact(settings, pack, tokenise, bigram, work), force=force,
    )  # fmt: skip
    if (record := record_of(result)) is None:
        return result
    publish_table(
        "golf-bpb", bpb_rows(record), "validate: bits per byte of the artifact and the bigram floor"
    )
    return quality_gate(settings, record, result)


def bpb_rows(record: StageRecord) -> list[dict[str, Any]]:
    """The validate stage's table artifact: final bpb, the bigram on the same targets, what was scored."""
    names = ("final_bpb", "bigram_scored_bpb", "loss", "tokens", "bytes", "audit_bytes", "mode", "rule",
             "seq_len", "stride")  # fmt: skip
    return rows(record.values, names)


def gate_message(record: StageRecord) -> str | None:
    """Why the artifact fails the quality gate (final bpb above the bigram's on the same targets), or None."""
    final, floor = record.values["final_bpb"], record.values.get("bigram_scored_bpb")
    if floor is None or final <= floor:
        return None
    return (
        f"final bpb {final:.4f} is above the bigram's {floor:.4f} on the same {record.values['tokens']:,} "
        "scored targets: the model learned less than the bigram baseline "
        "(set pipeline.quality_gate=warn to keep such a run for an experiment)"
    )


def quality_gate(settings: Settings, record: StageRecord, result: StageRecord | State[Any]) -> Any:
    """`result` unchanged when the gate passes (or only warns); a Failed state naming both numbers when not."""
    message = gate_message(record)
    if message is None:
        return result
    if settings.pipeline.quality_gate == "warn":
        logger().warning("validate: quality gate (warning only): %s", message)
        return result
    logger().error("validate failed: %s", message)
    return Failed(message=f"validate: {message}")


def read(record: StageRecord) -> dict[str, Any]:
    """The validation numbers of a validate record."""
    return json.loads(record.path("validate.json").read_text())
