"""The single-file train_gpt.py: fixed size, deterministic, self-contained, and it passes its own self-test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from golfmodel.export import bundle, code_bytes, write_submission_code
from golfmodel.export.runner import selftest_config


def test_script_size_does_not_depend_on_the_configuration() -> None:
    """The padded configuration makes a run's script exactly as long as the size check's placeholder."""
    assert len(bundle.build_script(selftest_config()).encode()) == code_bytes()


def test_script_is_deterministic() -> None:
    """The same source and configuration give the same bytes (so the size check is reproducible)."""
    assert bundle.build_script(selftest_config()) == bundle.build_script(selftest_config())


def test_plain_style_script_compiles() -> None:
    """The verbatim-sources variant is valid Python."""
    compile(bundle.build_script(None, style="plain"), "train_gpt.py", "exec")


def test_embedded_modules_leave_out_the_cli_and_the_solver() -> None:
    """The script carries the runner's import closure, not the CLIs, benches or the budget solver."""
    names = set(bundle.collect_modules())
    assert {"golfmodel.export.runner", "golfmodel.q2bn.artifact", "golfmodel.train.trainer"} <= names
    assert not names & {"golfmodel.model.budget", "golfmodel.export.bundle", "golfmodel.bench.minigolf"}


def test_disallowed_import_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module importing a package a submission cannot rely on stops the bundle, naming the file."""
    pkg = tmp_path / "golfmodel"
    (pkg / "export").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "export" / "__init__.py").write_text("")
    (pkg / "export" / "runner.py").write_text("import pandas\n")
    monkeypatch.setattr(bundle, "_LIB_ROOT", pkg)
    with pytest.raises(bundle.BundleError, match=r"runner\.py: imports \['pandas'\]"):
        bundle.collect_modules()


def test_oversized_configuration_is_rejected() -> None:
    """A configuration longer than CONFIG_BYTES cannot be embedded at the fixed size."""
    with pytest.raises(ValueError, match="CONFIG_BYTES"):
        bundle.pad_config({"x": "y" * bundle.CONFIG_BYTES})


def test_placeholder_script_refuses_to_train(tmp_path: Path) -> None:
    """The size check's script (no run configuration) exits 2 instead of training."""
    (script,) = write_submission_code(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 2 and "no run configuration" in proc.stderr


def test_generated_script_selftest_passes_with_the_embedded_library(tmp_path: Path) -> None:
    """`python train_gpt.py --selftest` trains, packs, reloads and scores on CPU using its own modules."""
    (script,) = write_submission_code(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(script), "--selftest"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"library: embedded in {script}" in proc.stdout
    assert "selftest ok" in proc.stdout
    assert "final_q2bn_roundtrip_exact val_loss:" in proc.stdout
