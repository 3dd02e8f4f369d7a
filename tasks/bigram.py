"""The bigram stage: pair counts and the smoothed log-probability table of the training shards, and the
bigram model's own validation bpb (the floor every trained model must beat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.tasks.cache import StageRecord, StageResult
from golf.tasks.common import cached_stage, logger
from golf.tasks.retries import TRANSIENT_RETRIES


def byte_table(tokenise: StageRecord) -> Any:
    """The scorer's bytes-per-token table for the tokens' variant; it must cover their vocabulary.

    A tokenizer with fewer pieces than the variant's vocabulary (e.g. a 512-piece model for
    tokeniser.variant=sp1024) fails here, naming the tokenizer file and the setting.
    """
    from golfmodel.eval import ByteTable

    tok = tokenise.values.get("tokenizer")
    table = ByteTable.from_sentencepiece(tokenise.path(tok)) if tok else ByteTable.byte260()
    vocab, variant = tokenise.values["vocab_size"], tokenise.values.get("variant")
    if table.vocab_size < vocab:
        raise ValueError(
            f"tokenizer {tokenise.path(tok) if tok else 'byte260'} has {table.vocab_size} pieces, but "
            f"tokeniser.variant={variant} means a vocabulary of {vocab}: set tokeniser.variant="
            f"sp{table.vocab_size} or use a tokenizer with {vocab} pieces"
        )
    return table


def count_bigrams(tokenise: StageRecord, work: Path) -> StageResult:
    """Count the training shards, write counts.npz + logprob.npy, score the bigram on the val shards."""
    import numpy as np

    from golfmodel.data.bigram import bigram_bpb, build_bigram, save_bigram
    from golfmodel.data.shards import read_shard

    vocab = tokenise.values["vocab_size"]
    table = build_bigram(tokenise.paths("train_shards"), vocab)
    counts, logprob = save_bigram(table, work)
    val = np.concatenate([np.asarray(read_shard(p, vocab_size=vocab)) for p in tokenise.paths("val_shards")])
    bpb = bigram_bpb(table, val, byte_table(tokenise))
    logger().info("bigram: %d pairs, validation bpb %.4f", table.n_pairs, bpb)
    return StageResult(
        values={"counts": counts.name, "logprob": logprob.name, "bigram_bpb": bpb, "k": table.k},
        metrics={"n_pairs": table.n_pairs, "val_tokens": int(len(val))},
    )


@task(name="bigram", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def bigram(settings: Settings, tokenise: StageRecord, force: bool = False) -> Any:
    """Count bigrams of the training shards and score the bigram model on the validation shards."""
    return cached_stage(
        "bigram", settings, {"tokenise": tokenise}, lambda work: count_bigrams(tokenise, work), force=force
    )
