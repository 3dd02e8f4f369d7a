"""Dry run of an 8×H100 job on the meta device."""

from __future__ import annotations

from golfmodel.model import build_model, param_report
from golfmodel.model.config import geode
from golfmodel.train.config import TrainConfig, TrainJob
from golfmodel.train.dryrun import dry_run


def test_dry_run_projects_an_h100x8_job() -> None:
    """Size from param_report, memory within an H100, FLOPs, time, eval cost and the torchrun command."""
    cfg = geode(1024, d_model=256, groups=2)
    job = TrainJob(
        model=cfg,
        train=TrainConfig(
            seq_len=1024,
            global_batch_tokens=524_288,
            micro_batch_seqs=16,
            max_wallclock_seconds=600,
            max_steps=20_000,
        ),
        train_shards=("fineweb_train_000000.bin",),
        out_dir="artifacts/run",
    )
    rep = dry_run(job, world_size=8)
    assert rep.packed_bytes == sum(r.bytes for r in param_report(build_model(cfg)))
    assert rep.grad_accum == 4 and rep.micro_batch_tokens == 16 * 1024
    assert 0 < rep.memory_total_gb < rep.gpu_memory_gb
    assert rep.flops_per_step == rep.flops_per_token * 524_288
    assert 0 < rep.projected_steps <= 20_000 and rep.step_seconds > 0
    assert 0 < rep.eval_seconds < rep.eval_limit_seconds
    assert (
        rep.command
        == "torchrun --standalone --nproc_per_node=8 -m golfmodel.train --job artifacts/run/RUN.json"
    )
    assert "sliding eval" in rep.format()
