"""Weight averaging: the EMA's warm-up decay and SWA's equal weights."""

from __future__ import annotations

import torch
from torch import nn

from golfmodel.train.averaging import WeightAverager


def _model(value: float) -> nn.Module:
    m = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_ema_decay_warms_up_so_early_snapshots_fade() -> None:
    """After 40 updates the first snapshot's weight is tiny (d_n = min(decay, (1+n)/(10+n))), not 0.99^40."""
    avg = WeightAverager("ema", ema_decay=0.99)
    avg.update(_model(1.0))
    for _ in range(39):
        avg.update(_model(0.0))
    first_weight = float(avg.avg["weight"][0, 0])
    assert first_weight < 0.05
    assert first_weight > 0.0


def test_swa_is_the_equal_weight_mean() -> None:
    """SWA over 1, 2, 3 gives 2."""
    avg = WeightAverager("swa")
    for v in (1.0, 2.0, 3.0):
        avg.update(_model(v))
    assert torch.allclose(avg.avg["weight"], torch.full((1, 2), 2.0))
