"""τ recalibration: activation weights, training-only data, the run's τ rule, keeping the better τ."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from golfmodel.quant.q2linear import Q2Linear
from golfmodel.train.checkpoint import load_final, q2_layers
from golfmodel.train.config import QATConfig, TrainJob
from golfmodel.train.recalibrate import activation_weights, recalibrate, training_slices
from golfmodel.train.trainer import train


def _taus(path: str | Path) -> list[torch.Tensor]:
    model, _ = load_final(path)
    return [m.tau.detach().clone() for m in q2_layers(model).values()]


def test_activation_weights_are_mean_squared_inputs() -> None:
    """The hooks collect E[x_j²] over every token of every calibration batch, per input column."""
    torch.manual_seed(0)
    layer = Q2Linear(8, 4)
    model = nn.Sequential(nn.Embedding(16, 8), layer)
    batches = [torch.randint(0, 16, (2, 5)) for _ in range(3)]
    got = activation_weights(model, batches, {"1": layer}, torch.device("cpu"))["1"]
    x = torch.cat([model[0](b).reshape(-1, 8) for b in batches]).detach()  # (30, 8)
    torch.testing.assert_close(got, x.pow(2).mean(0))


def test_calibration_and_holdout_are_disjoint_training_tokens(make_job: Callable[..., TrainJob]) -> None:
    """Both slices come from the last training shard's tail, calibration first, and do not overlap."""
    from golfmodel.data.shards import read_shard

    job = make_job()
    calib, held = training_slices(job, calib_seqs=3, holdout_tokens=100)
    tail = read_shard(job.train_shards[-1], vocab_size=job.model.vocab_size)[-(3 * 32 + 100) :]
    assert calib.shape == (3, 32) and len(held) == 100
    assert calib.reshape(-1).tolist() == tail[:96].tolist() and held.tolist() == tail[96:].tolist()


def test_recalibration_never_reads_validation(make_job: Callable[..., TrainJob]) -> None:
    """With the validation shards gone, the stage still decides (on held-out training tokens)."""
    job = make_job(train={"max_steps": 6})
    train(job)
    blind = dataclasses.replace(job, val_shards=("/nonexistent/val.bin",))
    res = recalibrate(Path(job.out_dir) / "final.pt", blind, mode="act", calib_batches=2, holdout_tokens=2048)
    assert res.decided_on.startswith("train-holdout:") and res.holdout_tokens == 2048
    assert res.kept == (res.bpb_after < res.bpb_before) and res.layers > 0
    assert (
        all(
            torch.equal(a, b)
            for a, b in zip(_taus(job.out_dir + "/final.pt"), _taus(res.out_path), strict=True)
        )
        != res.kept
    )


def test_mse_mode_is_folded_into_training(make_job: Callable[..., TrainJob]) -> None:
    """mode "mse" refits nothing (the trainer's final refit is that fit): the τ are written unchanged."""
    job = make_job(train={"max_steps": 4})
    train(job)
    res = recalibrate(Path(job.out_dir) / "final.pt", job, mode="mse", holdout_tokens=1024)
    assert res.layers == 0 and not res.kept and res.bpb_after == res.bpb_before
    assert all(
        torch.equal(a, b) for a, b in zip(_taus(job.out_dir + "/final.pt"), _taus(res.out_path), strict=True)
    )


def test_std_tau_method_is_honoured(make_job: Callable[..., TrainJob]) -> None:
    """A tau_method="std" run keeps its std τ: no layer is refitted by the MSE rule behind its back."""
    job = make_job(train={"max_steps": 4}, qat=QATConfig(tau_method="std"))
    train(job)
    res = recalibrate(Path(job.out_dir) / "final.pt", job, mode="act", calib_batches=1, holdout_tokens=1024)
    assert res.layers == 0 and res.skipped > 0 and not res.kept


def test_too_short_a_shard_names_it(make_job: Callable[..., TrainJob]) -> None:
    """A training shard too short for both slices is an error naming the shard and the sizes."""
    job = make_job()
    with pytest.raises(ValueError, match=Path(job.train_shards[-1]).name):
        training_slices(job, calib_seqs=4, holdout_tokens=10**12)
