"""`golf export RUN DIR` on a synthetic pipeline run folder: every file, the challenge's JSON fields, sizes."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
from pathlib import Path

import pytest

from golfmodel.export import code_bytes
from golfmodel.export.cli import main as export_main
from golfmodel.export.records import SUBMISSION_FIELDS, ExportError, export_run

MODEL = {
    "arm": "q2-geode", "vocab_size": 260, "d_model": 32, "depth": 1, "pattern": "GC", "n_heads": 2,
    "n_kv_heads": 1, "mlp_mult": 2.0, "max_seq_len": 64,
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as golf.tasks.runs writes it, with train and pack stage folders in a fake cache."""
    from golfmodel.model import build_model
    from golfmodel.model.config import ModelConfig
    from golfmodel.q2bn.artifact import pack_model
    from golfmodel.train.config import TrainConfig, TrainJob

    root = tmp_path_factory.mktemp("export")
    run, train_dir, pack_dir = (
        root / "runs" / "r1",
        root / "cache" / "train" / "k1",
        root / "cache" / "pack" / "k2",
    )
    for d in (run / "records", train_dir, pack_dir):
        d.mkdir(parents=True)
    cfg = ModelConfig.from_dict(MODEL)
    job = TrainJob(model=cfg, train=TrainConfig(max_steps=10, seq_len=64, global_batch_tokens=2048, micro_batch_seqs=32),
                   train_shards=("/data/fineweb_train_000000.bin",), out_dir=str(train_dir))  # fmt: skip
    job.to_json(train_dir / "RUN.json")
    (train_dir / "metrics.jsonl").write_text('{"kind": "train", "step": 0, "loss": 5.5}\n')
    (train_dir / "events.jsonl").write_text('{"event": "start", "step": 0}\n')
    pack_model(
        build_model(cfg),
        pack_dir / "model.q2bn",
        meta={"tokenizer": {"id": "byte260", "vocab_size": 260}, "settings_hash": "x"},
    )
    settings = {
        "preset": "smoke", "tokeniser": {"variant": "byte260"}, "quant": {"recalibrate": "mse", "calib_batches": 4},
        "pack": {"linear_kind": "q2", "budget_bytes": 16_000_000},
        "eval": {"seq_len": 64, "stride": 32, "rule": "all", "batch_size": 8, "max_tokens": None},
    }  # fmt: skip
    report = {
        "final_bpb": 3.25, "prequant_bpb": 3.2, "postquant_bpb": 3.3, "recalibrated_bpb": 3.28, "bigram_bpb": 4.1,
        "budget_bytes": 16_000_000,
        "validation": {"loss": 2.25, "tokens": 1000, "bytes": 1001, "mode": "sliding", "seq_len": 64, "stride": 32, "rule": "all"},
    }  # fmt: skip
    (run / "settings.json").write_text(json.dumps(settings))
    (run / "report.json").write_text(json.dumps(report))
    (run / "run.log").write_text("train: step 0 loss 5.5\n")
    (run / "records" / "train.json").write_text(
        json.dumps({"stage": "train", "dir": str(train_dir), "values": {"final": "final.pt"}})
    )
    art = pack_dir / "model.q2bn"
    outputs = {
        "model.q2bn": {"sha256": hashlib.sha256(art.read_bytes()).hexdigest(), "bytes": art.stat().st_size}
    }
    (run / "records" / "pack.json").write_text(
        json.dumps(
            {"stage": "pack", "dir": str(pack_dir), "values": {"artifact": "model.q2bn"}, "outputs": outputs}
        )
    )
    return run


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> Path:
    return export_run(
        run_dir, run_dir.parent / "records" / "q2", author="Ada", github_id="ada", date="2026-05-01T00:00:00Z"
    )


def test_export_writes_every_records_file(exported: Path) -> None:
    """README, submission.json, train log, trainer records, the artifact and train_gpt.py are all there."""
    names = {p.name for p in exported.iterdir()}
    assert {"README.md", "submission.json", "train.log", "train_metrics.jsonl", "train_events.jsonl", "RUN.json",
            "final_model.q2bn", "train_gpt.py"} <= names  # fmt: skip


def test_submission_json_has_the_challenge_fields(exported: Path) -> None:
    """submission.json: exactly the challenge's fields, the validate stage's loss and bpb, typed like the examples."""
    sub = json.loads((exported / "submission.json").read_text())
    assert list(sub) == list(SUBMISSION_FIELDS)
    assert (sub["author"], sub["github_id"], sub["date"]) == ("Ada", "ada", "2026-05-01T00:00:00Z")
    assert (sub["val_loss"], sub["val_bpb"]) == (2.25, 3.25)
    assert isinstance(sub["bytes_total"], int) and isinstance(sub["name"], str) and sub["blurb"]


def test_bytes_count_the_exported_script_and_artifact(exported: Path) -> None:
    """bytes_code is train_gpt.py's size (= the size check's code_bytes()); bytes_total adds the artifact."""
    sub = json.loads((exported / "submission.json").read_text())
    code = (exported / "train_gpt.py").stat().st_size
    assert sub["bytes_code"] == code == code_bytes()
    assert sub["bytes_total"] == code + (exported / "final_model.q2bn").stat().st_size


def test_exported_script_carries_the_run_configuration(exported: Path, run_dir: Path) -> None:
    """CONFIG in train_gpt.py holds the run's model, its variant and its scoring settings."""
    config = runpy.run_path(str(exported / "train_gpt.py"), run_name="not_main")["CONFIG"]
    assert config["job"]["model"] == json.loads((exported / "RUN.json").read_text())["model"]
    assert (config["variant"], config["eval"]["stride"]) == ("byte260", 32)


def test_export_of_an_unfinished_run_names_the_missing_report(tmp_path: Path) -> None:
    """A run folder without report.json is refused with the file named."""
    with pytest.raises(ExportError, match=r"report\.json: missing"):
        export_run(tmp_path, tmp_path / "out")


def test_export_cli_exits_2_on_an_unfinished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`golf export RUN DIR` reports the fault in one line and exits 2."""
    assert export_main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "report.json" in capsys.readouterr().err


def test_export_refuses_an_artifact_that_changed_after_packing(run_dir: Path, tmp_path: Path) -> None:
    """One flipped bit in the cached artifact (mtime kept): export fails naming the file; nothing is shipped."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    rec = json.loads((run / "records" / "pack.json").read_text())
    pack_dir = tmp_path / "pack"
    shutil.copytree(rec["dir"], pack_dir)
    (run / "records" / "pack.json").write_text(json.dumps({**rec, "dir": str(pack_dir)}))
    art = pack_dir / "model.q2bn"
    st = art.stat()
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x01
    art.write_bytes(bytes(data))
    os.utime(art, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ExportError, match=r"model\.q2bn: sha256 .* does not match"):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out" / "final_model.q2bn").exists()
