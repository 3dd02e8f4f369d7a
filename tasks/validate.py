"""The validate stage: reload the model from the packed artifact only, score the val shards (sliding window)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.settings.convert import eval_kwargs
from golf.tasks.cache import StageRecord, StageResult, write_json_atomic
from golf.tasks.common import cached_stage


def load_artifact(path: Path) -> Any:
    """The model stored in an artifact (Q2BN, or the baseline's int8 + zlib, told apart by its bytes), in eval mode."""
    from golfmodel.q2bn.container import load_artifact as load

    model, _ = load(path)
    return model


def score_artifact(settings: Settings, pack: StageRecord, tokenise: StageRecord, work: Path) -> StageResult:
    """Score the artifact's model on the validation tokens; bpb, loss, tokens, bytes, byte audit, time."""
    import numpy as np
    import torch

    from golfmodel.data.shards import read_shard
    from golfmodel.eval import ByteTable, check_audit, make_audit, score

    model = load_artifact(pack.path(pack.values["artifact"]))
    vocab = tokenise.values["vocab_size"]
    tokens = np.concatenate(
        [np.asarray(read_shard(p, vocab_size=vocab)) for p in tokenise.paths("val_shards")]
    )
    if settings.eval.max_tokens is not None:
        tokens = tokens[: settings.eval.max_tokens]
    tok = tokenise.values.get("tokenizer")
    table = ByteTable.from_sentencepiece(tokenise.path(tok)) if tok else ByteTable.byte260()
    audit = make_audit(str(tokenise.path(tok)) if tok else "byte260")
    device = "cuda" if settings.train.device != "cpu" and torch.cuda.is_available() else "cpu"
    result = score(model.to(device), tokens, table, device=device, audit=audit, **eval_kwargs(settings))
    check_audit(result)
    out = {"final_bpb": result.bpb, "loss": result.nll_nats, "tokens": result.n_targets,
           "bytes": result.n_bytes, "audit_bytes": result.audit_bytes, "seconds": result.seconds,
           "mode": result.mode, "rule": result.rule, "seq_len": result.seq_len, "stride": result.stride}  # fmt: skip
    write_json_atomic(work / "validate.json", out)
    return StageResult(values={k: v for k, v in out.items() if k != "seconds"}, metrics=result.to_dict())


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
