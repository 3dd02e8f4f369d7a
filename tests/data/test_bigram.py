"""Bigram stage: pair counting rules, add-k smoothing, files, and the bigram's own validation bpb."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from golfmodel.data.bigram import (
    BigramTable,
    bigram_bpb,
    build_bigram,
    count_bigrams,
    count_pairs,
    load_bigram,
    load_logprior,
    save_bigram,
    smooth_logprob,
)
from golfmodel.data.shards import read_shard, write_shard
from golfmodel.eval.bytes import ByteTable


def test_counts_of_hand_made_shard(tmp_path: Path) -> None:
    """Every adjacent pair is counted, including last-token → BOS and BOS → first token."""
    write_shard(tmp_path / "s.bin", np.array([1, 5, 6, 1, 5], dtype=np.uint16))
    c = count_bigrams([tmp_path / "s.bin"], 8)
    want = {(1, 5): 2, (5, 6): 1, (6, 1): 1}
    assert {tuple(map(int, ij)): int(c[tuple(ij)]) for ij in np.argwhere(c)} == want


def test_shard_opening_mid_document_counts_bos_prev(tmp_path: Path) -> None:
    """A shard that does not start with BOS gets the pair (BOS → first token)."""
    c = count_pairs(np.array([5, 6, 1, 7], dtype=np.uint16), 8)
    assert c[1, 5] == 1 and c.sum() == 4


def test_chunked_counting_equals_one_pass() -> None:
    """Counting in chunks of 3 tokens gives the same table as one chunk (pairs across chunk edges kept)."""
    tokens = np.random.default_rng(0).integers(0, 16, size=101).astype(np.uint16)
    np.testing.assert_array_equal(count_pairs(tokens, 16, chunk_tokens=3), count_pairs(tokens, 16))


def test_smoothed_rows_sum_to_one() -> None:
    """exp(logprob) of every row sums to 1, including rows never seen."""
    counts = np.zeros((6, 6), dtype=np.int64)
    counts[1, 2], counts[2, 3] = 7, 1
    p = np.exp(smooth_logprob(counts, 0.1).astype(np.float64))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert p[0, 0] == pytest.approx(1 / 6) and p[1, 2] == pytest.approx(7.1 / 7.6)


@pytest.mark.parametrize("single_file", [False, True], ids=["folder", "npz"])
def test_save_load_round_trip(tmp_path: Path, single_file: bool) -> None:
    """Counts and the log-prior come back exactly from the folder layout and from one .npz."""
    counts = np.arange(16, dtype=np.int64).reshape(4, 4)
    table = BigramTable(counts=counts, k=0.5)
    out = tmp_path / ("t.npz" if single_file else "dir")
    save_bigram(table, out)
    back = load_bigram(out)
    np.testing.assert_array_equal(back.counts, counts)
    assert back.k == 0.5
    np.testing.assert_array_equal(load_logprior(out), table.logprob())


def test_bigram_bpb_of_hand_made_case() -> None:
    """bpb = Σ −log p / ln 2 / Σ bytes over all N−1 targets, with the byte table's counts."""
    logprob = np.log(np.full((260, 260), 1 / 260, dtype=np.float32))
    tokens = np.array([1, 104, 105, 1, 106], dtype=np.uint16)  # 4 targets, 3 of them bytes
    assert bigram_bpb(logprob, tokens, ByteTable.byte260()) == pytest.approx(4 * math.log2(260) / 3, rel=1e-6)


def test_bigram_bpb_sp1024_sample(train_shard: Path, val_shard: Path, sp_model_path: Path) -> None:
    """On the sample (sp1024, k=0.1) the bigram scores 2.7614 bpb on the validation shard."""
    table = build_bigram([train_shard], 1024)
    bpb = bigram_bpb(table, read_shard(val_shard), ByteTable.from_sentencepiece(sp_model_path))
    assert bpb == pytest.approx(2.761391, abs=1e-5)


def test_bigram_bpb_byte260_sample(byte260_sample) -> None:
    """The byte260 conversion of the sample gives a finite bigram bpb below 8 (3.7782)."""
    table = build_bigram(byte260_sample.train_paths, 260)
    bpb = bigram_bpb(table, read_shard(byte260_sample.val_paths[0]), ByteTable.byte260())
    assert bpb == pytest.approx(3.778189, abs=1e-5) and bpb < 8


def test_vocab_too_large_for_dense_table() -> None:
    """Vocabularies beyond the dense-table cap are refused up front."""
    with pytest.raises(ValueError, match="vocab_size must be in"):
        count_pairs(np.array([1, 2], dtype=np.uint16), 65536)
