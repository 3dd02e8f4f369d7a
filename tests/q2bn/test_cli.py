"""`golf inspect FILE`: header, tensor table and size breakdown; a clear error for a bad file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from golfmodel.q2bn.artifact import pack_model
from golfmodel.q2bn.cli import cmd_inspect, main, register
from golfmodel.q2bn.int8zlib import pack_int8zlib

from .conftest import TinyLM


def test_register_adds_inspect_subcommand() -> None:
    """register() wires `inspect FILE` to cmd_inspect."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inspect", "x.q2bn"])
    assert args.func is cmd_inspect and args.file == Path("x.q2bn")


def test_inspect_prints_header_tensors_and_sizes(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report shows the header JSON, every tensor with its kind, and compressed vs raw bytes."""
    path = tmp_path / "m.q2bn"
    result = pack_model(tiny_model, path, meta=meta)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert '"settings_hash"' in out and '"tokenizer"' in out
    assert "blocks.0.up.weight" in out and " q2 " in out and "alias" in out
    assert f"{result.compressed_bytes:,}" in out and f"{result.raw_bytes:,}" in out


def test_inspect_reads_int8zlib_files(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gpt-int8 arm's int8+zlib artifact is inspected too."""
    path = tmp_path / "m.ptz"
    pack_int8zlib(tiny_model, path, meta=meta)
    assert main(["inspect", str(path)]) == 0
    assert "int8 + zlib" in capsys.readouterr().out


def test_inspect_bad_file_fails_with_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupt or missing file gives exit code 1 and an error naming the file on stderr."""
    bad = tmp_path / "bad.q2bn"
    bad.write_bytes(b"not an artifact")
    assert main(["inspect", str(bad)]) == 1
    assert "bad.q2bn" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.q2bn")]) == 1
    assert "missing.q2bn" in capsys.readouterr().err
