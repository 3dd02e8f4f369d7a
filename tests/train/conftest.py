"""Fixtures of the trainer tests: tiny jobs on the real sample shards, and the CLI as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from golfmodel.model.config import ModelConfig
from golfmodel.train.config import (
    AveragingConfig,
    OptimConfig,
    QATConfig,
    ScheduleConfig,
    TrainConfig,
    TrainJob,
)

REPO = Path(__file__).resolve().parents[2]

TINY_MODEL = dict(
    arm="q2-geode",
    vocab_size=1024,
    d_model=32,
    depth=1,
    n_heads=2,
    n_kv_heads=1,
    mlp_mult=2.0,
    max_seq_len=32,
)
TINY_TRAIN = dict(
    seq_len=32,
    global_batch_tokens=32 * 8,
    micro_batch_seqs=2,
    max_steps=6,
    log_every=1,
    device="cpu",
    threads=1,
    final_val=False,
    progress_bar=False,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded (and other test processes share the cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def make_job(
    train_shard: Path, val_shard: Path, sp_model_path: Path, tmp_path: Path
) -> Callable[..., TrainJob]:
    """make_job(out_name, model={...}, train={...}, schedule=..., qat=..., ...) -> a tiny sp1024 TrainJob."""

    def make(
        out_name: str = "run",
        *,
        model: dict[str, Any] | None = None,
        train: dict[str, Any] | None = None,
        **kw: Any,
    ) -> TrainJob:
        sections = {
            "optim": OptimConfig(),
            "schedule": ScheduleConfig(f1=0.2, f2=0.4, f3=0.4),
            "qat": QATConfig(tau_refresh_steps=2),
            "averaging": AveragingConfig(),
        }
        sections.update(kw)
        return TrainJob(
            model=ModelConfig(**{**TINY_MODEL, **(model or {})}),
            train=TrainConfig(**{**TINY_TRAIN, **(train or {})}),
            train_shards=(str(train_shard),),
            val_shards=(str(val_shard),),
            tokenizer=str(sp_model_path),
            out_dir=str(tmp_path / out_name),
            **sections,
        )

    return make


def train_cmd(job_path: Path, nproc: int = 1, *extra: str) -> list[str]:
    """`python -m golfmodel.train` alone (nproc 1) or under `torchrun --standalone` (as the task runs it)."""
    if nproc == 1:
        return [sys.executable, "-m", "golfmodel.train", "--job", str(job_path), *extra]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "golfmodel.train", "--job", str(job_path), *extra,
    ]  # fmt: skip


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_train(job: TrainJob, nproc: int = 1, *extra: str) -> subprocess.Popen[str]:
    """Write RUN.json into the job's out_dir and start training in its own process group."""
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job.to_json(out / "RUN.json")
    return subprocess.Popen(
        train_cmd(out / "RUN.json", nproc, *extra),
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process group this test started (and only that one)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def run_train(
    job: TrainJob, nproc: int = 1, *extra: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run training to the end; the whole group is killed if it overruns `timeout`."""
    proc = start_train(job, nproc, *extra)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
