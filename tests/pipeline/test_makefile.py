"""The Makefile in a checkout whose path holds a space: `make run` still hands the local mirror to golf."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_GOLF = '#!/bin/sh\necho "mirror=[$GOLF_DATA__MIRROR] args=[$*]"\n'


def _checkout(root: Path, *, mirror: bool) -> Path:
    """`root/my work/repo` with the Makefile, an up-to-date fake .venv/bin/golf, and optionally the sample mirror."""
    repo = root / "my work" / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    shutil.copyfile(REPO / "Makefile", repo / "Makefile")
    (repo / "pyproject.toml").write_text("")
    os.utime(repo / "pyproject.toml", (1, 1))  # older than the fake golf: make does not reinstall
    golf = repo / ".venv" / "bin" / "golf"
    golf.write_text(FAKE_GOLF)
    golf.chmod(0o755)
    if mirror:
        manifest = root / "my work" / "shared" / "fineweb-sample" / "datasets" / "manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text("{}")
    return repo


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_run_in_a_path_with_spaces_uses_the_mirror(tmp_path: Path) -> None:
    """`make run` under `my work/` exports GOLF_DATA__MIRROR=<abs>/my work/shared/fineweb-sample to golf."""
    repo = _checkout(tmp_path, mirror=True)
    out = subprocess.run(["make", "-s", "run"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    want = (tmp_path / "my work" / "shared" / "fineweb-sample").resolve()
    assert f"mirror=[{want}] args=[run --preset smoke]" in out.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_run_without_the_mirror_leaves_it_unset(tmp_path: Path) -> None:
    """No sample folder next to the checkout: GOLF_DATA__MIRROR stays unset (golf then uses the hub)."""
    repo = _checkout(tmp_path, mirror=False)
    out = subprocess.run(["make", "-s", "run"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mirror=[] args=[run --preset smoke]" in out.stdout
