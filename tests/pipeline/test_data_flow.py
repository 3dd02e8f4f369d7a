"""The data stages (download → tokenise → bigram) as a flow on a real Prefect server: the caching rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = ["download", "tokenise", "bigram"]
ALL_CACHED = {s: "Cached" for s in DATA}
ALL_COMPUTED = {s: "Completed" for s in DATA}


def test_first_run_computes_and_rerun_skips_every_stage(flows, tmp_path: Path) -> None:
    """A fresh run computes the three stages; an unchanged re-run shows all three as Cached."""
    s = flows.settings("test", tmp_path)
    state, first = flows.run(s, stages=DATA)
    assert state.is_completed() and first == ALL_COMPUTED
    state, second = flows.run(s, stages=DATA)
    assert state.is_completed() and second == ALL_CACHED


def test_changed_setting_reruns_that_stage_and_downstream(flows, tmp_path: Path) -> None:
    """tokeniser.variant=byte260 re-runs tokenise and bigram; download stays cached."""
    flows.run(flows.settings("test", tmp_path), stages=DATA)
    state, states = flows.run(flows.settings("test", tmp_path, "tokeniser.variant=byte260"), stages=DATA)
    assert state.is_completed()
    assert states == {"download": "Cached", "tokenise": "Completed", "bigram": "Completed"}


def test_rerun_with_identical_output_keeps_downstream_cached(flows, tmp_path: Path) -> None:
    """data.val_shards=1 re-runs download; it fetches the same bytes, so downstream stays cached."""
    flows.run(flows.settings("test", tmp_path), stages=DATA)
    state, states = flows.run(flows.settings("test", tmp_path, "data.val_shards=1"), stages=DATA)
    assert state.is_completed()
    assert states == {"download": "Completed", "tokenise": "Cached", "bigram": "Cached"}


def test_deleted_output_reruns_its_stage(flows, tmp_path: Path) -> None:
    """Deleting the bigram table re-runs bigram only, and the table is back."""
    s = flows.settings("test", tmp_path)
    state, _ = flows.run(s, stages=DATA)
    table = next((tmp_path / "cache" / "bigram").glob("*/logprob.npy"))
    table.unlink()
    state, states = flows.run(s, stages=DATA)
    assert states == {"download": "Cached", "tokenise": "Cached", "bigram": "Completed"} and table.exists()


def test_unselected_upstream_comes_from_the_cache(flows, tmp_path: Path) -> None:
    """--stages bigram uses the cached download and tokenise records without running them."""
    s = flows.settings("test", tmp_path)
    flows.run(s, stages=DATA)
    state, states = flows.run(s, stages=["bigram"], force=["bigram"])
    assert state.is_completed() and states == {"bigram": "Completed"}


def test_unselected_upstream_missing_fails_naming_it(flows, tmp_path: Path) -> None:
    """--stages bigram on an empty cache fails, naming the stage that is not cached."""
    state, states = flows.run(flows.settings("test", tmp_path), stages=["bigram"])
    assert state.is_failed() and "'download' is not cached" in state.message and states == {}


def test_missing_mirror_fails_with_a_clear_message(flows, tmp_path: Path) -> None:
    """A mirror folder that does not exist fails the download task with its path in one line."""
    s = flows.settings("test", tmp_path, f"data.mirror={tmp_path / 'nosuch'}")
    state, states = flows.run(s, stages=DATA)
    assert state.is_failed() and states == {"download": "Failed"}
    assert "nosuch" in state.message and "\n" not in state.message and "Traceback" not in state.message


def _corrupt(data: bytearray, fault: str) -> bytes:
    if fault == "magic":
        data[0:4] = np.int32(12345).tobytes()
    elif fault == "truncated":
        del data[-10:]
    else:  # an out-of-vocabulary token in the middle of the token stream
        data[2048:2050] = np.uint16(5000).tobytes()
    return bytes(data)


@pytest.mark.parametrize(
    ("fault", "shard", "stage", "words"),
    [
        ("magic", "fineweb_val_000000.bin", "download", "magic"),
        ("truncated", "fineweb_val_000000.bin", "download", "size"),
        ("vocab", "fineweb_train_000000.bin", "bigram", "out of vocabulary"),
    ],
)
def test_corrupt_shard_fails_naming_the_file(
    flows, tmp_path: Path, sample_root: Path, fault: str, shard: str, stage: str, words: str
) -> None:
    """A bad shard (bad magic, truncated, token >= vocab) fails its stage naming the file and the fault."""
    mirror = tmp_path / "mirror"
    shutil.copytree(sample_root, mirror)
    path = mirror / "datasets" / "datasets" / "fineweb10B_sp1024" / shard
    path.chmod(0o644)
    path.write_bytes(_corrupt(bytearray(path.read_bytes()), fault))
    (mirror / "SHA256SUMS").chmod(0o644)
    (mirror / "SHA256SUMS").unlink()  # no published hash: the shard reader must catch it
    state, states = flows.run(flows.settings("test", tmp_path / "art", f"data.mirror={mirror}"), stages=DATA)
    assert state.is_failed() and states[stage] == "Failed"
    assert shard in state.message and words in state.message and "Traceback" not in state.message


def test_run_records_stages_in_the_run_folder(flows, tmp_path: Path) -> None:
    """The run folder holds settings, provenance, records and a report.json with per-stage status."""
    state, _ = flows.run(flows.settings("test", tmp_path), stages=DATA)
    run = Path(state.result()["run_dir"])
    report = json.loads((run / "report.json").read_text())
    assert set(report["stages"]) == set(DATA) and report["bigram_bpb"] > 0
    assert {p.name for p in (run / "records").iterdir()} == {f"{s}.json" for s in DATA}
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["data"]["source"].startswith("mirror:") and (run / "settings.json").exists()


def test_cli_data_stages_print_bigram_bpb_and_report(
    prefect_server: str, sample_root: Path, shared_artifacts: Path
) -> None:
    """`golf run --preset smoke --stages download,tokenise,bigram` with the mirror writes shards and the
    bigram table, prints the bigram bpb, and ends stdout with `report: <absolute run folder>`."""
    env = {
        **os.environ,
        "GOLF_DATA__MIRROR": str(sample_root),
        "GOLF_PIPELINE__ARTIFACTS_DIR": str(shared_artifacts),
    }
    cmd = [
        sys.executable,
        "-m",
        "golf.flows.cli",
        "run",
        "--preset",
        "smoke",
        "--stages",
        "download,tokenise,bigram",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("report: /") and Path(lines[-1].removeprefix("report: ")).is_dir()
    assert any(line.startswith("bigram bpb: ") for line in lines)
    assert list((shared_artifacts / "cache" / "tokenise").glob("*/fineweb_train_000000.bin"))
    assert list((shared_artifacts / "cache" / "bigram").glob("*/logprob.npy"))


def test_retry_condition_accepts_network_faults_only() -> None:
    """The download task retries a connection error but not a 404-like hub error."""
    from prefect.states import Failed

    from golf.tasks.download import retry_on_network_fault
    from golfmodel.data.hub import HubError

    assert retry_on_network_fault(None, None, Failed(data=ConnectionError("reset")))  # type: ignore[arg-type]
    assert not retry_on_network_fault(None, None, Failed(data=HubError("404 not found")))  # type: ignore[arg-type]


@pytest.mark.parametrize("stage", DATA)
def test_data_stage_tasks_have_one_line_docstrings(stage: str) -> None:
    """Each stage task says what it does in one line (it is what the UI shows)."""
    import importlib

    task = getattr(importlib.import_module(f"golf.tasks.{stage}"), stage)
    assert task.fn.__doc__ and "\n" not in task.fn.__doc__.strip()


def test_tokenizer_smaller_than_the_vocabulary_names_the_file_and_setting(sp_model_path: Path) -> None:
    """A 1024-piece tokenizer for tokeniser.variant=sp2048 fails naming the tokenizer file and the setting."""
    from golf.tasks.bigram import byte_table
    from golf.tasks.cache import StageRecord

    rec = StageRecord(stage="tokenise", key="k", dir=str(sp_model_path.parent), outputs={},
                      values={"tokenizer": sp_model_path.name, "vocab_size": 2048, "variant": "sp2048"})  # fmt: skip
    with pytest.raises(
        ValueError, match=r"fineweb_1024_bpe\.model has 1024 pieces.*tokeniser\.variant=sp2048"
    ):
        byte_table(rec)


def test_fixed_mirror_shard_reruns_the_stages_that_read_it(flows, tmp_path: Path, sample_root: Path) -> None:
    """A bad mirror shard fails bigram; once the good shard is copied back, download, tokenise and bigram
    run again (keys hold the mirror files' content) and succeed, with no --force."""
    mirror = tmp_path / "mirror"
    shutil.copytree(sample_root, mirror)
    (mirror / "SHA256SUMS").chmod(0o644)
    (mirror / "SHA256SUMS").unlink()
    shard = mirror / "datasets" / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000000.bin"
    shard.chmod(0o644)
    shard.write_bytes(_corrupt(bytearray(shard.read_bytes()), "vocab"))
    s = flows.settings("test", tmp_path / "art", f"data.mirror={mirror}")
    state, states = flows.run(s, stages=DATA)
    assert state.is_failed() and states["bigram"] == "Failed"
    shutil.copyfile(sample_root / "datasets" / "datasets" / "fineweb10B_sp1024" / shard.name, shard)
    state, states = flows.run(s, stages=DATA)
    assert state.is_completed() and states == ALL_COMPUTED


def test_unreachable_hub_without_mirror_fails_fast_with_the_offline_way(flows, tmp_path: Path) -> None:
    """No mirror and the hub unreachable: download fails within 30 s (no minutes of task retries) and the
    message names GOLF_DATA__MIRROR and ../shared/fineweb-sample."""
    import socket
    import time

    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    s = flows.settings("test", tmp_path, "data.mirror=null", f"data.endpoint={url}", "data.retries=1")
    t0 = time.monotonic()
    state, states = flows.run(s, stages=DATA)
    assert state.is_failed() and states == {"download": "Failed"} and time.monotonic() - t0 < 30
    assert "GOLF_DATA__MIRROR" in state.message and "../shared/fineweb-sample" in state.message
