"""TrainJob JSON round trip and config validation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from golfmodel.train.config import ScheduleConfig, TrainConfig, TrainJob


def test_job_json_round_trip(make_job: Callable[..., TrainJob]) -> None:
    """to_json → from_json gives an equal job (tuples survive the JSON lists)."""
    job = make_job()
    assert TrainJob.from_json(job.to_json()) == job


def test_phase_fractions_must_sum_to_one() -> None:
    """f1 + f2 + f3 != 1 is rejected, naming the fields."""
    with pytest.raises(ValueError, match="f1 \\+ f2 \\+ f3"):
        ScheduleConfig(f1=0.1, f2=0.6, f3=0.4)


def test_unknown_job_key_is_rejected(make_job: Callable[..., TrainJob]) -> None:
    """A misspelt key in RUN.json is an error naming it, not silently ignored."""
    d = make_job().to_dict()
    d["train"]["max_step"] = 3
    with pytest.raises(ValueError, match="max_step"):
        TrainJob.from_dict(d)


def test_global_batch_must_split_over_the_world() -> None:
    """grad_accum = global / (seq_len * micro * world) must be a whole number."""
    cfg = TrainConfig(seq_len=32, global_batch_tokens=32 * 8, micro_batch_seqs=2, max_steps=1)
    assert cfg.grad_accum(1) == 4 and cfg.grad_accum(4) == 1
    with pytest.raises(ValueError, match="world_size=3"):
        cfg.grad_accum(3)
