"""torchrun with 2 gloo processes against 1 process with the same global batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from golfmodel.model.config import ModelConfig
from golfmodel.train.config import QATConfig, ScheduleConfig, TrainConfig, TrainJob
from golfmodel.train.files import read_jsonl

from .conftest import TINY_MODEL, TINY_TRAIN, run_train

# Same sequences per step in both runs; only the summation order of gradients differs (gloo's
# all-reduce of two rank means vs one process accumulating two micro-batches), so weights agree
# to float32 rounding (measured max |diff| ~5e-7 after 6 steps), well inside this tolerance.
ATOL = 1e-5
# τ is re-fitted exactly from those weights and rounded to fp16, so a 1e-6 weight difference can
# land τ on the neighbouring fp16 value: τ agrees to one fp16 step (2^-10 relative), not to ATOL.
TAU_RTOL = 2.0**-10


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, train_shard: Path) -> dict[int, Path]:
    """The same 6-step job trained with world size 1 and 2; out dirs by world size."""
    outs = {}
    for nproc in (1, 2):
        out = tmp_path_factory.mktemp(f"world{nproc}")
        job = TrainJob(
            model=ModelConfig(**TINY_MODEL),
            train=TrainConfig(**{**TINY_TRAIN, "debug_rank_state": True}),
            schedule=ScheduleConfig(f1=0.2, f2=0.4, f3=0.4),
            qat=QATConfig(tau_refresh_steps=2),
            train_shards=(str(train_shard),),
            out_dir=str(out),
        )
        res = run_train(job, nproc, timeout=120)
        assert res.returncode == 0, res.stderr[-3000:]
        outs[nproc] = out
    return outs


def test_two_processes_match_one_process(runs: dict[int, Path]) -> None:
    """2-process gloo DDP and 1 process with gradient accumulation reach the same weights and losses."""
    a = torch.load(runs[1] / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(runs[2] / "final.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        if k.endswith(".tau"):
            torch.testing.assert_close(b[k], a[k], atol=0, rtol=TAU_RTOL, msg=k)
        else:
            torch.testing.assert_close(b[k], a[k], atol=ATOL, rtol=0, msg=k)
    la = [r["loss"] for r in read_jsonl(runs[1] / "metrics.jsonl")]
    lb = [r["loss"] for r in read_jsonl(runs[2] / "metrics.jsonl")]
    assert len(la) == 6 and lb == pytest.approx(la, abs=ATOL)


def test_ranks_hold_identical_weights(runs: dict[int, Path]) -> None:
    """Both ranks end with bit-identical weights (sha256 of each rank's state dict)."""
    hashes = [json.loads((runs[2] / "debug" / f"rank_{r}.json").read_text())["sha256"] for r in (0, 1)]
    assert hashes[0] == hashes[1]


def test_world_size_changes_grad_accumulation_not_the_batch(runs: dict[int, Path]) -> None:
    """Both runs consumed the same tokens per step; the 2-process run accumulated half as many micro-batches."""
    starts = {n: json.loads((runs[n] / "events.jsonl").read_text().splitlines()[0]) for n in (1, 2)}
    assert (starts[1]["grad_accum"], starts[2]["grad_accum"]) == (4, 2)
    tokens = {n: [r["tokens"] for r in read_jsonl(runs[n] / "metrics.jsonl")] for n in (1, 2)}
    assert tokens[1] == tokens[2]
