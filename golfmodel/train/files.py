"""JSONL logs for the trainer; the atomic writers are re-exported from `golfmodel.atomic`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "append_jsonl",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_jsonl",
]


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line (flushed, so a tail -f or a killed run keeps every finished line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (killed writer) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
