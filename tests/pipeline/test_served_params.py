"""The served deployment as a Prefect user drives it through the API: one override means exactly that
override, a partial settings tree is merged onto the deployment's, runs are named after their run
folders, and a cross-field error reaches the run's Logs. Download stage only, to stay quick."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NAME = "golf-pipeline/test-params"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(flows, sample_root: Path, shared_artifacts: Path) -> Iterator[Path]:
    """`golf serve --preset test` (download stage only) on the session server; yields the artifacts dir."""
    env = {**os.environ, "GOLF_DATA__MIRROR": str(sample_root), "GOLF_PIPELINE__ARTIFACTS_DIR": str(shared_artifacts),
           "GOLF_PIPELINE__STAGES": json.dumps(["download"]), "GOLF_TOKENISER__WORKERS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "golf.flows.cli", "serve", "--preset", "test", "--name", NAME.split("/")[1]]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _wait_for_deployment(NAME, proc)
        yield shared_artifacts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for_deployment(name: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"golf serve exited early: {proc.stderr.read() if proc.stderr else ''}"
            )
            try:
                client.read_deployment_by_name(name)
                return
            except Exception:
                time.sleep(0.5)
    raise TimeoutError(f"deployment {name} did not appear within {timeout} s")


def _run(parameters: dict[str, Any]) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(NAME, parameters=parameters, timeout=180)


def _settings_of(artifacts: Path, flow_run: Any) -> dict[str, Any]:
    return json.loads((artifacts / "runs" / flow_run.name / "settings.json").read_text())


@pytest.fixture(scope="module")
def override_run(served: Path) -> Any:
    return _run({"overrides": {"train.max_steps": 25}})


def test_one_override_means_exactly_that_override(served: Path, override_run: Any, sample_root: Path) -> None:
    """overrides={"train.max_steps": 25}: that value, every other setting the deployment's (the test preset's)."""
    assert override_run.state.is_completed(), override_run.state
    got = _settings_of(served, override_run)
    assert got["train"]["max_steps"] == 25 and got["data"]["mirror"] == str(sample_root)
    assert got["model"]["d_model"] == 64 and got["preset"] == "test"  # not the schema's defaults


def test_a_partial_settings_tree_is_merged_onto_the_deployments(served: Path, sample_root: Path) -> None:
    """settings={"train": {"max_steps": 25}} changes that one value; the rest stays the deployment's."""
    run = _run({"settings": {"train": {"max_steps": 25}}})
    assert run.state.is_completed(), run.state
    got = _settings_of(served, run)
    assert got["train"]["max_steps"] == 25 and got["data"]["mirror"] == str(sample_root)
    assert got["model"]["d_model"] == 64


def test_flow_run_is_named_after_its_run_folder(served: Path, override_run: Any) -> None:
    """The UI's run name is the run folder's name under artifacts/runs/."""
    assert (served / "runs" / override_run.name / "status.json").is_file()


def test_cross_field_error_reaches_the_run_logs(served: Path) -> None:
    """model.n_kv_heads=3 with n_heads=2 passes the form's bounds, fails before any stage, and the
    reason is a line in the run's Logs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    run = _run({"overrides": {"model.n_kv_heads": 3}})
    assert run.state.is_failed() and "n_kv_heads" in (run.state.message or "")
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert any("model.n_kv_heads=3 must divide model.n_heads=2" in log.message for log in logs)
    assert tasks == []
