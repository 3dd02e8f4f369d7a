"""`golf inspect FILE`: header, per-tensor table and size breakdown of an artifact.

Reads Q2BN (zstd frame) and the gpt-int8 arm's int8+zlib files. `register(sub)` adds the
subcommand to the `golf` CLI's argparse subparsers; standalone:

    python -m golfmodel.q2bn.cli inspect artifacts/.../model.q2bn
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golfmodel.q2bn.artifact import TensorInfo, kind_totals, tensor_infos
from golfmodel.q2bn.format import MAGIC, ZSTD_MAGIC, Q2BNError, read_q2bn_contents
from golfmodel.q2bn.int8zlib import Int8ZlibError, int8zlib_infos, read_int8zlib


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add `inspect FILE` to a subparsers object; the handler is stored as `func`."""
    p = sub.add_parser("inspect", help="show an artifact's header, tensors and size breakdown")
    p.add_argument("file", type=Path, help="a Q2BN (.q2bn) or int8+zlib (.ptz) artifact")
    p.set_defaults(func=cmd_inspect)
    return p


def _tensor_table(infos: Sequence[TensorInfo]) -> list[str]:
    width = max([len(i.name) for i in infos] + [4])
    lines = [f"{'#':>4}  {'name':<{width}}  {'kind':<9}  {'shape':<16}  {'payload bytes':>13}"]
    for n, i in enumerate(infos):
        shape = "x".join(str(d) for d in i.shape) or "()"
        lines.append(f"{n:>4}  {i.name:<{width}}  {i.kind:<9}  {shape:<16}  {i.payload_bytes:>13,}")
    return lines


def _kind_table(infos: Sequence[TensorInfo], raw_bytes: int) -> list[str]:
    counts: dict[str, int] = {}
    for i in infos:
        counts[i.kind] = counts.get(i.kind, 0) + 1
    lines = [f"{'kind':<9}  {'tensors':>7}  {'payload bytes':>13}  {'% of raw':>8}"]
    for kind, total in kind_totals(infos).items():
        lines.append(
            f"{kind:<9}  {counts[kind]:>7}  {total:>13,}  {100.0 * total / max(raw_bytes, 1):>7.2f}%"
        )
    return lines


def describe(path: Path) -> str:
    """The inspect report of one artifact (raises Q2BNError / Int8ZlibError / OSError)."""
    with path.open("rb") as f:
        head = f.read(4)
    compressed = path.stat().st_size
    header: dict[str, Any]
    if head == ZSTD_MAGIC or head == MAGIC:
        contents = read_q2bn_contents(path)
        header, raw, fmt = contents.header, contents.raw_bytes, "Q2BN v1 in one zstd frame"
        infos = tensor_infos(contents.records)
    elif head[:1] == b"\x78":
        header, obj, raw = read_int8zlib(path)
        fmt, infos = "int8 + zlib (challenge baseline export)", list(int8zlib_infos(obj))
    else:
        raise Q2BNError(
            f"{path}: neither a Q2BN artifact (zstd frame) nor an int8+zlib file (first bytes {head.hex()})"
        )
    payload = sum(i.payload_bytes for i in infos)
    lines = [
        f"file: {path}",
        f"format: {fmt}",
        "",
        "header:",
        json.dumps(header, indent=2, sort_keys=True, ensure_ascii=False),
        "",
        f"tensors ({len(infos)}):",
        *_tensor_table(infos),
        "",
        "size:",
        f"  compressed (on disk)  {compressed:>13,}",
        f"  raw (decompressed)    {raw:>13,}",
        f"  tensor payloads       {payload:>13,}",
        f"  header + framing      {raw - payload:>13,}",
        f"  compressed / raw      {compressed / max(raw, 1):>13.4f}",
        "",
        *_kind_table(infos, raw),
    ]
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print the report; 1 with a message on stderr for an unreadable or corrupt file."""
    try:
        print(describe(Path(args.file)))
    except (Q2BNError, Int8ZlibError) as e:
        print(f"golf inspect: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"golf inspect: error: {args.file}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="golfmodel.q2bn.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
