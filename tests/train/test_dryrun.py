"""Dry run of an 8×H100 job on the meta device, timed by the step-cost model."""

from __future__ import annotations

from pathlib import Path

from golfmodel.doctor import SMOKE_MODEL, SMOKE_SEQ_LEN
from golfmodel.model import build_model, param_report
from golfmodel.train.config import TrainConfig, TrainJob
from golfmodel.train.dryrun import dry_run


def test_dry_run_projects_an_h100x8_job(step_cost_artifacts: Path) -> None:
    """Size from param_report, memory within an H100, the step-cost model's step and eval, the torchrun command."""
    job = TrainJob(
        model=SMOKE_MODEL,
        train=TrainConfig(
            seq_len=SMOKE_SEQ_LEN,
            global_batch_tokens=524_288,
            micro_batch_seqs=256,
            max_wallclock_seconds=600,
            max_steps=20_000,
        ),
        train_shards=("fineweb_train_000000.bin",),
        out_dir="artifacts/run",
    )
    rep = dry_run(
        job, world_size=8, cache_dir=str(step_cost_artifacts / "cache" / "step_cost"), calibration_ratio=1.25
    )
    assert rep.packed_bytes == sum(r.bytes for r in param_report(build_model(SMOKE_MODEL)))
    assert rep.grad_accum == 4 and rep.micro_batch_tokens == 256 * 64
    assert 0 < rep.memory_total_gb < rep.gpu_memory_gb
    assert rep.step_seconds * 1e3 == rep.step_cost.today.step_ms  # one projection, no second guess
    assert rep.projected_steps == min(20_000, rep.step_cost.today.steps_in_budget)
    assert 0 < rep.eval_seconds < rep.eval_limit_seconds
    assert (
        rep.command
        == "torchrun --standalone --nproc_per_node=8 -m golfmodel.train --job artifacts/run/RUN.json"
    )
    text = rep.format()
    assert "sliding eval" in text and "PROJECTION" in text and "calibration ratio 1.250" in text
