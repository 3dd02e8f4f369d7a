"""The submission size check (SPEC §5): compressed artifact bytes + shipped code bytes <= budget.

What counts as code: the files a submission ships, i.e. the exported single-file training and
evaluation script (`train_gpt.py` of a records folder), counted as its bytes on disk — the
challenge counts `len(code.encode("utf-8"))` of that file, which equals its on-disk size for a
UTF-8 file with `\\n` line ends. The caller passes the paths; nothing else is added implicitly.
The artifact counts at its on-disk (compressed) size. The check passes when total <= budget.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_BUDGET_BYTES = 16_000_000


@dataclass(frozen=True, slots=True)
class SizeRow:
    """One counted file."""

    role: str  # "artifact" or "code"
    path: str
    bytes: int


@dataclass(frozen=True, slots=True)
class SizeReport:
    """Byte totals of a submission against its budget, with one row per counted file."""

    artifact_bytes: int
    code_bytes: int
    total_bytes: int
    budget_bytes: int
    ok: bool
    rows: tuple[SizeRow, ...]

    @property
    def headroom_bytes(self) -> int:
        """budget - total (negative when over)."""
        return self.budget_bytes - self.total_bytes

    def table(self) -> str:
        """Plain-text breakdown."""
        width = max([len(r.path) for r in self.rows] + [24])
        lines = [f"{'role':<9} {'file':<{width}} {'bytes':>12}"]
        lines += [f"{r.role:<9} {r.path:<{width}} {r.bytes:>12,}" for r in self.rows]
        lines.append(f"{'total':<9} {'':<{width}} {self.total_bytes:>12,}")
        lines.append(f"{'budget':<9} {'':<{width}} {self.budget_bytes:>12,}")
        pct = 100.0 * self.total_bytes / self.budget_bytes if self.budget_bytes else float("inf")
        verdict = "OK" if self.ok else f"OVER BUDGET by {-self.headroom_bytes:,} bytes"
        lines.append(f"{'headroom':<9} {'':<{width}} {self.headroom_bytes:>12,}  ({pct:.2f}% used) {verdict}")
        return "\n".join(lines)

    def raise_if_over(self) -> None:
        """Raise BudgetError (with the table) when the total exceeds the budget."""
        if not self.ok:
            raise BudgetError(self)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headroom_bytes": self.headroom_bytes}


class BudgetError(ValueError):
    """The submission is larger than its byte budget; `.report` holds the breakdown.

    A ValueError (bad input to the pipeline, not a bug), so stage runners report it as one line.
    """

    def __init__(self, report: SizeReport) -> None:
        super().__init__(
            f"submission is {report.total_bytes:,} bytes, over the budget of {report.budget_bytes:,}:\n{report.table()}"
        )
        self.report = report


def _size(path: Path, role: str) -> int:
    if not path.is_file():
        raise FileNotFoundError(f"size check: {role} file {path} does not exist")
    return path.stat().st_size


def size_check(
    artifact_path: str | os.PathLike[str],
    code_paths: Sequence[str | os.PathLike[str]],
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> SizeReport:
    """Sum the artifact's and the code files' on-disk sizes and compare with budget_bytes."""
    if budget_bytes <= 0:
        raise ValueError(f"budget_bytes: must be positive, got {budget_bytes}")
    code = [Path(p) for p in code_paths]
    resolved = [p.resolve() for p in code]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"code_paths: a file is listed twice: {[str(p) for p in code]}")
    artifact = Path(artifact_path)
    rows = [SizeRow("artifact", str(artifact), _size(artifact, "artifact"))]
    rows += [SizeRow("code", str(p), _size(p, "code")) for p in code]
    artifact_bytes = rows[0].bytes
    code_bytes = sum(r.bytes for r in rows[1:])
    total = artifact_bytes + code_bytes
    return SizeReport(artifact_bytes, code_bytes, total, budget_bytes, total <= budget_bytes, tuple(rows))
