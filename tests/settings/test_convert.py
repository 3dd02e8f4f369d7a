"""settings/convert.py: Settings → the trainer's TrainJob and the torchrun command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from golf.settings import load_settings
from golf.settings.convert import model_config, torchrun_command, train_job


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GOLF_"):
            monkeypatch.delenv(key)


def _job(tmp_path: Path, preset: str = "smoke", overrides: tuple[str, ...] = ()):
    s = load_settings(preset, overrides=list(overrides))
    return s, train_job(
        s, vocab_size=1024, train_shards=["a.bin"], val_shards=["v.bin"], tokenizer="tok.model",
        bigram_logprior="bigram.npy", out_dir=tmp_path,
    )  # fmt: skip


def test_train_job_carries_the_settings(tmp_path: Path) -> None:
    """Budgets, batch, optimiser, schedule and QAT settings reach the TrainJob unchanged."""
    s, job = _job(tmp_path)
    assert job.train.max_steps == s.train.max_steps
    assert job.train.global_batch_tokens == s.train.global_batch_tokens
    assert job.optim.muon_lr == s.train.muon_lr
    assert (job.schedule.f1, job.schedule.f2, job.schedule.f3) == s.train.phase_fractions
    assert job.qat.tau_refresh_steps == s.quant.tau_refresh_steps
    assert job.model.d_model == s.model.d_model and job.model.vocab_size == 1024


def test_sub_norm_defaults_to_on_for_geode_and_off_for_gpt() -> None:
    """model.sub_norm unset: geode models get SubLN (the study's q2 default), the gpt baseline does not."""
    assert model_config(load_settings("smoke"), 1024).sub_norm
    assert not model_config(load_settings("smoke", overrides=["model.arch=gpt"]), 1024).sub_norm


def test_sub_norm_false_gives_the_spec_block() -> None:
    """model.sub_norm=false turns SubLN off on geode (the spec's block)."""
    assert not model_config(load_settings("smoke", overrides=["model.sub_norm=false"]), 1024).sub_norm


def test_sub_norm_reaches_the_model_config(tmp_path: Path) -> None:
    """model.sub_norm in the settings builds a SubLN model config."""
    s = load_settings("smoke", overrides=["model.sub_norm=true"])
    assert model_config(s, 1024).sub_norm


def test_train_job_round_trips_json(tmp_path: Path) -> None:
    """RUN.json written by the task reads back as the same job."""
    from golfmodel.train.config import TrainJob

    _, job = _job(tmp_path)
    job.to_json(tmp_path / "RUN.json")
    assert TrainJob.from_json(tmp_path / "RUN.json") == job


def test_model_max_seq_len_covers_train_and_eval() -> None:
    """The model's RoPE/positions cover the longer of the train and eval windows."""
    s = load_settings("smoke", overrides=["eval.seq_len=512", "eval.stride=64"])
    assert model_config(s, 1024).max_seq_len == 512


def test_torchrun_command_single_process() -> None:
    """One process runs the trainer module directly."""
    s = load_settings("smoke")
    assert torchrun_command(s, "RUN.json", python="py") == [
        "py",
        "-m",
        "golfmodel.train",
        "--job",
        "RUN.json",
    ]


def test_torchrun_command_eight_processes() -> None:
    """h100x8 launches torchrun --standalone with 8 processes per node."""
    cmd = torchrun_command(load_settings("h100x8"), "RUN.json", python="py")
    assert "--standalone" in cmd and "--nproc_per_node=8" in cmd and cmd[-2:] == ["--job", "RUN.json"]


def test_a_named_plan_reaches_the_model_config() -> None:
    """model.arch + quant.plan become the config's arm and plan; the default plan keeps the alias arm."""
    s = load_settings("smoke", overrides=["quant.plan=int4"])
    cfg = model_config(s, 1024)
    assert cfg.arch == "geode" and cfg.quant_plan.name == "int4"
    default = model_config(load_settings("smoke"), 1024)
    assert default.arm == "q2-geode" and default.plan is None
    assert model_config(load_settings("smoke", overrides=["model.arch=gpt"]), 1024).arm == "gpt-int8"


def test_q2_mixed_shape_is_the_default_plans_until_allocated() -> None:
    """With quant.plan = q2-mixed the probe's shape uses the arch's default plan; an allocated plan replaces it."""
    from golfmodel.quant.plan import named_plan

    s = load_settings("smoke", overrides=["quant.plan=q2-mixed"])
    assert s.quant.allocated and model_config(s, 1024).quant_plan.name == "q2"
    table = named_plan("int6").to_dict() | {"name": "q2-mixed"}
    assert model_config(s, 1024, plan=table).quant_plan.name == "q2-mixed"
