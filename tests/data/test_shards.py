"""Shard format: reading the official files, writing byte-identical ones, streaming splits, rejecting bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golfmodel.data.shards import (
    HEADER_BYTES,
    ShardError,
    ShardWriter,
    document_bounds,
    iter_documents,
    read_shard,
    shard_info,
    write_shard,
)


def test_sample_val_shard_counts(val_shard: Path) -> None:
    """The sample validation shard holds 93,187 tokens in 76 documents."""
    info = shard_info(val_shard, vocab_size=1024)
    assert (info.n_tokens, info.n_docs) == (93187, 76)


def test_read_shard_is_read_only_memmap(val_shard: Path) -> None:
    """Tokens come back as a read-only uint16 memory map."""
    tokens = read_shard(val_shard)
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16 and not tokens.flags.writeable


def test_write_shard_is_byte_identical_to_official(train_shard: Path, tmp_path: Path) -> None:
    """Writing the official shard's tokens reproduces the official file byte for byte."""
    out = tmp_path / "fineweb_train_000000.bin"
    write_shard(out, np.asarray(read_shard(train_shard)))
    assert out.read_bytes() == train_shard.read_bytes()


def test_round_trip_any_int_dtype(tmp_path: Path) -> None:
    """int64 tokens in range are written as uint16 and read back equal."""
    tokens = np.array([1, 0, 65535, 7, 1, 3], dtype=np.int64)
    write_shard(tmp_path / "s.bin", tokens)
    np.testing.assert_array_equal(read_shard(tmp_path / "s.bin"), tokens)


def test_write_rejects_tokens_beyond_uint16(tmp_path: Path) -> None:
    """A token id that does not fit uint16 is refused and nothing is written."""
    with pytest.raises(ValueError, match="65535"):
        write_shard(tmp_path / "s.bin", np.array([1, 70000]))
    assert list(tmp_path.iterdir()) == []


def _corrupt(path: Path, offset: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "fault"),
    [
        (lambda p: _corrupt(p, 0, (123).to_bytes(4, "little")), "bad magic"),
        (lambda p: _corrupt(p, 4, (2).to_bytes(4, "little")), "unsupported version"),
        (lambda p: p.write_bytes(p.read_bytes()[:-2]), "file size"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0\0"), "file size"),
        (lambda p: _corrupt(p, 40, b"\x01"), "reserved header field 10"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated header"),
    ],
    ids=["magic", "version", "short", "long", "reserved", "header"],
)
def test_bad_shard_error_names_file_and_fault(tmp_path: Path, damage, fault: str) -> None:
    """Each malformed field raises ShardError naming the file and the fault."""
    path = tmp_path / "bad.bin"
    write_shard(path, np.array([1, 5, 6, 7], dtype=np.uint16))
    damage(path)
    with pytest.raises(ShardError, match=fault) as info:
        read_shard(path)
    assert str(path) in str(info.value)


def test_out_of_vocab_token_named(tmp_path: Path) -> None:
    """A token >= vocab_size is reported with its index and value."""
    path = tmp_path / "oov.bin"
    write_shard(path, np.array([1, 5, 1024, 7], dtype=np.uint16))
    with pytest.raises(ShardError, match=r"token 1024 at index 2") as info:
        read_shard(path, vocab_size=1024)
    assert str(path) in str(info.value)


def test_missing_file_is_shard_error(tmp_path: Path) -> None:
    """A missing shard raises ShardError naming it."""
    with pytest.raises(ShardError, match="nope.bin"):
        read_shard(tmp_path / "nope.bin")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, HEADER_BYTES - 1), xor=st.integers(1, 255))
def test_fuzz_any_header_byte_change_is_rejected(tmp_path: Path, offset: int, xor: int) -> None:
    """Flipping any bits of any header byte makes the reader refuse the file."""
    path = tmp_path / "fuzz.bin"
    write_shard(path, np.array([1, 9, 8, 7, 1, 2], dtype=np.uint16))
    data = bytearray(path.read_bytes())
    data[offset] ^= xor
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError):
        read_shard(path)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(st.integers(0, 65535), max_size=200))
def test_fuzz_round_trip(tmp_path: Path, tokens: list[int]) -> None:
    """Any uint16 token list survives write → read."""
    write_shard(tmp_path / "rt.bin", np.array(tokens, dtype=np.int64))
    np.testing.assert_array_equal(read_shard(tmp_path / "rt.bin"), np.array(tokens, dtype=np.uint16))


def test_shard_writer_splits_documents_across_files(tmp_path: Path) -> None:
    """The writer fills files of shard_tokens tokens with the official names, cutting documents."""
    docs = np.array([1, 10, 11, 12, 13, 1, 14, 1, 15], dtype=np.uint16)
    with ShardWriter(tmp_path, "fineweb_train", shard_tokens=4) as w:
        w.write(docs[:6])
        w.write(docs[6:])
    assert [p.name for p in w.paths] == [f"fineweb_train_{i:06d}.bin" for i in range(3)]
    parts = [np.asarray(read_shard(p)) for p in w.paths]
    assert [len(p) for p in parts] == [4, 4, 1]
    assert parts[1][0] != 1  # the second file opens mid-document
    np.testing.assert_array_equal(np.concatenate(parts), docs)


def test_shard_writer_abort_keeps_only_whole_files(tmp_path: Path) -> None:
    """An error inside the writer block leaves finished shards and no partial or temporary file."""
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "fineweb_val", shard_tokens=3) as w:
        w.write(np.array([1, 2, 3, 1, 4], dtype=np.uint16))
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fineweb_val_000000.bin"]


def test_document_bounds_with_leading_partial_document() -> None:
    """Tokens before the first BOS form a partial document; each BOS starts one."""
    tokens = np.array([7, 8, 1, 5, 1, 6, 6], dtype=np.uint16)
    starts, ends = document_bounds(tokens)
    assert starts.tolist() == [0, 2, 4] and ends.tolist() == [2, 4, 7]
    assert [d.tolist() for d in iter_documents(tokens)] == [[7, 8], [1, 5], [1, 6, 6]]
