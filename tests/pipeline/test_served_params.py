"""The served deployment (the session's `served` fixture) as a Prefect user drives it through the API:
one override means exactly that override, a partial settings tree is merged onto the deployment's,
runs are named after their run folders, and a cross-field error reaches the run's Logs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _run(served: str, parameters: dict[str, Any]) -> Any:
    """Trigger the served deployment (download stage only) and wait for the run to end."""
    from prefect.deployments import run_deployment

    return run_deployment(served, parameters={"stages": ["download"], **parameters}, timeout=180)


def _settings_of(artifacts: Path, flow_run: Any) -> dict[str, Any]:
    return json.loads((artifacts / "runs" / flow_run.name / "settings.json").read_text())


@pytest.fixture(scope="module")
def api_run(served: str) -> Any:
    """One API call as a Prefect user makes it: a partial settings tree plus one override."""
    return _run(served, {"settings": {"train": {"max_steps": 25}}, "overrides": {"eval.max_tokens": 4096}})


def test_one_override_means_exactly_that_override(
    shared_artifacts: Path, api_run: Any, sample_root: Path
) -> None:
    """overrides={"eval.max_tokens": 4096}: that value; the deployment's (the test preset's) everywhere else."""
    assert api_run.state.is_completed(), api_run.state
    got = _settings_of(shared_artifacts, api_run)
    assert got["eval"]["max_tokens"] == 4096 and got["eval"]["seq_len"] == 64 and got["preset"] == "test"
    assert (
        got["data"]["mirror"] == str(sample_root) and got["model"]["d_model"] == 64
    )  # not the schema's defaults


def test_a_partial_settings_tree_is_merged_onto_the_deployments(
    shared_artifacts: Path, api_run: Any, sample_root: Path
) -> None:
    """settings={"train": {"max_steps": 25}} changes that one value; the rest of `train` stays the deployment's."""
    got = _settings_of(shared_artifacts, api_run)
    assert (
        got["train"]["max_steps"] == 25 and got["train"]["seq_len"] == 64 and got["train"]["log_every"] == 5
    )


def test_flow_run_is_named_after_its_run_folder(shared_artifacts: Path, api_run: Any) -> None:
    """The UI's run name is the run folder's name under artifacts/runs/."""
    assert (shared_artifacts / "runs" / api_run.name / "status.json").is_file()


def test_cross_field_error_reaches_the_run_logs(served: str) -> None:
    """model.n_kv_heads=3 with n_heads=2 passes the form's bounds, fails before any stage, and the
    reason is a line in the run's Logs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    run = _run(served, {"overrides": {"model.n_kv_heads": 3}})
    assert run.state.is_failed() and "n_kv_heads" in (run.state.message or "")
    deadline, logs = time.monotonic() + 30, []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:  # the run's process ships its logs in batches
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            if any("must divide" in log.message for log in logs):
                break
            time.sleep(0.5)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert any("model.n_kv_heads=3 must divide model.n_heads=2" in log.message for log in logs)
    assert tasks == []
