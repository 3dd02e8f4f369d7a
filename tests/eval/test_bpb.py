"""Bits per byte (score): hand-computed cases, window plans, rules, modes and the audit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from golfmodel.eval import AuditError, BpbResult, ByteTable, check_audit, make_audit, plan_windows, score

V = 8  # the tiny_table vocab


def _stream(n: int, seed: int = 0) -> np.ndarray:
    """A random tiny-vocab stream with a BOS every few tokens."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, V, size=n)
    tokens[rng.random(n) < 0.1] = 1
    tokens[0] = 1
    return tokens


def _uniform(idx: torch.Tensor) -> torch.Tensor:
    B, T = idx.shape
    return torch.zeros(B, T, V)  # (B, T, V)


class ContextFree:
    """A bigram-like model: the logits depend only on the current token (a fixed random table)."""

    def __init__(self, seed: int = 0) -> None:
        self.logits = torch.randn(V, V, generator=torch.Generator().manual_seed(seed))  # (V, V)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits[idx]  # (B, T, V)

    def nll(self, prev: np.ndarray, target: np.ndarray) -> np.ndarray:
        logp = torch.log_softmax(self.logits.double(), dim=-1).numpy()  # (V, V)
        return -logp[prev, target]


class ContextDependent:
    """Logits depend on the whole window so far: a running sum of the inputs and the position in the window."""

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        c = torch.cumsum(idx.double(), dim=1) / (1 + torch.arange(T, dtype=torch.float64))  # (B, T)
        k = torch.arange(V, dtype=torch.float64)  # (V,)
        return torch.sin(c[..., None] * (k + 1) + 0.1 * torch.arange(T)[None, :, None]).float()  # (B, T, V)


def test_uniform_logits_give_log2_vocab_bits_per_token(tiny_table: ByteTable) -> None:
    """Uniform logits over V ids: bpb = log2(V) * n_targets / n_bytes."""
    tokens = _stream(300)
    result = score(_uniform, tokens, tiny_table, seq_len=16)
    n_bytes = int(tiny_table.count(tokens[:-1], tokens[1:]).sum())
    assert result.n_targets == 299 and result.n_bytes == n_bytes
    assert result.bpb == pytest.approx(math.log2(V) * 299 / n_bytes, rel=1e-7)  # fp32 per-token nll


def test_known_distribution_gives_hand_computed_bpb(tiny_table: ByteTable) -> None:
    """A model putting logit a on the next id: every target of a cycling stream costs -log(e^a/(e^a+V-1))."""
    a = 3.0
    tokens = (2 + np.arange(61)) % V  # 2, 3, ..., 7, 0, 1, 2, ...: each next id is (id + 1) % V

    def predict_next(idx: torch.Tensor) -> torch.Tensor:
        return a * torch.nn.functional.one_hot((idx + 1) % V, V).float()  # (B, T, V)

    result = score(predict_next, tokens, tiny_table, seq_len=8)
    per_token = -math.log(math.exp(a) / (math.exp(a) + V - 1))
    n_bytes = tiny_table.count_span(tokens)
    assert result.nll_nats == pytest.approx(per_token, rel=1e-6)
    assert result.bpb == pytest.approx(per_token * result.n_targets / math.log(2) / n_bytes, rel=1e-6)


def test_context_free_model_scores_the_same_in_both_modes(tiny_table: ByteTable) -> None:
    """A model that sees only the current token gives identical totals non-overlapping and sliding."""
    tokens, model = _stream(500), ContextFree()
    flat = score(model, tokens, tiny_table, seq_len=32)
    slide = score(model, tokens, tiny_table, seq_len=32, stride=8)
    assert (slide.n_targets, slide.n_bytes) == (flat.n_targets, flat.n_bytes)
    assert slide.bpb == pytest.approx(flat.bpb, rel=1e-12)


def test_sliding_nll_equals_sum_over_each_target_once(tiny_table: ByteTable) -> None:
    """With a context-free model, the sliding total equals Σ nll over targets 1..N-1, each counted once."""
    tokens, model = _stream(257, seed=1), ContextFree(seed=1)
    result = score(model, tokens, tiny_table, seq_len=20, stride=7, batch_size=3)
    expected = model.nll(tokens[:-1], tokens[1:]).sum()
    assert result.n_targets == 256
    assert result.nll_nats * result.n_targets == pytest.approx(expected, rel=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    n_targets=st.integers(1, 400),
    seq_len=st.integers(1, 40),
    stride_frac=st.floats(0, 1),
    sliding=st.booleans(),
)
def test_window_plan_scores_each_target_once(
    n_targets: int, seq_len: int, stride_frac: float, sliding: bool
) -> None:
    """Every plan scores targets 1..M exactly once, with windows of at most seq_len tokens."""
    stride = max(1, round(stride_frac * seq_len)) if sliding else None
    starts, lengths, lo = plan_windows(n_targets, seq_len, stride)
    assert (lengths <= seq_len).all() and (lo < lengths).all() and (starts + lengths <= n_targets).all()
    hits = np.zeros(n_targets + 1, dtype=np.int64)
    for s, n, j in zip(starts, lengths, lo, strict=True):
        hits[s + 1 + j : s + 1 + n] += 1
    assert hits[0] == 0 and (hits[1:] == 1).all()


def test_model_sees_windows_of_seq_len(tiny_table: ByteTable) -> None:
    """The model is called on windows of at most seq_len tokens, stride apart, covering the whole stream."""
    seen: list[tuple[int, ...]] = []

    def record(idx: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(idx.shape))
        return _uniform(idx)

    score(record, _stream(101), tiny_table, seq_len=16, stride=4, batch_size=4)
    n_windows = sum(b for b, _ in seen)
    assert max(t for _, t in seen) == 16
    assert n_windows == 1 + math.ceil((100 - 16) / 4)


def test_challenge_rule_keeps_whole_windows_of_targets(tiny_table: ByteTable) -> None:
    """rule="challenge" scores the first ((N-1)//L)*L targets, in both modes."""
    tokens = _stream(100)
    for stride in (None, 5):
        result = score(_uniform, tokens, tiny_table, seq_len=16, stride=stride, rule="challenge")
        assert result.n_targets == (99 // 16) * 16 and result.rule == "challenge"
        assert result.n_bytes == tiny_table.count_span(tokens, 1, 97)


def test_all_rule_scores_the_partial_last_window(tiny_table: ByteTable) -> None:
    """rule="all" scores all N-1 targets, the last window shorter."""
    result = score(_uniform, _stream(100), tiny_table, seq_len=16)
    assert result.n_targets == 99 and result.mode == "non-overlapping" and result.stride is None


def _brute_force(model, tokens: np.ndarray, table: ByteTable, seq_len: int, stride: int | None) -> float:
    """bpb by one model call per target, on the context its window gives it (the rule, not the batching)."""
    nll = 0.0
    for t in range(1, len(tokens)):
        if stride is None:
            start = (t - 1) // seq_len * seq_len  # the non-overlapping window holding target t
        else:
            start = max(0, math.ceil((t - seq_len) / stride)) * stride  # the earliest window holding t
        logits = model(torch.from_numpy(tokens[start:t][None].astype(np.int64)))[0, -1]  # (V,)
        nll -= torch.log_softmax(logits.double(), dim=-1)[int(tokens[t])].item()
    return nll / math.log(2) / table.count_span(tokens)


def test_sliding_matches_brute_force_per_target(tiny_table: ByteTable) -> None:
    """Sliding scores of a context-dependent model equal a per-target computation with the most context."""
    tokens, model = _stream(61, seed=2), ContextDependent()
    result = score(model, tokens, tiny_table, seq_len=12, stride=5, batch_size=2)
    assert result.bpb == pytest.approx(_brute_force(model, tokens, tiny_table, 12, 5), rel=1e-6)


def test_non_overlapping_matches_brute_force_per_target(tiny_table: ByteTable) -> None:
    """Non-overlapping scores of a context-dependent model equal a per-target computation."""
    tokens, model = _stream(61, seed=2), ContextDependent()
    result = score(model, tokens, tiny_table, seq_len=12, batch_size=2)
    assert result.bpb == pytest.approx(_brute_force(model, tokens, tiny_table, 12, None), rel=1e-6)


def test_context_dependent_model_differs_between_modes(tiny_table: ByteTable) -> None:
    """With context dependence, sliding and non-overlapping give different scores."""
    tokens, model = _stream(61, seed=2), ContextDependent()
    flat = score(model, tokens, tiny_table, seq_len=12)
    slide = score(model, tokens, tiny_table, seq_len=12, stride=5)
    assert abs(slide.bpb - flat.bpb) > 1e-4


def test_stride_equal_to_seq_len_is_non_overlapping(tiny_table: ByteTable) -> None:
    """Sliding with stride = seq_len scores exactly like the non-overlapping mode."""
    tokens, model = _stream(90, seed=3), ContextDependent()
    flat = score(model, tokens, tiny_table, seq_len=12)
    slide = score(model, tokens, tiny_table, seq_len=12, stride=12)
    assert slide.bpb == pytest.approx(flat.bpb, rel=1e-12) and slide.mode == "sliding"


def test_bf16_logits_are_scored_in_fp32(tiny_table: ByteTable) -> None:
    """bf16 logits score like the same values given as fp32 (log-softmax is not done in bf16)."""
    tokens, model = _stream(200, seed=4), ContextFree(seed=4)
    low = score(lambda idx: model(idx).bfloat16(), tokens, tiny_table, seq_len=16)
    high = score(lambda idx: model(idx).bfloat16().float(), tokens, tiny_table, seq_len=16)
    assert low.bpb == pytest.approx(high.bpb, rel=1e-12)


def test_batch_size_does_not_change_the_score(tiny_table: ByteTable) -> None:
    """The score is the same whatever the batch size."""
    tokens, model = _stream(200, seed=5), ContextDependent()
    one = score(model, tokens, tiny_table, seq_len=16, stride=4, batch_size=1)
    many = score(model, tokens, tiny_table, seq_len=16, stride=4, batch_size=64)
    assert one.bpb == pytest.approx(many.bpb, rel=1e-9)


def test_stride_above_seq_len_is_rejected(tiny_table: ByteTable) -> None:
    """A stride longer than the window would skip targets, so it is refused."""
    with pytest.raises(ValueError, match="stride"):
        score(_uniform, _stream(50), tiny_table, seq_len=8, stride=9)


def test_token_outside_table_is_rejected(tiny_table: ByteTable) -> None:
    """A token id the byte table does not know is refused before any model call."""
    with pytest.raises(ValueError, match="outside"):
        score(_uniform, np.array([1, 2, 8, 3]), tiny_table, seq_len=4)


def test_wrong_logits_shape_is_rejected(tiny_table: ByteTable) -> None:
    """A model_fn returning logits of the wrong shape is refused with the shapes named."""
    with pytest.raises(ValueError, match="shape"):
        score(lambda idx: torch.zeros(idx.shape[0], V), _stream(50), tiny_table, seq_len=8)


def test_sample_shard_score_carries_a_matching_audit(
    val_tokens: np.ndarray, sp_table: ByteTable, sp_model_path: Path
) -> None:
    """On the sample shard, both rules' byte counts agree with the decoded text of the scored span."""
    zeros = lambda idx: torch.zeros(*idx.shape, 1024)  # noqa: E731
    audit = make_audit(sp_model_path)
    for rule, n_bytes in (("all", 221_983), ("challenge", None)):
        result = score(zeros, val_tokens, sp_table, seq_len=1024, rule=rule, audit=audit)
        check_audit(result)
        assert n_bytes is None or result.n_bytes == n_bytes
        assert result.bpb == pytest.approx(math.log2(1024) * result.n_targets / result.n_bytes, rel=1e-7)


def test_check_audit_raises_on_mismatch() -> None:
    """check_audit refuses a result whose decoded-text count differs from the table's."""
    result = BpbResult(
        bpb=1.0, nll_nats=1.0, n_targets=10, n_bytes=40, mode="sliding", rule="all", seq_len=8, stride=4,
        seconds=1.0, tokens_per_second=10.0, audit_bytes=41,
    )  # fmt: skip
    with pytest.raises(AuditError, match="40"):
        check_audit(result)


def test_check_audit_raises_without_audit() -> None:
    """check_audit refuses a result that carries no audit at all."""
    result = BpbResult(
        bpb=1.0, nll_nats=1.0, n_targets=10, n_bytes=40, mode="sliding", rule="all", seq_len=8, stride=4,
        seconds=1.0, tokens_per_second=10.0,
    )  # fmt: skip
    with pytest.raises(AuditError, match="no decoded-text audit"):
        check_audit(result)


def test_result_to_dict_holds_every_field(tiny_table: ByteTable) -> None:
    """to_dict gives a plain dict with the score, counts, mode, rule and timing."""
    d = score(_uniform, _stream(40), tiny_table, seq_len=8, stride=4).to_dict()
    assert set(d) >= {
        "bpb",
        "nll_nats",
        "n_targets",
        "n_bytes",
        "mode",
        "rule",
        "seq_len",
        "stride",
        "seconds",
    }
    assert d["mode"] == "sliding" and d["stride"] == 4 and d["audit_bytes"] is None
