"""The whole pipeline on the `test` preset (its step budget) on a real Prefect server: report, caching
rules across all stages, a failed stage rerun alone, concurrent runs, and a served deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from golf.settings import STAGES

# A shorter validation slice for the trainer's and recalibration's bpb (the step budget is the preset's).
FAST = ("train.val_tokens=4096",)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("full")


@pytest.fixture(scope="module")
def first_run(flows, artifacts: Path) -> tuple[Any, dict[str, str], Any]:
    """The full pipeline once, from an empty cache."""
    settings = flows.settings("test", artifacts, *FAST)
    state, states = flows.run(settings)
    assert state.is_completed(), state.message
    return state, states, settings


def _report(state: Any) -> dict[str, Any]:
    return json.loads((Path(state.result()["run_dir"]) / "report.json").read_text())


def test_full_pipeline_runs_every_stage(first_run) -> None:
    """From an empty cache every stage runs, in order, and completes."""
    _, states, _ = first_run
    assert states == {s: "Completed" for s in STAGES}


def test_report_is_under_budget_and_beats_the_bigram(first_run) -> None:
    """report.json: artifact + code under the budget, final bpb (from the artifact) below the bigram bpb."""
    report = _report(first_run[0])
    assert 0 < report["artifact_bytes"] <= report["total_bytes"] <= report["budget_bytes"]
    assert report["final_bpb"] < report["bigram_bpb"]
    assert report["prequant_bpb"] is not None and set(report["stages"]) == set(STAGES)


def test_report_files_and_markdown_artifact(first_run) -> None:
    """report.md and loss.png are on disk and the report is a Prefect markdown artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = first_run[0]
    run = Path(state.result()["run_dir"])
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG" and "final validation bpb" in (
        run / "report.md"
    ).read_text().lower()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    report = [a for a in found if a.key == "golf-report"]
    assert [a.type for a in report] == ["markdown"] and "Stages of this run" in report[0].data


def test_report_artifact_embeds_the_chart_and_links_stage_tables(first_run) -> None:
    """The report artifact shows the loss chart inline (a data URI) and links each stage's table artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[first_run[0].state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in found}
    tables = {"golf-train-summary", "golf-size-breakdown", "golf-bpb"}
    assert tables <= set(by_key) and all(by_key[k].type == "table" for k in tables)
    report = by_key["golf-report"].data
    assert "![loss](data:image/png;base64,iVBOR" in report and "](loss.png)" not in report
    assert all(f"[{k}](/artifacts/artifact/{by_key[k].id})" in report for k in tables)
    assert "final_bpb" in by_key["golf-bpb"].data and "bigram_scored_bpb" in by_key["golf-bpb"].data


def test_immediate_rerun_skips_every_stage(flows, first_run) -> None:
    """Nothing changed: all nine stages show as Cached."""
    state, states = flows.run(first_run[2])
    assert state.is_completed() and states == {s: "Cached" for s in STAGES}
    assert all(s["cached"] for s in _report(state)["stages"].values())


def test_deleted_artifact_reruns_pack(flows, first_run, artifacts: Path) -> None:
    """Deleting the packed artifact re-runs pack; it rebuilds the same bytes, so what was scored on
    them (size check, validate, report) is served from the cache — content-addressed keys."""
    artifact = next((artifacts / "cache" / "pack").glob("*/model.q2bn"))
    before = artifact.read_bytes()
    artifact.unlink()
    state, states = flows.run(first_run[2])
    assert state.is_completed() and artifact.read_bytes() == before
    assert states["pack"] == "Completed"
    assert {s: states[s] for s in STAGES if s != "pack"} == {s: "Cached" for s in STAGES if s != "pack"}


def _flip_bit_keep_mtime(path: Path) -> bytes:
    """Flip one bit in the middle of `path`, restore its mtime (as rsync -a or disk rot leave it); the old bytes."""
    before = path.read_bytes()
    st = path.stat()
    data = bytearray(before)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return before


def _artifact(state: Any) -> Path:
    rec = json.loads((Path(state.result()["run_dir"]) / "records" / "pack.json").read_text())
    return Path(rec["dir"]) / rec["values"]["artifact"]


def test_flipped_artifact_fails_a_run_that_only_reads_it(flows, first_run) -> None:
    """--stages validate with a bit-flipped cached artifact (mtime kept) fails naming the file, never "cached"."""
    artifact = _artifact(first_run[0])
    st = artifact.stat()
    before = _flip_bit_keep_mtime(artifact)
    try:
        state, states = flows.run(first_run[2], stages=["validate"])
        assert state.is_failed() and states == {}
        assert (
            "model.q2bn does not match its recorded sha256" in state.message
            and "--from pack" in state.message
        )
    finally:
        artifact.write_bytes(before)
        os.utime(artifact, ns=(st.st_atime_ns, st.st_mtime_ns))  # as it was: the next test starts clean


def test_flipped_artifact_is_repacked_before_it_is_reported(flows, first_run) -> None:
    """A full run with a bit-flipped cached artifact re-packs it (same bytes as scored); the scores stay cached."""
    artifact = _artifact(first_run[0])
    before = _flip_bit_keep_mtime(artifact)
    state, states = flows.run(first_run[2])
    assert state.is_completed() and states["pack"] == "Completed" and artifact.read_bytes() == before
    assert {states[s] for s in ("size_check", "validate", "report")} == {"Cached"}


def test_changed_train_setting_reruns_train_and_downstream(flows, first_run, artifacts: Path) -> None:
    """train.max_steps changed: train and every later stage run; download, tokenise, bigram are cached."""
    settings = flows.settings("test", artifacts, *FAST, "train.max_steps=4")
    state, states = flows.run(settings)
    assert state.is_completed(), state.message
    assert states == {
        s: ("Cached" if s in ("download", "tokenise", "bigram") else "Completed") for s in STAGES
    }


def test_failed_stage_reruns_alone_with_upstream_from_cache(flows, first_run, artifacts: Path) -> None:
    """An over-budget size check fails with the breakdown; rerun alone it runs with upstream cached."""
    tight = flows.settings("test", artifacts, *FAST, "pack.budget_bytes=1000")
    state, states = flows.run(tight)
    assert state.is_failed() and states["size_check"] == "Failed" and "over the budget" in state.message
    assert "validate" not in states
    state, states = flows.run(first_run[2], stages=["size_check"], force=["size_check"])
    assert state.is_completed() and states == {"size_check": "Completed"}


def test_concurrent_runs_with_different_settings(
    prefect_server: str, sample_root: Path, artifacts: Path
) -> None:
    """Two `golf run`s at once with different settings both finish, in separate run and cache folders."""
    env = {
        **os.environ,
        "GOLF_DATA__MIRROR": str(sample_root),
        "GOLF_PIPELINE__ARTIFACTS_DIR": str(artifacts),
    }
    base = [
        sys.executable,
        "-m",
        "golf.flows.cli",
        "run",
        "--preset",
        "test",
        "--stages",
        "download,tokenise,bigram",
    ]
    procs = [
        subprocess.Popen([*base, "--set", f"tokeniser.variant={v}", "--set", "tokeniser.workers=1"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for v in ("sp1024", "byte260")
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    run_dirs = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(run_dirs) == 2
    vocabs = {
        json.loads(p.read_text())["values"]["vocab_size"]
        for p in (artifacts / "cache" / "tokenise").glob("*/record.json")
    }
    assert {1024, 260} <= vocabs


def test_served_deployment_runs_when_triggered(flows, served: str, shared_artifacts: Path) -> None:
    """`golf serve` registers the deployment; a run triggered through the API completes; the
    deployment's parameter schema (the UI form) rejects an invalid value. Data stages only, to stay quick."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(served, timeout=240)
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    assert set(flows.states(flow_run.id)) == {"download", "tokenise", "bigram"}
    bad = flows.settings("test", shared_artifacts).model_dump(mode="json")
    bad["train"]["max_steps"] = 0
    with pytest.raises(Exception, match="max_steps|minimum|greater"):
        run_deployment(served, parameters={"settings": bad}, timeout=0)
