"""Pipeline fixtures: one real Prefect server per test session (loopback), and flow-run helpers.

The server is Prefect's test harness (a `prefect server` subprocess on a free loopback port with a
temporary SQLite database); PREFECT_API_URL is exported so `golf` subprocesses (`golf run`,
`golf serve`) talk to the same server. Offline: analytics and telemetry off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before Prefect is imported anywhere in this session: offline, generous startup, private home.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="golf-prefect-home-")  # never the user's profiles/DB
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect API for the whole session; yields its URL (also in PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        old = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url
        try:
            yield url
        finally:
            if old is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = old


@pytest.fixture(autouse=True)
def clean_golf_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pass settings explicitly: no GOLF_* variable of the caller's shell leaks in."""
    for key in list(os.environ):
        if key.startswith("GOLF_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def shared_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts dir shared by tests whose semantics allow reusing cached stages."""
    return tmp_path_factory.mktemp("artifacts")


class FlowHelper:
    """Builds settings on the sample mirror and runs the pipeline flow on the session server."""

    def __init__(self, mirror: Path) -> None:
        self.mirror = mirror

    def settings(self, preset: str, artifacts: Path, *overrides: str) -> Any:
        """Resolved settings with the sample mirror and `artifacts` as the artifacts dir."""
        from golf.settings import load_settings

        base = [f"data.mirror={self.mirror}", f"pipeline.artifacts_dir={artifacts}", "tokeniser.workers=1"]
        return load_settings(preset, overrides=[*base, *overrides])

    def run(self, settings: Any, **params: Any) -> tuple[Any, dict[str, str]]:
        """Run the flow; returns (flow state, {stage: task-run state name})."""
        from golf.flows.pipeline import golf_pipeline

        state = golf_pipeline(settings=settings, return_state=True, **params)
        return state, task_states(state.state_details.flow_run_id)

    def states(self, flow_run_id: Any) -> dict[str, str]:
        """{stage: task-run state name} of any flow run (e.g. one a served deployment ran)."""
        return task_states(flow_run_id)


@pytest.fixture(scope="session")
def flows(prefect_server: str, sample_root: Path) -> FlowHelper:
    """Flow helper bound to the session server and the sample mirror."""
    return FlowHelper(sample_root)


def task_states(flow_run_id: Any) -> dict[str, str]:
    """{task name: state name} of a flow run's task runs, read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name.rsplit("-", 1)[0]: r.state.name for r in runs if r.state is not None}


SERVED = "golf-pipeline/test-nightly"


def wait_for_deployment(name: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Block until `golf serve` (proc) has registered deployment `name`."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "golf serve exited early"
            try:
                client.read_deployment_by_name(name)
                return
            except Exception:
                time.sleep(0.5)
    raise TimeoutError(f"deployment {name} did not appear within {timeout} s")


@pytest.fixture(scope="session")
def served(flows: FlowHelper, sample_root: Path, shared_artifacts: Path) -> Iterator[str]:
    """`golf serve --preset test` on the session server (data stages, the shared artifacts); yields its name."""
    data = ["download", "tokenise", "bigram"]
    env = {**os.environ, "GOLF_DATA__MIRROR": str(sample_root), "GOLF_PIPELINE__ARTIFACTS_DIR": str(shared_artifacts),
           "GOLF_PIPELINE__STAGES": json.dumps(data), "GOLF_TOKENISER__WORKERS": "1"}  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "golf.flows.cli",
        "serve",
        "--preset",
        "test",
        "--name",
        SERVED.split("/")[1],
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    try:
        wait_for_deployment(SERVED, proc)
        yield SERVED
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
