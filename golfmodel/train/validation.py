"""Validation helpers of the trainer and the recalibration stage: byte table, val tokens, bpb, bigram prior."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from golfmodel.train.runtime import autocast


def load_table(spec: str) -> Any:
    """ByteTable for validation bpb: "byte260" or a sentencepiece model path."""
    from golfmodel.eval import ByteTable

    return ByteTable.byte260() if spec == "byte260" else ByteTable.from_sentencepiece(spec)


def load_val_tokens(paths: tuple[str, ...] | list[str], max_tokens: int, vocab_size: int) -> np.ndarray:
    """The first `max_tokens` (0 = all) tokens of the concatenated validation shards, int64 (N,)."""
    from golfmodel.data.shards import read_shard

    parts, n = [], 0
    for p in paths:
        t = read_shard(p, vocab_size=vocab_size)
        take = len(t) if not max_tokens else min(len(t), max_tokens - n)
        parts.append(np.asarray(t[:take], dtype=np.int64))
        n += take
        if max_tokens and n >= max_tokens:
            break
    if not parts:
        raise ValueError("no validation shards given")
    return np.concatenate(parts)


def load_bigram_logprior(path: str, vocab_size: int) -> torch.Tensor:
    """(V, V) float32 log-probability table written by the bigram stage (`golfmodel.data.bigram`)."""
    from golfmodel.data.bigram import load_logprior

    table = torch.from_numpy(np.array(load_logprior(path), dtype=np.float32))
    if tuple(table.shape) != (vocab_size, vocab_size):
        raise ValueError(
            f"{path}: bigram log-prior has shape {tuple(table.shape)}, expected ({vocab_size}, {vocab_size})"
        )
    return table


@torch.no_grad()
def evaluate_bpb(
    model: nn.Module,
    tokens: np.ndarray,
    table: Any,
    *,
    seq_len: int,
    batch_size: int,
    device: torch.device,
    dtype: str = "auto",
) -> float:
    """Non-overlapping validation bpb (rule "all") of the model as it runs now (QAT flags as set)."""
    from golfmodel.eval import score

    was_training = model.training
    model.eval()
    amp = autocast(device, dtype)

    def model_fn(idx: torch.Tensor) -> torch.Tensor:
        with amp:
            return model(idx).float()

    try:
        return score(model_fn, tokens, table, seq_len=seq_len, batch_size=batch_size, device=device).bpb
    finally:
        model.train(was_training)
