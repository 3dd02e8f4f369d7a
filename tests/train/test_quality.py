"""A short q2-geode run on the real sample learns more than the bigram model of the same data."""

from __future__ import annotations

from pathlib import Path

from golfmodel.data.bigram import bigram_bpb, build_bigram
from golfmodel.data.shards import read_shard
from golfmodel.data.tokenise import convert_sp_to_byte260
from golfmodel.eval import ByteTable
from golfmodel.model.config import ModelConfig
from golfmodel.train.config import OptimConfig, QATConfig, TrainConfig, TrainJob
from golfmodel.train.trainer import train


def test_short_geode_run_beats_the_bigram(
    tmp_path: Path, train_shard: Path, val_shard: Path, sp_model_path: Path
) -> None:
    """byte260, 150 steps of 1,024 tokens with progressive QAT: val bpb (quantised) < the bigram's val bpb."""
    b260 = convert_sp_to_byte260(
        [val_shard], [train_shard], sp_model_path, tmp_path / "b260", workers=1, progress=False
    )
    (train_b,), (val_b,) = b260.train_paths, b260.val_paths
    bigram = bigram_bpb(build_bigram([train_b], 260), read_shard(val_b), ByteTable.byte260())
    job = TrainJob(
        model=ModelConfig(
            arm="q2-geode",
            vocab_size=260,
            d_model=64,
            depth=1,
            n_heads=4,
            n_kv_heads=2,
            mlp_mult=2.0,
            max_seq_len=64,
        ),
        train=TrainConfig(
            seq_len=64,
            global_batch_tokens=64 * 16,
            micro_batch_seqs=16,
            max_steps=150,
            val_tokens=0,  # score the whole validation sample
            log_every=20,
            device="cpu",
            threads=1,
            progress_bar=False,
        ),
        optim=OptimConfig(muon_lr=0.05, adam_lr=0.03),
        qat=QATConfig(tau_refresh_steps=20),
        train_shards=(str(train_b),),
        val_shards=(str(val_b),),
        tokenizer="byte260",
        out_dir=str(tmp_path / "run"),
    )
    summary = train(job)
    assert summary is not None and summary["qat"] is True
    assert summary["val_tokens"] == len(read_shard(val_b))
    assert summary["prequant_val_bpb"] < bigram, (summary["prequant_val_bpb"], bigram)
