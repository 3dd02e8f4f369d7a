"""Muon: Newton–Schulz orthogonalisation (batched, sharded across ranks), the update rule, its parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from golfmodel.model import build_model
from golfmodel.model.config import ModelConfig
from golfmodel.quant.q2linear import Q2Linear
from golfmodel.train.config import OptimConfig
from golfmodel.train.muon import (
    Muon,
    build_optimizers,
    newton_schulz,
    newton_schulz_batched,
    shard_bounds,
    split_params,
)
from golfmodel.train.muon_timing import h100x8_shapes, time_muon_step

WORKER = Path(__file__).with_name("muon_worker.py")
STEPS = 3  # the worker's optimiser steps
# the trainer tests' tolerance for 2-process vs 1-process weights (tests/train/test_distributed.py)
ATOL = 1e-5


def test_newton_schulz_pushes_singular_values_near_one() -> None:
    """After 5 quintic steps every singular value of a random matrix (tall or wide, any scale) lies in [0.6, 1.3]."""
    g = torch.Generator().manual_seed(0)
    for shape in [(64, 32), (32, 96)]:
        m = 1e3 * torch.randn(*shape, generator=g)
        assert torch.linalg.svdvals(m / m.norm()).max() < 0.5  # far from orthogonal before
        sv = torch.linalg.svdvals(newton_schulz(m, 5))
        assert sv.min() > 0.6 and sv.max() < 1.3, sv


def test_muon_step_is_scaled_orthogonalised_nesterov_momentum() -> None:
    """Two steps equal the reference rule: buf = m*buf + g; u = NS(g + m*buf); w -= lr*max(1,r/c)^0.5*u."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(48, 16))
    ref = w.detach().clone()
    opt = Muon([w], lr=0.1, momentum=0.9)
    buf = torch.zeros_like(ref)
    for _ in range(2):
        g = torch.randn_like(ref)
        w.grad = g.clone()
        opt.step()
        buf = 0.9 * buf + g
        ref -= 0.1 * (48 / 16) ** 0.5 * newton_schulz(g + 0.9 * buf, 5)
    torch.testing.assert_close(w.detach(), ref)


def test_block_matrices_go_to_muon_and_the_rest_to_adamw() -> None:
    """Q2Linear weights → Muon; the tied embedding → AdamW (decay group, once); gains, log_dt → AdamW (no decay)."""
    cfg = ModelConfig(
        arm="q2-geode", vocab_size=64, d_model=32, depth=1, n_heads=2, n_kv_heads=1, mlp_mult=2.0
    )
    model = build_model(cfg)
    muon, decay, no_decay = split_params(model)
    q2 = {id(m.weight) for m in model.modules() if isinstance(m, Q2Linear)}
    assert {id(p) for p in muon} == q2
    assert [id(p) for p in decay] == [id(model.tok_emb.weight)]
    assert all(p.ndim < 2 for p in no_decay) and len(no_decay) > 0
    n_all = len({id(p) for p in model.parameters()})
    assert len(muon) + len(decay) + len(no_decay) == n_all
    opts = build_optimizers(model, OptimConfig())
    assert [type(o).__name__ for o in opts] == ["Muon", "AdamW"]


def _run_worker(out: Path, nproc: int) -> None:
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [*launcher, str(WORKER), str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The worker's Muon steps with 1 process and with 2 gloo processes; out dirs by world size."""
    outs = {}
    for nproc in (1, 2):
        outs[nproc] = tmp_path_factory.mktemp(f"muon{nproc}")
        _run_worker(outs[nproc], nproc)
    return outs


def test_sharded_muon_on_two_ranks_matches_one_process(sharded_runs: dict[int, Path]) -> None:
    """2 gloo ranks, each orthogonalising half of every shape bucket, reach the 1-process weights."""
    ref = torch.load(sharded_runs[1] / "rank_0.pt", weights_only=True)["params"]
    for rank in (0, 1):
        got = torch.load(sharded_runs[2] / f"rank_{rank}.pt", weights_only=True)["params"]
        for a, b in zip(ref, got, strict=True):
            torch.testing.assert_close(b, a, atol=ATOL, rtol=0)


def test_sharded_muon_splits_the_newton_schulz_work(sharded_runs: dict[int, Path]) -> None:
    """Per step one process orthogonalises all 6 matrices; each of 2 ranks ceil(n/2) per bucket (2+1+1)."""
    one = torch.load(sharded_runs[1] / "rank_0.pt", weights_only=True)["slots"]
    two = [torch.load(sharded_runs[2] / f"rank_{r}.pt", weights_only=True)["slots"] for r in (0, 1)]
    assert one == 6 * STEPS and two == [4 * STEPS, 4 * STEPS]


def test_shard_bounds_tile_a_bucket() -> None:
    """Ranks' shares are contiguous, disjoint and cover every matrix, for counts below and above the world."""
    for n in (1, 3, 8, 44):
        for world in (1, 2, 3, 8):
            spans = [shard_bounds(n, r, world)[:2] for r in range(world)]
            covered = [i for lo, hi in spans for i in range(lo, hi)]
            assert covered == list(range(n)), (n, world, spans)


def test_batched_newton_schulz_equals_one_matrix_at_a_time() -> None:
    """Orthogonalising a stack gives each matrix's own result (fp32 on CPU), and a zero slot stays zero."""
    g = torch.randn(3, 24, 40, generator=torch.Generator().manual_seed(1))
    g[2] = 0
    batched = newton_schulz_batched(g, 5)
    for i in range(3):
        torch.testing.assert_close(batched[i], newton_schulz(g[i], 5), atol=1e-6, rtol=0)
    assert torch.count_nonzero(batched[2]) == 0


def test_h100x8_shapes_are_four_buckets_of_100_matrices() -> None:
    """The timing entry's h100x8-scale shapes: four equal-shape buckets, 100 Muon matrices in all."""
    shapes = h100x8_shapes()
    assert len(shapes) == 4 and sum(shapes.values()) == 100


def test_time_muon_step_runs_one_step_on_given_shapes() -> None:
    """time_muon_step builds the matrices it is given and reports a positive step time (CPU, eager)."""
    row = time_muon_step({(24, 16): 3, (16, 40): 1}, device="cpu", steps=1, warmup=1)
    assert row["matrices"] == 4 and row["params"] == 3 * 24 * 16 + 16 * 40 and row["step_ms"] > 0
