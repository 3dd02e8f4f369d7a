"""Distributed scoring and the `python -m golfmodel.eval` engine: 2 gloo ranks against 1 process."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from golfmodel.eval import plan_windows
from golfmodel.eval.__main__ import main as eval_main
from golfmodel.eval.run import ArtifactEval, eval_command, score_artifact
from golfmodel.eval.sharded import rank_windows
from golfmodel.model import build_model
from golfmodel.model.config import ModelConfig
from golfmodel.quant.q2linear import Q2Linear

REPO = Path(__file__).resolve().parents[2]
TOKENS = 3000  # the first 3,000 sample val tokens: 2,999 targets
SEQ, STRIDE, BATCH = 32, 8, 4
META = {"tokenizer": {"id": "fineweb_1024_bpe", "vocab_size": 1024}, "settings_hash": "test"}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models score fastest single-threaded (other test processes share the cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(arm: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        arm=arm, vocab_size=1024, d_model=32, depth=1, n_heads=2, n_kv_heads=1, mlp_mult=2.0, max_seq_len=SEQ
    )
    model = build_model(cfg)
    for layer in model.modules():
        if isinstance(layer, Q2Linear):
            layer.refresh_tau()
    return model


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny q2-geode packed as Q2BN and a tiny gpt-int8 packed as int8 + zlib."""
    from golfmodel.q2bn.artifact import pack_model
    from golfmodel.q2bn.int8zlib import pack_int8zlib

    folder = tmp_path_factory.mktemp("artifacts")
    pack_model(_tiny("q2-geode"), folder / "model.q2bn", meta=META)
    pack_int8zlib(_tiny("gpt-int8"), folder / "model.int8.ptz", meta=META)
    return {"q2bn": folder / "model.q2bn", "int8": folder / "model.int8.ptz"}


def _spec(artifact: Path, val_shard: Path, sp_model_path: Path) -> ArtifactEval:
    return ArtifactEval(
        artifact=str(artifact), val=(str(val_shard),), tokenizer=str(sp_model_path), seq_len=SEQ,
        stride=STRIDE, batch_size=BATCH, max_tokens=TOKENS, device="cpu",
    )  # fmt: skip


@pytest.fixture(scope="module")
def records(
    artifacts: dict[str, Path], val_shard: Path, sp_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, dict]:
    """The JSON record for the Q2BN artifact: 1 process (in this one) and the engine under torchrun, 2 gloo ranks."""
    spec = _spec(artifacts["q2bn"], val_shard, sp_model_path)
    out = tmp_path_factory.mktemp("eval") / "n2.json"
    cmd = [*eval_command(spec, nproc=2, json_out=out), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return {1: score_artifact(spec), 2: json.loads(out.read_text())}


def test_two_ranks_give_the_one_process_score_exactly(records: dict[int, dict]) -> None:
    """fp32 on CPU: 2 gloo ranks reproduce the 1-process bpb and loss bit for bit, and the same counts."""
    one, two = records[1], records[2]
    assert (two["nproc"], one["nproc"]) == (2, 1)
    assert two["bpb"] == one["bpb"] and two["loss"] == one["loss"]
    assert (two["tokens"], two["bytes"], two["windows"]) == (one["tokens"], one["bytes"], one["windows"])


def test_every_window_and_target_is_scored_once_across_ranks(records: dict[int, dict]) -> None:
    """Both ranks fed windows; together every planned window once and all N-1 targets (rule all)."""
    starts, _, _ = plan_windows(TOKENS - 1, SEQ, STRIDE)
    two = records[2]
    assert two["tokens"] == TOKENS - 1 and two["windows"] == len(starts)
    assert sum(two["rank_windows"]) == len(starts) and min(two["rank_windows"]) > 0
    assert two["audit_bytes"] == two["bytes"]


def test_rank_shares_partition_the_window_plan() -> None:
    """For 1-3 ranks the ranks' windows are disjoint, cover the plan, and hit each target exactly once."""
    for M, stride in ((299, 8), (299, None), (40, 8)):
        starts, lengths, lo = plan_windows(M, SEQ, stride)
        for world in (1, 2, 3):
            shares = [rank_windows(lengths, lo, BATCH, r, world) for r in range(world)]
            assert sorted(np.concatenate(shares).tolist()) == list(range(len(starts)))
            hits = np.zeros(M + 1, dtype=np.int64)
            for w in np.concatenate(shares):
                hits[starts[w] + lo[w] + 1 : starts[w] + lengths[w] + 1] += 1
            assert hits[0] == 0 and (hits[1:] == 1).all(), (M, stride, world)


def test_record_holds_the_documented_fields(records: dict[int, dict]) -> None:
    """The --json record has bpb, tokens, bytes, seq_len, stride, nproc and says how it was scored."""
    rec = records[2]
    assert {"bpb", "tokens", "bytes", "seq_len", "stride", "nproc", "rule", "mode"} <= set(rec)
    assert (rec["seq_len"], rec["stride"], rec["rule"], rec["autocast"]) == (SEQ, STRIDE, "all", "fp32")
    assert rec["artifact_format"] == "q2bn" and math.isfinite(rec["bpb"])


def test_int8_zlib_artifact_is_scored(
    artifacts: dict[str, Path], val_shard: Path, sp_model_path: Path
) -> None:
    """The gpt-int8 arm's int8 + zlib file is recognised and scored like a Q2BN artifact."""
    rec = score_artifact(_spec(artifacts["int8"], val_shard, sp_model_path))
    assert rec["artifact_format"] == "int8_zlib" and rec["tokens"] == TOKENS - 1
    assert rec["audit_bytes"] == rec["bytes"] and math.isfinite(rec["bpb"])


def test_missing_shard_is_a_clear_error(
    artifacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --val path that does not exist exits 2 with a message naming it."""
    missing = tmp_path / "fineweb_val_000009.bin"
    code = eval_main(
        [str(artifacts["q2bn"]), "--val", str(missing), "--variant", "byte260", "--device", "cpu"]
    )
    assert code == 2 and str(missing) in capsys.readouterr().err


def test_golf_eval_runs_the_engine(
    artifacts: dict[str, Path], records: dict[int, dict], val_shard: Path, sp_model_path: Path, tmp_path: Path
) -> None:
    """`golf eval ... --json FILE` launches the engine and records the same score as the in-process call."""
    from golf.flows.cli import main as golf_main

    out = tmp_path / "val.json"
    code = golf_main([
        "eval", str(artifacts["q2bn"]), "--val", str(val_shard), "--tokenizer", str(sp_model_path),
        "--seq-len", str(SEQ), "--stride", str(STRIDE), "--batch-size", str(BATCH), "--max-tokens", str(TOKENS),
        "--device", "cpu", "--threads", "1", "--json", str(out),
    ])  # fmt: skip
    assert code == 0
    rec = json.loads(out.read_text())
    assert rec["bpb"] == records[1]["bpb"] and rec["nproc"] == 1


def test_eval_throughput_scores_every_target_of_the_slice() -> None:
    """The GPU check's throughput entry runs on CPU too (fp32): all targets of the synthetic slice, a rate."""
    from golfmodel.eval.run import eval_throughput

    row = eval_throughput(
        _tiny("q2-geode"), device="cpu", seq_len=SEQ, stride=STRIDE, batch_size=BATCH, n_tokens=512
    )
    assert row["targets"] == 512 and row["autocast"] == "fp32" and row["tokens_per_second"] > 0
