"""Size check: compressed artifact + shipped code against the byte budget (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from golfmodel.q2bn.size import BudgetError, size_check


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    artifact = tmp_path / "model.q2bn"
    artifact.write_bytes(b"a" * 1000)
    script = tmp_path / "train_gpt.py"
    script.write_bytes(b"b" * 300)
    extra = tmp_path / "helper.py"
    extra.write_bytes(b"c" * 20)
    return artifact, script, extra


def test_sums_artifact_and_code(files: tuple[Path, Path, Path]) -> None:
    """total = artifact bytes + the bytes of every code file, one row each."""
    artifact, script, extra = files
    report = size_check(artifact, [script, extra], budget_bytes=2000)
    assert (report.artifact_bytes, report.code_bytes, report.total_bytes) == (1000, 320, 1320)
    assert report.ok and report.headroom_bytes == 680
    assert [r.role for r in report.rows] == ["artifact", "code", "code"]
    report.raise_if_over()


def test_exactly_at_budget_passes(files: tuple[Path, Path, Path]) -> None:
    """A total equal to the budget passes (the check fails only above it)."""
    artifact, script, _ = files
    assert size_check(artifact, [script], budget_bytes=1300).ok


def test_over_budget_raises_with_breakdown(files: tuple[Path, Path, Path]) -> None:
    """Above the budget, raise_if_over raises BudgetError whose message holds the table."""
    artifact, script, _ = files
    report = size_check(artifact, [script], budget_bytes=1299)
    assert not report.ok
    with pytest.raises(BudgetError, match="OVER BUDGET by 1 bytes") as err:
        report.raise_if_over()
    assert "train_gpt.py" in str(err.value)
    assert err.value.report is report


def test_missing_file_is_an_error(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A code path that does not exist is reported, not counted as 0 bytes."""
    artifact, _, _ = files
    with pytest.raises(FileNotFoundError, match="nope.py"):
        size_check(artifact, [tmp_path / "nope.py"])


def test_duplicate_code_path_is_an_error(files: tuple[Path, Path, Path]) -> None:
    """The same file listed twice would be counted twice: refuse it."""
    artifact, script, _ = files
    with pytest.raises(ValueError, match="twice"):
        size_check(artifact, [script, script])
