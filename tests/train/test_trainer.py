"""The trainer end to end on tiny models: phases, QAT switches, NaN stop, checkpoints, resume, final outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from golfmodel.train.checkpoint import latest_checkpoint, load_final
from golfmodel.train.config import AveragingConfig, QATConfig, ScheduleConfig, TrainJob
from golfmodel.train.files import read_jsonl
from golfmodel.train.trainer import train

from .conftest import kill_group, run_train, start_train


def _events(out: Path, kind: str) -> list[dict]:
    return [e for e in read_jsonl(out / "events.jsonl") if e["event"] == kind]


def test_phases_and_qat_switches_follow_the_fractions(make_job: Callable[..., TrainJob]) -> None:
    """With 20 steps and fractions 0.1/0.6/0.3, two Geode groups switch deepest first at steps 2 and 8; phase 3 at 14."""
    job = make_job(
        model={"depth": 2},
        train={"max_steps": 20},
        schedule=ScheduleConfig(f1=0.1, f2=0.6, f3=0.3),
        qat=QATConfig(tau_refresh_steps=4),
    )
    train(job)
    out = Path(job.out_dir)
    assert [(e["phase"], e["step"]) for e in _events(out, "phase")] == [(1, 0), (2, 2), (3, 14)]
    assert [(e["depth_index"], e["step"]) for e in _events(out, "qat_on")] == [(1, 2), (0, 8)]
    assert [e["step"] for e in _events(out, "tau_refresh")] == [4, 8, 12, 16, 20]
    assert [e["step"] for e in _events(out, "averaging_start")] == [15]  # the first step run at p >= 0.7
    assert _events(out, "start")[0]["cfc_scan"] == "torch"  # the run log names the CfC scan
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["phase"] for r in rows] == [1] * 2 + [2] * 12 + [3] * 6
    _, blob = load_final(out / "final.pt")
    assert blob["qat"] and all(blob["qat"].values())  # everything quantised at the end


def test_every_step_tau_refresh_is_logged_at_the_log_cadence(make_job: Callable[..., TrainJob]) -> None:
    """tau_refresh_steps=1 re-fits τ every step but writes a tau_refresh event every log_every steps."""
    job = make_job(
        model={"depth": 2},
        train={"max_steps": 20, "log_every": 5},
        schedule=ScheduleConfig(f1=0.1, f2=0.6, f3=0.3),
        qat=QATConfig(tau_refresh_steps=1),
    )
    train(job)
    assert [e["step"] for e in _events(Path(job.out_dir), "tau_refresh")] == [5, 10, 15, 20]


def test_fp32_twin_runs_the_schedule_without_qat(make_job: Callable[..., TrainJob]) -> None:
    """QAT disabled: the same phases are logged but no layer is ever quantised."""
    job = make_job(qat=QATConfig(enabled=False), averaging=AveragingConfig(kind="swa"))
    summary = train(job)
    out = Path(job.out_dir)
    assert [e["phase"] for e in _events(out, "phase")] == [1, 2, 3]
    assert not _events(out, "qat_on")
    _, blob = load_final(out / "final.pt")
    assert not any(blob["qat"].values())
    assert summary is not None and summary["qat"] is False and summary["averaging"] == "swa"


def test_gpt_int8_arm_trains_on_the_same_schedule(make_job: Callable[..., TrainJob]) -> None:
    """The reference arm has no Q2 layers: it trains, averages and writes final.pt like the product."""
    job = make_job(model={"arm": "gpt-int8", "n_heads": 2, "n_kv_heads": 1, "depth": 2})
    summary = train(job)
    assert summary is not None and summary["steps"] == 6 and summary["averaged_samples"] > 0
    model, blob = load_final(Path(job.out_dir) / "final.pt")
    assert blob["model_config"]["arm"] == "gpt-int8" and blob["qat"] == {}


def test_checkpoints_load_with_weights_only(make_job: Callable[..., TrainJob]) -> None:
    """ckpt/step_XXXXXX.pt and final.pt hold only tensors and primitives."""
    job = make_job(train={"max_steps": 4, "checkpoint_every": 2})
    train(job)
    out = Path(job.out_dir)
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step_000002.pt"]  # none at the last step
    ckpt = torch.load(out / "ckpt" / "step_000002.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["data"]["cursor"] == 2 * 8
    assert {"model", "optim", "averager", "rng", "qat", "elapsed"} <= set(ckpt)
    final = torch.load(out / "final.pt", weights_only=True)
    assert final["state_dict"]["tok_emb.weight"].dtype == torch.float32


def test_forced_nan_stops_naming_the_step_and_last_checkpoint(make_job: Callable[..., TrainJob]) -> None:
    """A NaN loss at step 5 exits non-zero, names step 5 and ckpt step_000004.pt, and writes no final.pt."""
    job = make_job(train={"max_steps": 10, "checkpoint_every": 2, "debug_nan_at_step": 5})
    res = run_train(job)
    assert res.returncode == 3, res.stderr
    assert "non-finite loss at step 5" in res.stderr and "step_000004.pt" in res.stderr
    assert not (Path(job.out_dir) / "final.pt").exists()
    assert [e["step"] for e in _events(Path(job.out_dir), "diverged")] == [5]


def test_resume_after_kill_continues_at_the_checkpoint_step(make_job: Callable[..., TrainJob]) -> None:
    """Kill a long run once a checkpoint exists; the rerun resumes there with the same data position."""
    job = make_job(train={"max_steps": 1_000_000, "checkpoint_every": 3})
    out = Path(job.out_dir)
    proc = start_train(job)
    deadline = time.monotonic() + 90
    try:
        while latest_checkpoint(out) is None:  # poll: no fixed sleeps
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        kill_group(proc)
    ckpt = latest_checkpoint(out)
    assert ckpt is not None
    k = int(ckpt.stem.split("_")[1])
    assert not (out / "final.pt").exists()  # a killed run leaves no final model

    job2 = make_job(train={"max_steps": k + 3, "checkpoint_every": 3})
    res = run_train(job2)
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, k + 4))  # no gap, no repeat
    assert rows[k]["data_cursor"] == k * 8 and rows[k]["data_epoch"] == 0  # global batch = 8 sequences
    assert [e["step"] for e in _events(out, "resume")] == [k]


def test_resume_refuses_a_checkpoint_of_another_job(make_job: Callable[..., TrainJob]) -> None:
    """A checkpoint written for another model or data order is not silently resumed."""
    train(make_job(train={"max_steps": 2, "checkpoint_every": 1}))
    with pytest.raises(ValueError, match="different job"):
        train(make_job(train={"max_steps": 4, "checkpoint_every": 1, "seed": 7}))
