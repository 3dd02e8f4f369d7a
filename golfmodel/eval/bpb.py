"""Validation bits per byte, computed as the Parameter Golf challenge computes it (SPEC §3).

    bpb = (Σ nll / ln 2) / Σ bytes        over the scored target tokens, sums in float64

`score(model_fn, tokens, table, seq_len=..., stride=..., rule=...)` cuts a token stream into windows,
calls `model_fn(idx (B,T)) -> logits (B,T,V)` on batches of equal-length windows under inference mode, and
scores every target exactly once; bytes come from `ByteTable.count(prev, target)` for the same pairs.
`rank=, world_size=` split the windows across ranks (the loop and the all-reduce: `golfmodel.eval.sharded`).

Which targets (`rule`), for a stream of N tokens (targets are positions 1..N-1):
- "all": all N-1 targets.
- "challenge": only the first ((N-1)//seq_len)*seq_len targets, as the challenge's own non-overlapping
  evaluation does (it drops the tail that does not fill a window). The same target set is used in
  sliding mode, so the two modes compare on identical targets. Reports must say which rule they used.

How they are scored (`stride`):
- None, non-overlapping: window i feeds inputs [iL, iL+L) and scores all its targets [iL+1, iL+L+1);
  the last window is shorter when the targets do not fill it.
- S (1 <= S <= L), sliding: window k starts at kS and holds up to L tokens (clipped at the end of the
  targets). Window 0 scores all its targets; window k > 0 scores only its last S, i.e. targets
  (L+(k-1)S, L+kS], so each target is scored once, with at least L-S tokens of context (or all there
  are). Context comes from the window's start, so clipping the last window costs no context.
  S = L gives the non-overlapping result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from golfmodel.eval.bytes import ByteTable, SpanAudit
from golfmodel.eval.sharded import score_windows

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # idx (B,T) int64 -> logits (B,T,V)
Rule = Literal["all", "challenge"]
RULES = ("all", "challenge")


class AuditError(ValueError):
    """The decoded-text byte count of the scored span disagrees with the byte table's count."""


@dataclass(frozen=True, kw_only=True)
class BpbResult:
    """One validation score and how it was computed."""

    bpb: float  # bits per byte over the scored targets
    nll_nats: float  # mean negative log-likelihood per scored target, nats
    n_targets: int  # scored target tokens
    n_bytes: int  # bytes they stand for (ByteTable.count)
    mode: str  # "non-overlapping" | "sliding"
    rule: str  # "all" | "challenge"
    seq_len: int
    stride: int | None  # None in non-overlapping mode
    seconds: float  # wall time of the scoring loop
    tokens_per_second: float  # scored targets per second
    audit_bytes: int | None = None  # decoded-text bytes of the scored span, when an audit ran
    n_windows: int = 0  # windows scored (all ranks)
    rank_windows: tuple[int, ...] = ()  # windows each rank scored
    world_size: int = 1  # ranks the windows were split across

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_audit(result: BpbResult) -> None:
    """Raise AuditError unless the result carries an audit that matches its byte count exactly."""
    if result.audit_bytes is None:
        raise AuditError("the score carries no decoded-text audit (pass audit= to score)")
    if result.audit_bytes != result.n_bytes:
        raise AuditError(
            f"byte-count audit failed: the table counts {result.n_bytes} bytes, the decoded text of the "
            f"scored span has {result.audit_bytes} ({result.audit_bytes - result.n_bytes:+d})"
        )


def n_scored_targets(n_tokens: int, seq_len: int, rule: Rule) -> int:
    """How many targets (positions 1..M) a rule scores in a stream of n_tokens."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    n = n_tokens - 1
    return n if rule == "all" else (n // seq_len) * seq_len


def plan_windows(
    n_targets: int, seq_len: int, stride: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows that score targets 1..n_targets once each: (start, length, first scored offset), int64 (W,) each.

    Window w feeds inputs [start, start+length) and scores targets start+1+j for j in [lo, length).
    """
    M, L = n_targets, seq_len
    if stride is None:
        starts = np.arange(0, M, L, dtype=np.int64)  # (W,)
        lo = np.zeros_like(starts)
    else:
        S = stride
        n_windows = 1 + max(0, math.ceil((M - L) / S))
        starts = np.arange(n_windows, dtype=np.int64) * S  # (W,)
        lo = np.full_like(starts, L - S)
        lo[0] = 0
    lengths = np.minimum(L, M - starts)  # (W,) clipped at the last target
    return starts, lengths, lo


def score(
    model_fn: ModelFn,
    tokens: np.ndarray | torch.Tensor,
    table: ByteTable,
    *,
    seq_len: int,
    stride: int | None = None,
    rule: Rule = "all",
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = False,
    audit: SpanAudit | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> BpbResult:
    """Bits per byte of `model_fn` on a token stream (see the module docstring for modes and rules).

    `model_fn` is any callable `idx (B,T) int64 -> logits (B,T,V)` (an eval-mode model, a closure);
    logits may be bf16: log-softmax runs in fp32, sums in float64. `audit`, e.g. `make_audit(sp_model)`,
    gets (tokens, 1, M+1) and returns the decoded-text bytes of the scored span; `check_audit` compares.
    With world_size > 1 (an initialised process group) every rank calls `score` with the same
    arguments, scores its share of the windows, and gets the same result (`golfmodel.eval.sharded`):
    identical, bit for bit in fp32, to the 1-process score. The audit runs on every rank that passes one.
    """
    toks = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if toks.ndim != 1:
        raise ValueError(f"tokens must be a 1-D stream, got shape {toks.shape}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if stride is not None and not 1 <= stride <= seq_len:
        raise ValueError(f"stride must be in [1, seq_len={seq_len}], got {stride}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    M = n_scored_targets(len(toks), seq_len, rule)
    if M < 1:
        raise ValueError(f"no targets to score: {len(toks)} tokens, seq_len {seq_len}, rule {rule!r}")
    max_id = int(toks[: M + 1].max())
    if max_id >= table.vocab_size:
        raise ValueError(f"token id {max_id} is outside the byte table's vocab of {table.vocab_size}")

    starts, lengths, lo = plan_windows(M, seq_len, stride)
    t0 = time.perf_counter()
    sums = score_windows(
        model_fn, toks, table, starts, lengths, lo, batch_size=batch_size, device=device,
        rank=rank, world_size=world_size, max_id=max_id, progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    if sums.n_targets != M:  # the window plan covers each target once; this guards the invariant
        raise RuntimeError(f"scored {sums.n_targets} targets, expected {M}")
    if sums.n_windows != len(starts):
        raise RuntimeError(f"scored {sums.n_windows} windows, the plan has {len(starts)}")
    if sums.n_bytes <= 0:
        raise ValueError("the scored targets stand for 0 bytes; bits per byte is undefined")
    audit_bytes = None if audit is None else int(audit(toks, 1, M + 1))
    return BpbResult(
        bpb=sums.nll / math.log(2) / sums.n_bytes,
        nll_nats=sums.nll / sums.n_targets,
        n_targets=sums.n_targets,
        n_bytes=sums.n_bytes,
        mode="non-overlapping" if stride is None else "sliding",
        rule=rule,
        seq_len=seq_len,
        stride=stride,
        seconds=seconds,
        tokens_per_second=sums.n_targets / seconds if seconds > 0 else float("inf"),
        audit_bytes=audit_bytes,
        n_windows=sums.n_windows,
        rank_windows=sums.rank_windows,
        world_size=world_size,
    )
