"""The step-cost model: inductor's byte counts, per-unit counting, projection, calibration, `golf bench step` JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from golfmodel.bench.inductor_count import count_step
from golfmodel.bench.step_bench import run, step_cost
from golfmodel.bench.step_cost import AFTER, GPUS, TODAY, project
from golfmodel.bench.step_count import count_arm
from golfmodel.doctor import SMOKE_MODEL, SMOKE_SEQ_LEN
from golfmodel.train.config import TrainConfig, TrainJob


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _job(tokens: int = 8 * 64 * 16) -> TrainJob:
    train = TrainConfig(
        seq_len=SMOKE_SEQ_LEN, global_batch_tokens=tokens, micro_batch_seqs=8, max_wallclock_seconds=600
    )
    return TrainJob(model=SMOKE_MODEL, train=train, train_shards=("<x>",), out_dir="<none>")


def _cache(root: Path) -> Path:
    return root / "cache" / "step_cost"


class _AddBias(nn.Module):
    """y = 2x + w: one fused pointwise kernel reading x (per sequence) and w (per call)."""

    def __init__(self, T: int, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(T, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x + self.w  # (B, T, d)


def test_count_step_separates_per_sequence_from_per_call_bytes() -> None:
    """The forward's bytes: x read and y written per sequence (8·T·d), w read once per call (4·T·d)."""
    T, d = 16, 8
    counts = count_step(_AddBias(T, d), [torch.randn(3, T, d, requires_grad=True)], seq_len=T)
    per_seq, per_call = counts.bytes(extern=False, backward=False)
    assert counts.graphs == 2 and {k.backward for k in counts.kernels} == {False, True}
    assert (per_seq, per_call) == (8 * T * d, 4 * T * d)


def test_count_arm_counts_every_unit_and_reuses_its_cache(step_cost_artifacts: Path) -> None:
    """G, C and the stem are counted (the scan alone inside C's mixer bytes); a second call reads the cache."""
    cache = _cache(step_cost_artifacts)
    counts = count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=cache)
    assert counts.multiplicity == {"G": 1, "C": 1, "stem": 1}
    c = counts.units["C"]
    assert 0 < c.scan_bytes_per_seq < c.bytes_per_seq["CfC gates + scan"]
    assert c.fused_bytes_per_seq and not counts.units["G"].fused_bytes_per_seq
    assert counts.units["G"].attn_flops > 0 and counts.units["C"].attn_flops == 0
    assert all(u.mm_flops > u.fwd_mm_flops > 0 for u in counts.units.values())
    assert len(list(cache.glob("*.json"))) == 1
    assert count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=cache) == counts


def test_fused_design_projects_a_faster_step(step_cost_artifacts: Path) -> None:
    """After (fused scan, sharded Muon, Lloyd τ, no sync) beats today on every changed row, same matmuls."""
    counts = count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=_cache(step_cost_artifacts))
    kw = dict(world_size=8, gpu=GPUS["H100"])
    today = project(_job(), counts, design=TODAY, **kw)
    after = project(_job(), counts, design=AFTER, **kw)
    rows = {p.design: {r.component: r.device_s for r in p.rows} for p in (today, after)}
    assert rows["after"]["CfC scan"] < rows["today"]["CfC scan"]
    assert rows["after"]["Muon (Newton–Schulz)"] < rows["today"]["Muon (Newton–Schulz)"]
    assert "τ exact refit" in rows["today"] and "host syncs" not in rows["after"]
    assert rows["after"]["matmuls"] == rows["today"]["matmuls"] > 0
    assert after.step_ms < today.step_ms and (today.graphs, after.graphs) == (2, 1)


def test_calibration_scales_step_and_eval_and_recounts_the_budget(step_cost_artifacts: Path) -> None:
    """ratio r: step and eval times x r; steps in budget = floor(600 s / step); tokens = steps x tokens/step."""
    counts = count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=_cache(step_cost_artifacts))
    p = project(_job(), counts, world_size=8, gpu=GPUS["H200"], design=TODAY)
    q = p.calibrated(1.25)
    assert q.step_ms == pytest.approx(1.25 * p.uncalibrated_step_ms)
    assert q.eval_seconds == pytest.approx(1.25 * p.uncalibrated_eval_seconds)
    assert q.steps_in_budget == int(600e3 / q.step_ms)
    assert q.tokens_in_budget == q.steps_in_budget * 8 * 64 * 16


def test_projection_refuses_counts_of_another_seq_len(step_cost_artifacts: Path) -> None:
    """Counts taken at one sequence length cannot project a job at another (attention and the scan are not linear)."""
    counts = count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=_cache(step_cost_artifacts))
    job = _job()
    job = TrainJob(
        model=job.model,
        train=TrainConfig(seq_len=32, global_batch_tokens=8 * 32 * 16, micro_batch_seqs=8, max_steps=10),
        train_shards=job.train_shards,
        out_dir=job.out_dir,
    )
    with pytest.raises(ValueError, match="seq_len"):
        project(job, counts, world_size=8, gpu=GPUS["H100"], design=TODAY)


def test_bench_step_json_has_the_fields_the_issue_names(
    step_cost_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--json` writes arm, params, step_ms, uncalibrated_step_ms, calibration_ratio, tokens_in_budget, eval_seconds."""
    out = tmp_path / "step.json"
    assert run(_job(), world_size=8, json_path=out, cache_dir=_cache(step_cost_artifacts), ratio=1.25) == 0
    data = json.loads(out.read_text())
    for key in ("arm", "params", "step_ms", "uncalibrated_step_ms", "calibration_ratio", "tokens_in_budget"):
        assert key in data
    assert data["calibration_ratio"] == 1.25 and data["eval_seconds"] > 0
    assert data["step_ms"] == pytest.approx(1.25 * data["uncalibrated_step_ms"])
    assert set(data["designs"]) == {"today", "after"} and data["projection"] is True
    assert "PROJECTION" in capsys.readouterr().out
    sc = step_cost(_job(), world_size=8, cache_dir=_cache(step_cost_artifacts), ratio=1.25)
    assert sc.summary()["step_ms"] == data["step_ms"]


def test_fused_count_drops_the_gates_and_scan_but_keeps_the_mixer_outside_the_kernel(
    step_cost_artifacts: Path,
) -> None:
    """With the fused op opaque, the CfC mixer's counted bytes fall below gates + scan minus the scan, and stay > 0."""
    c = count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=_cache(step_cost_artifacts)).units["C"]
    chunked, fused = c.bytes_per_seq["CfC gates + scan"], c.fused_bytes_per_seq["CfC gates + scan"]
    assert 0 < fused < chunked - c.scan_bytes_per_seq  # softplus + gates are inside the kernel now
    assert (
        c.fused_bytes_per_seq["MLP gate"] == c.bytes_per_seq["MLP gate"]
    )  # the rest of the block is unchanged
    assert c.fused_fwd_bytes_per_seq < c.fwd_bytes_per_seq and 0 < c.fused_kernels < c.kernels


def test_fused_scan_row_is_the_kernels_analytic_traffic(step_cost_artifacts: Path) -> None:
    """After: the CfC scan row = scan_traffic_bytes(1, T, d, io_bytes=2) x CfC layers x sequences per rank / HBM rate."""
    from golfmodel.model.scan_triton import scan_traffic_bytes

    counts = count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=_cache(step_cost_artifacts))
    p = project(_job(), counts, world_size=8, gpu=GPUS["H100"], design=AFTER)
    row = next(r for r in p.rows if r.component == "CfC scan")
    per = scan_traffic_bytes(1, SMOKE_SEQ_LEN, SMOKE_MODEL.d_model, io_bytes=2).total_bytes
    seqs = _job().train.global_batch_tokens / 8 / SMOKE_SEQ_LEN
    assert row.device_s == pytest.approx(per * seqs / GPUS["H100"].hbm_bytes)


def test_sharded_muon_gathers_padded_stacks_and_updates_every_matrix() -> None:
    """5 equal matrices on 8 ranks: 1 per rank, an all-gather of 8 (padded); the elementwise part sees all 5."""
    from golfmodel.bench.step_analytic import MUON_ELEMENTWISE_BYTES, muon_rows

    gpu = GPUS["H100"]
    _, gather = muon_rows([(640, 640)] * 5, 5, 8, gpu, True)
    assert gather.device_s == pytest.approx(
        2.0 * 8 * 640 * 640 * 7 / 8 / gpu.bus_bytes + gpu.collective_latency_s
    )
    muon_big, _ = muon_rows([(4096, 4096)] * 5, 5, 8, gpu, True)
    assert muon_big.device_s > MUON_ELEMENTWISE_BYTES * 5 * 4096 * 4096 / gpu.hbm_bytes


def test_exact_refits_are_amortised_over_the_run(step_cost_artifacts: Path) -> None:
    """After: G + 2 exact refits per run, their time shared by the steps: row = step x refits / (wall - refits)."""
    from golfmodel.bench.step_analytic import model_matrices, tau_exact_refit_s

    counts = count_arm(SMOKE_MODEL, seq_len=SMOKE_SEQ_LEN, cache_dir=_cache(step_cost_artifacts))
    p = project(_job(), counts, world_size=8, gpu=GPUS["H100"], design=AFTER)
    row = next(r for r in p.rows if r.component == "τ exact refits (amortised)")
    shapes, _, n_q2, _ = model_matrices(_job())
    total = (SMOKE_MODEL.depth + 2) * tau_exact_refit_s(n_q2, len(shapes), GPUS["H100"])
    before = p.uncalibrated_step_ms / 1e3 - row.device_s
    assert row.device_s == pytest.approx(before * total / (600 - total))
    assert any(r.component == "τ update" for r in p.rows)


def test_scan_standin_op_matches_the_fused_scans_outputs_and_gradient_dtypes() -> None:
    """The counted stand-in and the real fused scan (interpreted off CUDA): same h and gradient shapes and dtypes."""
    pytest.importorskip("triton")
    from golfmodel.bench.fused_standins import standin_cfc_scan
    from golfmodel.model import scan_triton

    if not torch.cuda.is_available() and not scan_triton.interpreted():
        pytest.skip("the fused scan needs CUDA or TRITON_INTERPRET=1")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    seen = []
    for fn in (standin_cfc_scan, scan_triton.fused_cfc_scan):
        x, b = (torch.randn(2, 9, 8, device=dev, dtype=torch.bfloat16).requires_grad_() for _ in range(2))
        ld = torch.zeros(8, device=dev, requires_grad=True)
        h = fn(x, b, ld, torch.zeros(2, 9, dtype=torch.bool, device=dev))
        h.sum().backward()
        seen.append((h.shape, h.dtype, x.grad.dtype, b.grad.dtype, ld.grad.shape, ld.grad.dtype))
    assert seen[0] == seen[1]
