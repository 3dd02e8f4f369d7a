"""What a run checks and shows on the Prefect server: the bigram quality gate, the nightly drift check,
the run graph's edges, why a cached stage hit, and retries on transient faults only.

One untrained model (no bigram prior, 2 steps: clearly worse than the bigram) on the `test` preset;
the data stages come from the session's shared cache, later runs reuse every stage.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from golf.tasks.stages import UPSTREAM

UNTRAINED = ("model.bigram_prior=false", "train.max_steps=2", "train.val_tokens=4096")
pytestmark = pytest.mark.slow


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client() as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _client() as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


@pytest.fixture(scope="module")
def gated(flows, shared_artifacts: Path) -> tuple[Any, dict[str, str]]:
    """The untrained model with the gate on (`pipeline.quality_gate=fail`)."""
    return flows.run(flows.settings("test", shared_artifacts, *UNTRAINED, "pipeline.quality_gate=fail"))


@pytest.fixture(scope="module")
def warned(flows, shared_artifacts: Path, gated) -> tuple[Any, dict[str, str]]:
    """The same model with the gate downgraded to a warning: every stage served from the cache but report."""
    return flows.run(flows.settings("test", shared_artifacts, *UNTRAINED, "pipeline.quality_gate=warn"))


def test_a_model_worse_than_the_bigram_fails_validate(gated) -> None:
    """Final bpb above the bigram's on the same scored targets: validate fails naming both numbers."""
    state, states = gated
    assert state.is_failed() and states["validate"] == "Failed" and "report" not in states
    found = re.search(
        r"final bpb (\d+\.\d+) is above the bigram's (\d+\.\d+) on the same ([\d,]+) scored", state.message
    )
    assert found, state.message
    assert float(found.group(1)) > float(found.group(2)) > 0


def test_quality_gate_warn_keeps_the_run(warned) -> None:
    """pipeline.quality_gate=warn: the same scores pass (validate served from the cache), the run completes."""
    state, states = warned
    assert state.is_completed(), state.message
    assert states["validate"] == "Cached" and states["report"] == "Completed"


def test_run_graph_edges_are_the_stage_chain(warned) -> None:
    """Each task's inputs link exactly its upstream stages' task runs; `settings` links nothing."""
    runs = {r.name.rsplit("-", 1)[0]: r for r in _task_runs(warned[0].state_details.flow_run_id)}
    id_to_stage = {r.id: name for name, r in runs.items()}
    for name, r in runs.items():
        linked = {id_to_stage.get(i.id) for inputs in r.task_inputs.values() for i in inputs}
        assert r.task_inputs.get("settings", []) == [] and linked == set(UPSTREAM[name]), name


def test_cached_stages_show_their_key(warned) -> None:
    """A cached stage's state carries the cache key of the record it was served from."""
    state, _ = warned
    run_dir = Path(state.result()["run_dir"])
    for r in _task_runs(state.state_details.flow_run_id):
        if r.state.name == "Cached":
            record = json.loads((run_dir / "records" / f"{r.name.rsplit('-', 1)[0]}.json").read_text())
            assert r.state.state_details.cache_key == record["key"] and record["key"][:16] in r.state.message


def test_nightly_drift_fails_the_run_with_both_runs_side_by_side(
    flows, shared_artifacts: Path, warned
) -> None:
    """The first checked run becomes the baseline; a run whose bpb moved beyond the tolerance fails with
    "drift", and a side-by-side artifact names both runs."""
    from golf.tasks import drift

    settings = flows.settings(
        "test", shared_artifacts, *UNTRAINED, "pipeline.quality_gate=warn", "drift.check=always"
    )
    first, _ = flows.run(settings)
    assert first.is_completed(), first.message
    baseline = drift.previous_nightly(drift.baseline_key(settings))
    assert baseline is not None and baseline.run == Path(first.result()["run_dir"]).name
    # the previous nightly scored 0.5 bpb better than what these (cached) stages give now
    moved = drift.NightlyNumbers(final_bpb=baseline.final_bpb - 0.5, artifact_bytes=baseline.artifact_bytes,
                                 run="20260101T020000Z-test-previous")  # fmt: skip
    drift.publish_nightly(drift.baseline_key(settings), moved)
    second, _ = flows.run(settings)
    assert second.is_failed() and second.message.startswith("drift: final bpb"), second.message
    side = _artifacts(second.state_details.flow_run_id)[drift.DRIFT_KEY].data
    assert (
        "20260101T020000Z-test-previous" in side
        and Path(second.result(raise_on_failure=False)["run_dir"]).name in side
    )
    assert (
        drift.previous_nightly(drift.baseline_key(settings)).run == moved.run
    )  # a drifted run is no baseline


def test_pinned_reference_drift_fails_the_run(flows, shared_artifacts: Path, warned) -> None:
    """drift.reference_bytes far from this run's artifact: the run fails naming the pinned reference."""
    settings = flows.settings("test", shared_artifacts, *UNTRAINED, "pipeline.quality_gate=warn",
                              "drift.check=always", "drift.reference_bytes=1000", "drift.bpb_tolerance=100")  # fmt: skip
    state, _ = flows.run(settings)
    assert state.is_failed() and "the pinned reference" in state.message and "bytes vs 1,000" in state.message


def _flaky(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The bigram stage fails once with `error`, then works; retries without delay."""
    from golf.tasks import bigram

    real, calls = bigram.count_bigrams, []

    def once(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args)

    monkeypatch.setattr(bigram, "count_bigrams", once)
    monkeypatch.setattr(bigram, "bigram", bigram.bigram.with_options(retry_delay_seconds=0))


def test_transient_fault_is_retried(
    flows, shared_artifacts: Path, warned, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection reset in a stage is retried (a second attempt completes it)."""
    _flaky(monkeypatch, ConnectionResetError("connection reset by peer"))
    state, states = flows.run(
        flows.settings("test", shared_artifacts, *UNTRAINED), stages=["bigram"], force=["bigram"]
    )
    assert state.is_completed() and states == {"bigram": "Completed"}
    assert [r.run_count for r in _task_runs(state.state_details.flow_run_id)] == [2]


def test_a_non_transient_fault_is_not_retried(
    flows, shared_artifacts: Path, warned, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad-input error fails the stage on its first attempt."""
    _flaky(monkeypatch, ValueError("validation token id 5000 >= bigram vocab 1024"))
    state, states = flows.run(
        flows.settings("test", shared_artifacts, *UNTRAINED), stages=["bigram"], force=["bigram"]
    )
    assert state.is_failed() and states == {"bigram": "Failed"}
    assert [r.run_count for r in _task_runs(state.state_details.flow_run_id)] == [1]
