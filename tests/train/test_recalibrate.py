"""τ recalibration: activation weights, before/after scores, keeping the better τ."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from golfmodel.quant.q2linear import Q2Linear
from golfmodel.train.checkpoint import load_final, q2_layers
from golfmodel.train.config import TrainJob
from golfmodel.train.recalibrate import activation_weights, recalibrate
from golfmodel.train.trainer import train


def test_activation_weights_are_mean_squared_inputs() -> None:
    """The hooks collect E[x_j²] over every token of every calibration batch, per input column."""
    torch.manual_seed(0)
    layer = Q2Linear(8, 4)
    model = nn.Sequential(nn.Embedding(16, 8), layer)
    batches = [torch.randint(0, 16, (2, 5)) for _ in range(3)]
    got = activation_weights(model, batches, {"1": layer}, torch.device("cpu"))["1"]
    x = torch.cat([model[0](b).reshape(-1, 8) for b in batches]).detach()  # (30, 8)
    torch.testing.assert_close(got, x.pow(2).mean(0))


def test_recalibration_keeps_the_better_tau(make_job: Callable[..., TrainJob]) -> None:
    """Scores before/after on the quantised model; writes the recalibrated τ only if they score better."""
    job = make_job(train={"max_steps": 6})
    train(job)
    final = Path(job.out_dir) / "final.pt"
    res = recalibrate(final, job, mode="act", calib_batches=2, val_tokens_max=4096)
    assert res.mode == "act" and res.calib_batches == 2 and res.layers > 0
    assert res.kept == (res.bpb_after < res.bpb_before)
    before, _ = load_final(final)
    after, blob = load_final(res.out_path)
    assert blob["recalibration"]["bpb_before"] == res.bpb_before
    same = all(
        torch.equal(a.tau, b.tau)
        for a, b in zip(q2_layers(before).values(), q2_layers(after).values(), strict=True)
    )
    assert same != res.kept
