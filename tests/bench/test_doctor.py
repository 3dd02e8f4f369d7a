"""`golf doctor gpu --smoke`: every part runs at toy sizes on the CPU and doctor.json holds them all."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from golfmodel.doctor import PARTS, run_gpu


def test_doctor_smoke_writes_every_part_and_exits_by_the_failures(
    step_cost_artifacts: Path, tmp_path: Path
) -> None:
    """Each part has a status; fake-quant is bit-exact, the scan matches the reference, steps and projection are measured."""
    threads = torch.get_num_threads()
    try:
        rc = run_gpu(smoke=True, out=tmp_path, cache_dir=step_cost_artifacts / "cache" / "step_cost")
    finally:
        torch.set_num_threads(threads)
    data = json.loads((tmp_path / "doctor.json").read_text())
    assert [name for name, _ in PARTS] == [k for k in data if k != "total_seconds"]
    failed = [k for k, v in data.items() if isinstance(v, dict) and v["status"] == "fail"]
    assert rc == (1 if failed else 0)
    assert data["fake_quant"]["forward_equal"] and data["fake_quant"]["backward_equal"]
    assert data["scan"]["chunked_max_abs_err"] < 1e-4 and data["scan"]["status"] == "ok"
    assert data["steps"]["step_ms"] > 0 and data["steps"]["tokens_per_step"] == 2 * 2 * 64
    assert data["projection"]["measured_over_projected"] > 0
    assert isinstance(data["compile"]["recompiles_on_qat_switch"], int)
