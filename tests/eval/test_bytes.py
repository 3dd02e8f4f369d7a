"""Bytes per token (ByteTable) and the decoded-text audit, on hand-made tables and the real sample shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from golfmodel.eval import ByteTable, decoded_bytes, decoded_bytes_span

SAMPLE_VAL_BYTES = 221_983  # SPEC §3 / sample README: all N-1 targets of the sample validation shard


def test_count_adds_space_unless_previous_is_boundary(tiny_table: ByteTable) -> None:
    """A `▁`-piece gets +1 byte after an ordinary token and none after BOS or pad."""
    prev = np.array([1, 0, 2, 5, 1])
    target = np.array([7, 7, 7, 7, 3])
    assert tiny_table.count(prev, target).tolist() == [3, 3, 4, 4, 2]


def test_count_returns_int64_of_broadcast_shape(tiny_table: ByteTable) -> None:
    """count broadcasts prev against target and returns int64."""
    out = tiny_table.count(np.array([[1], [2]]), np.array([5, 6, 7]))
    assert out.dtype == np.int64 and out.tolist() == [[1, 2, 3], [2, 3, 4]]


def test_table_arrays_are_read_only(tiny_table: ByteTable) -> None:
    """A table cannot be edited in place after construction."""
    with pytest.raises(ValueError):
        tiny_table.base_bytes[2] = 9


def test_table_rejects_wrong_dtype() -> None:
    """Constructing a table from arrays of the wrong dtype fails, naming the field."""
    with pytest.raises(ValueError, match="base_bytes"):
        ByteTable(
            base_bytes=np.zeros(4, dtype=np.int64),
            has_space=np.zeros(4, dtype=np.bool_),
            is_boundary=np.zeros(4, dtype=np.bool_),
            vocab_size=4,
            kind="test",
        )


def test_sentencepiece_table_classifies_ids(sp_table: ByteTable) -> None:
    """sp1024: ids 0..3 are boundary with 0 bytes, 4..259 byte-fallback with 1 byte, all others non-boundary."""
    assert sp_table.vocab_size == 1024 and sp_table.kind == "sentencepiece"
    assert sp_table.is_boundary[:4].all() and (sp_table.base_bytes[:4] == 0).all()
    assert (sp_table.base_bytes[4:260] == 1).all() and not sp_table.has_space[4:260].any()
    assert not sp_table.is_boundary[4:].any()


def test_sentencepiece_piece_lengths_strip_space_mark(sp_model_path: Path, sp_table: ByteTable) -> None:
    """A `▁`-piece counts its UTF-8 length without the mark and has_space; others count their full length."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    the = sp.piece_to_id("\u2581the")
    assert sp_table.base_bytes[the] == 3 and sp_table.has_space[the]
    plain = next(i for i in range(260, 1024) if not sp.id_to_piece(i).startswith("\u2581"))
    assert sp_table.base_bytes[plain] == len(sp.id_to_piece(plain).encode()) and not sp_table.has_space[plain]


def test_padded_vocab_ids_are_boundary_with_no_bytes(sp_model_path: Path) -> None:
    """Ids past the tokenizer's vocab (a padded model vocab) count 0 bytes and are boundary."""
    table = ByteTable.from_sentencepiece(sp_model_path, vocab_size=1040)
    assert table.vocab_size == 1040
    assert (table.base_bytes[1024:] == 0).all() and table.is_boundary[1024:].all()


def test_byte260_counts_one_byte_per_non_special_token() -> None:
    """byte260: specials 0..3 count nothing and are boundary, every byte id counts one byte."""
    table = ByteTable.byte260()
    text = "héllo wörld €".encode()
    tokens = np.concatenate([[1], np.frombuffer(text, dtype=np.uint8).astype(np.int64) + 4, [1, 2, 0]])
    assert table.vocab_size == 260 and table.kind == "byte260"
    assert table.count_span(tokens) == len(text)


def test_byte260_audit_matches_table() -> None:
    """byte260: the decoded bytes of a span with two documents match the table, also for a cut span."""
    docs = ["ab€c".encode(), b"x y"]
    tokens = np.concatenate([np.r_[1, np.frombuffer(d, dtype=np.uint8) + 4] for d in docs]).astype(np.int64)
    table = ByteTable.byte260()
    for start, end in [(1, len(tokens)), (3, 9), (4, 5)]:
        assert decoded_bytes_span(tokens, start, end, "byte260") == table.count_span(tokens, start, end)


def test_sample_val_shard_counts_221983_bytes(val_tokens: np.ndarray, sp_table: ByteTable) -> None:
    """Counting all N-1 targets of the sample validation shard gives the challenge's 221,983 bytes."""
    assert len(val_tokens) == 93_187
    assert sp_table.count_span(val_tokens) == SAMPLE_VAL_BYTES


def test_sample_val_shard_decodes_to_221983_bytes(val_tokens: np.ndarray, sp_model_path: Path) -> None:
    """The decoded text of the sample validation shard's 76 documents is 221,983 UTF-8 bytes."""
    assert decoded_bytes(val_tokens, sp_model_path) == SAMPLE_VAL_BYTES
    assert decoded_bytes_span(val_tokens, 1, len(val_tokens), sp_model_path) == SAMPLE_VAL_BYTES


def test_audit_of_span_cut_inside_byte_fallback_run(
    val_tokens: np.ndarray, sp_table: ByteTable, sp_model_path: Path
) -> None:
    """Spans that cut a byte-fallback run (one character over several <0xNN> ids) audit like the table."""
    is_byte = (val_tokens >= 4) & (val_tokens < 260)
    cuts = np.flatnonzero(is_byte[:-1] & is_byte[1:]) + 1  # positions that split a run
    assert len(cuts) > 0
    for cut in cuts[:: max(1, len(cuts) // 8)]:
        for start, end in [(1, cut), (cut, len(val_tokens)), (cut - 200, cut)]:
            audit = decoded_bytes_span(val_tokens, start, end, sp_model_path)
            assert audit == sp_table.count_span(val_tokens, start, end), (start, end)


def test_audit_of_random_spans_matches_table(
    val_tokens: np.ndarray, sp_table: ByteTable, sp_model_path: Path
) -> None:
    """Random spans of the sample shard, cutting documents anywhere, audit to the table's count."""
    rng = np.random.default_rng(0)
    for start, end in np.sort(rng.integers(1, len(val_tokens) + 1, size=(40, 2)), axis=1):
        assert decoded_bytes_span(val_tokens, start, end, sp_model_path) == sp_table.count_span(
            val_tokens, start, end
        )


def test_audit_of_stream_opening_mid_document(
    val_tokens: np.ndarray, sp_table: ByteTable, sp_model_path: Path
) -> None:
    """A stream without BOS at position 0 (a shard split mid-document) audits to the table's count."""
    for offset in (5, 1234):
        tail = val_tokens[offset:]
        assert tail[0] != 1
        assert decoded_bytes_span(tail, 1, len(tail), sp_model_path) == sp_table.count_span(tail)


def test_count_span_rejects_span_outside_targets(tiny_table: ByteTable) -> None:
    """Position 0 has no predecessor, so a span starting there is refused."""
    with pytest.raises(ValueError, match="span"):
        tiny_table.count_span(np.array([1, 2, 3]), 0, 2)
