"""`python -m golfmodel.doctor gpu --smoke`: every part runs at toy sizes on the CPU with only the lent GPU's packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from golfmodel.doctor.perf import PARTS

REPO = Path(__file__).resolve().parents[2]
# the lent machine has torch, triton, numpy and sentencepiece only: anything else importing fails
BLOCKED = ("pydantic", "pydantic_settings", "prefect", "zstandard", "golf", "settings", "flows", "tasks")
RUN = """
import runpy, sys
for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now raises ImportError
sys.argv = ["golfmodel.doctor", "gpu", "--smoke", "--out", {out!r}, "--cache-dir", {cache!r}]
runpy.run_module("golfmodel.doctor", run_name="__main__", alter_sys=True)
"""


def test_doctor_smoke_runs_every_part_without_pydantic_prefect_or_zstandard(
    step_cost_artifacts: Path, tmp_path: Path
) -> None:
    """Module entry, blocked imports: doctor.json holds every part; the interpreted fused scan, fake-quant, 0 recompiles pass."""
    code = RUN.format(
        blocked=BLOCKED, out=str(tmp_path), cache=str(step_cost_artifacts / "cache" / "step_cost")
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the entry point must set it
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    data = json.loads((tmp_path / "doctor.json").read_text())
    assert [name for name, _, _ in PARTS] == [k for k in data if k != "total_seconds"], proc.stderr[-2000:]
    failed = [k for k, v in data.items() if isinstance(v, dict) and v["status"] == "fail"]
    assert proc.returncode == (1 if failed else 0) and not failed, (failed, proc.stdout[-2000:])
    assert data["scan"]["max_abs_err_h"] < 1e-4 and data["scan"]["fp32_passes_per_layer"] > 0
    assert data["norm"]["max_abs_err_dx"] < 1e-4 and "fused" not in data["norm"]  # the interpreted kernel ran
    assert data["fake_quant"]["weights_equal"] and data["fake_quant"]["ste_grad_equal"]
    assert (
        data["compile"]["recompiles_on_qat_switch"] == 0 and data["compile"]["new_graphs_on_qat_switch"] == 0
    )
    assert data["steps"]["step_ms"] > 0 and data["steps"]["tokens_per_step"] == 2 * 2 * 64
    assert data["tau"]["lloyd_compiled_ms"] > 0 and data["eval"]["tokens_per_second"] > 0
    assert data["projection"]["measured_over_projected"] > 0 and data["projection"]["design"] == "after"


def test_doctor_stops_a_part_at_its_cap_and_skips_what_no_longer_fits(tmp_path: Path, monkeypatch) -> None:
    """A part past its cap is interrupted and recorded as skipped (a FAIL); one with no time left is not started."""
    import time

    from golfmodel.doctor import perf, run_gpu

    started = []
    parts = [
        ("slow", lambda ctx: time.sleep(30) or {"status": "ok"}, 0.3),
        ("late", lambda ctx: started.append(1) or {"status": "ok"}, 10.0),
    ]
    monkeypatch.setattr(perf, "PARTS", parts)
    t0 = time.perf_counter()
    rc = run_gpu(smoke=True, out=tmp_path, total_cap_s=0.3)
    data = json.loads((tmp_path / "doctor.json").read_text())
    assert rc == 1 and time.perf_counter() - t0 < 5 and not started
    assert data["slow"]["status"] == "fail" and "cap" in data["slow"]["skipped"]
    assert data["late"]["status"] == "fail" and "no time left" in data["late"]["skipped"]
