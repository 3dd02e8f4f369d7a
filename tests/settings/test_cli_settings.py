"""`golf settings show`: resolves and validates without probing hardware; invalid → exit 2 naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from golf.flows.cli import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GOLF_"):
            monkeypatch.delenv(key)


def test_settings_show_prints_resolved_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """The preset's values and --set overrides appear in the output."""
    assert main(["settings", "show", "--preset", "test", "--set", "train.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "[train]" in out and "max_steps = 3" in out


def test_settings_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the whole tree as JSON."""
    assert main(["settings", "show", "--preset", "h100x8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["train"]["nproc"] == 8 and data["preset"] == "h100x8"


def test_settings_show_invalid_exits_2_naming_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid value exits 2 with the field's path on stderr."""
    assert main(["settings", "show", "--set", "pack.budget_bytes=0"]) == 2
    assert "pack.budget_bytes" in capsys.readouterr().err


def test_settings_show_imports_neither_prefect_nor_torch() -> None:
    """settings show stays fast: it imports neither Prefect nor torch (no hardware probing)."""
    code = (
        "import sys; from golf.flows.cli import main; rc = main(['settings', 'show', '--preset', 'h100x8']); "
        "bad = [m for m in ('prefect', 'torch') if m in sys.modules]; sys.exit(rc or (3 if bad else 0))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLF_")}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


def test_run_rejects_unknown_stage(capsys: pytest.CaptureFixture[str]) -> None:
    """golf run --stages with an unknown name exits 2 before any work."""
    assert main(["run", "--preset", "test", "--stages", "download,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
