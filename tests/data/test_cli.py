"""`golf data` subcommands, called the way the golf CLI calls them (parser → args.func(args))."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from golfmodel.data.cli import register
from golfmodel.data.shards import read_shard


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_verify_sample_val_with_official_tokenizer(val_shard: Path, sp_model_path: Path, capsys) -> None:
    """verify prints tokens, documents, table bytes and decoded bytes of the sample validation shard."""
    assert _run(["data", "verify", str(val_shard), "--tokenizer", str(sp_model_path)]) == 0
    assert capsys.readouterr().out == f"{val_shard} tokens=93187 docs=76 bytes=221983 decoded_bytes=221983\n"


def test_verify_without_tokenizer_prints_counts_only(train_shard: Path, capsys) -> None:
    """Without a tokenizer, verify prints token and document counts only."""
    assert _run(["data", "verify", str(train_shard)]) == 0
    assert capsys.readouterr().out == f"{train_shard} tokens=628457 docs=200\n"


def test_verify_byte260_shard(byte260_sample, capsys) -> None:
    """--variant byte260 counts one byte per non-special token, equal to the decoded bytes."""
    path = byte260_sample.val_paths[0]
    assert _run(["data", "verify", str(path), "--variant", "byte260"]) == 0
    assert capsys.readouterr().out.endswith("tokens=222059 docs=76 bytes=221983 decoded_bytes=221983\n")


def test_verify_bad_shard_exits_nonzero(tmp_path: Path, val_shard: Path, capsys) -> None:
    """A bad shard makes verify exit 1 with the file and the fault on stderr; good files still print."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(val_shard.read_bytes()[:-4])
    assert _run(["data", "verify", str(bad), str(val_shard)]) == 1
    out = capsys.readouterr()
    assert f"{bad}: file size" in out.err and "tokens=93187" in out.out


def test_tokenise_command_writes_shards(tmp_path: Path, capsys) -> None:
    """tokenise writes val and train shards from a JSONL and prints the counts."""
    docs = tmp_path / "d.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["ab", "c", "déf"]))
    argv = ["data", "tokenise", "--docs", str(docs), "--variant", "byte260", "--num-val-docs", "1",
            "--workers", "0", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    assert _run(argv) == 0
    assert "val: files=1 docs=1 tokens=3" in capsys.readouterr().out
    np.testing.assert_array_equal(read_shard(tmp_path / "out" / "fineweb_train_000000.bin"),
                                  [1, 103, 1, 104, 0xC3 + 4, 0xA9 + 4, 106])  # fmt: skip


def test_bigram_command_prints_bpb(tmp_path: Path, train_shard: Path, val_shard: Path, sp_model_path: Path,
                                   capsys) -> None:  # fmt: skip
    """bigram writes counts.npz and logprob.npy and prints bigram_bpb for --val."""
    argv = ["data", "bigram", "--shards", str(train_shard), "--val", str(val_shard),
            "--tokenizer", str(sp_model_path), "--out", str(tmp_path / "bg")]  # fmt: skip
    assert _run(argv) == 0
    assert "bigram_bpb=2.761391" in capsys.readouterr().out
    assert (tmp_path / "bg" / "counts.npz").exists() and (tmp_path / "bg" / "logprob.npy").exists()


def test_bigram_command_needs_a_vocabulary(tmp_path: Path, train_shard: Path, capsys) -> None:
    """Without --vocab, --tokenizer or --variant the bigram command fails with a message."""
    assert _run(["data", "bigram", "--shards", str(train_shard), "--out", str(tmp_path / "bg")]) == 1
    assert "give --vocab" in capsys.readouterr().err


def test_unknown_data_command_is_usage_error() -> None:
    """A missing subcommand exits with argparse's usage error (2)."""
    with pytest.raises(SystemExit) as info:
        _run(["data"])
    assert info.value.code == 2
