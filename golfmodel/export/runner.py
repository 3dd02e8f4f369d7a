"""The `main` of a submission's train_gpt.py: train → recalibrate τ → pack → size → reload → score.

    main(config, argv, environ, script_path) -> exit code      (called by train_gpt.py's bootstrap)

`config` is the run's configuration (`submission_config`): the trainer job without paths, the
tokenizer variant, the recalibration mode, the packer, the scoring settings and the budget.
Paths and budgets come from the environment the way the challenge's baseline reads them:
DATA_PATH (fineweb_{train,val}_*.bin), TOKENIZER_PATH, RUN_ID, MAX_WALLCLOCK_SECONDS, ITERATIONS,
SEED, VAL_LOSS_EVERY, OUT_DIR; RANK/WORLD_SIZE/LOCAL_RANK under torchrun. This module never
reads os.environ itself: the bootstrap passes it in.

Rank 0 writes `<OUT_DIR>/<RUN_ID>/` (the trainer's files, `final_model.q2bn` or
`final_model.int8.ptz`) and `<OUT_DIR>/logs/<RUN_ID>.txt`; then every rank reloads the model
from the artifact and scores its share of the windows (bf16 autocast on GPU, the float64 sums
all-reduced: `golfmodel.eval.sharded`), and rank 0 prints, like the baseline,
`final_<format>_roundtrip val_loss:... val_bpb:...`.
`--selftest` does all of it on a tiny model and synthetic byte260 shards in a temp folder.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from golfmodel.quant.plan import EXPORT_SUFFIX

CONFIG_FORMAT = 1
JOB_SECTIONS = ("model", "train", "optim", "schedule", "qat", "averaging")
ARTIFACT_STEM = "final_model"  # + the plan's container suffix: final_model.q2bn / final_model.int8.ptz


def artifact_name(model: Any) -> str:
    """The artifact's file name in the records folder: by the plan's container (final_model.q2bn / .int8.ptz).

    `model` is a ModelConfig or its dict (a RUN.json's `model` section)."""
    from golfmodel.model.config import ModelConfig

    cfg = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(model)
    return ARTIFACT_STEM + EXPORT_SUFFIX[cfg.quant_plan.export]


def submission_config(
    job: Mapping[str, Any],
    *,
    variant: str,
    eval_settings: Mapping[str, Any],
    recalibrate: str = "mse",
    calib_batches: int = 4,
    linear_kind: str = "q2",
    budget_bytes: int = 16_000_000,
    name: str = "",
) -> dict[str, Any]:
    """The script's configuration from a TrainJob dict (paths dropped) and the run's settings."""
    if variant != "byte260" and not variant.startswith("sp"):
        raise ValueError(f"variant must be byte260 or sp<V>, got {variant!r}")
    ev = {k: eval_settings.get(k) for k in ("seq_len", "stride", "rule", "batch_size", "max_tokens")}
    train = {
        k: v for k, v in dict(job["train"]).items() if not k.startswith("debug_") and k != "progress_bar"
    }
    return {
        "format": CONFIG_FORMAT,
        "name": name,
        "job": {**{k: job[k] for k in JOB_SECTIONS if k in job}, "train": train},
        "variant": variant,
        "recalibrate": {"mode": recalibrate, "calib_batches": calib_batches},
        "linear_kind": linear_kind,
        "eval": ev,
        "budget_bytes": budget_bytes,
    }


class _Log:
    """print() on rank 0, also appended to logs/<RUN_ID>.txt (the train log a records folder ships)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        if self.path is None:
            return
        print(msg, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(msg + "\n")


def _env_int(environ: Mapping[str, str], key: str) -> int | None:
    v = environ.get(key)
    return int(v) if v not in (None, "") else None


def _job(config: dict[str, Any], environ: Mapping[str, str], out_root: Path, run_id: str) -> Any:
    """The TrainJob of this run: CONFIG's job, the environment's paths and budget overrides."""
    from golfmodel.train.config import TrainJob

    variant = config["variant"]
    data = environ.get("DATA_PATH") or f"./data/datasets/fineweb10B_{variant}"
    train_shards = sorted(glob.glob(os.path.join(data, "fineweb_train_*.bin")))
    val_shards = sorted(glob.glob(os.path.join(data, "fineweb_val_*.bin")))
    if not train_shards or not val_shards:
        raise FileNotFoundError(f"DATA_PATH={data}: needs fineweb_train_*.bin and fineweb_val_*.bin shards")
    if variant == "byte260":
        tokenizer = "byte260"
    else:
        tokenizer = (
            environ.get("TOKENIZER_PATH")
            or f"./data/tokenizers/fineweb_{variant.removeprefix('sp')}_bpe.model"
        )
        if not Path(tokenizer).exists():
            raise FileNotFoundError(f"TOKENIZER_PATH={tokenizer} does not exist")
    job = json.loads(json.dumps(config["job"]))
    t = job["train"]
    if (v := environ.get("MAX_WALLCLOCK_SECONDS")) not in (None, ""):
        t["max_wallclock_seconds"] = float(v) or None
    if (v := _env_int(environ, "ITERATIONS")) is not None:
        t["max_steps"] = v or None
    if (v := _env_int(environ, "SEED")) is not None:
        t["seed"] = v
    if (v := _env_int(environ, "VAL_LOSS_EVERY")) is not None:
        t["val_every"] = v
    t["progress_bar"] = False
    world = int(environ.get("WORLD_SIZE", "1"))
    per_rank = t["global_batch_tokens"] // t["seq_len"] // world  # sequences per step on each rank
    if per_rank >= 1 and per_rank % t["micro_batch_seqs"]:
        # same global batch on any number of GPUs: shrink the micro-batch to a divisor of the rank's share
        t["micro_batch_seqs"] = max(d for d in range(1, t["micro_batch_seqs"] + 1) if per_rank % d == 0)
    out_dir = out_root / run_id
    bigram = str(out_dir / "bigram.npz") if job["model"].get("bigram_prior") else None
    return TrainJob.from_dict(
        {
            **job,
            "train_shards": train_shards,
            "val_shards": val_shards,
            "tokenizer": tokenizer,
            "bigram_logprior": bigram,
            "out_dir": str(out_dir),
        }
    )


def _dist_env(environ: Mapping[str, str]) -> Any:
    from golfmodel.train.runtime import DistEnv

    return DistEnv(
        rank=int(environ.get("RANK", "0")),
        world_size=int(environ.get("WORLD_SIZE", "1")),
        local_rank=int(environ.get("LOCAL_RANK", "0")),
    )


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def run(
    config: dict[str, Any], environ: Mapping[str, str], script_path: str, *, out_root: Path, run_id: str
) -> dict[str, Any]:
    """Train, recalibrate, pack, size-check and score one run; the summary on rank 0 ({} elsewhere)."""
    import torch
    import torch.distributed as dist

    from golfmodel.procgroup import end_process_group
    from golfmodel.train.runtime import resolve_backend, resolve_device
    from golfmodel.train.trainer import train

    env = _dist_env(environ)
    job = _job(config, environ, out_root, run_id)
    log = _Log(out_root / "logs" / f"{run_id}.txt" if env.is_main else None)
    log(
        f"run {run_id}: {config.get('name') or job.model.arm}, {env.world_size} process(es), out {job.out_dir}"
    )
    log(f"config: {json.dumps(config, sort_keys=True)}")
    if env.world_size > 1 and not dist.is_initialized():
        device = resolve_device(job.train, env.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=resolve_backend(job.train, device))
    clean = False
    try:
        if job.bigram_logprior:
            if env.is_main and not Path(job.bigram_logprior).exists():
                from golfmodel.data.bigram import build_bigram

                log("counting the training bigrams for the log-prior")
                build_bigram(job.train_shards, job.model.vocab_size, job.bigram_logprior)
            _barrier()
        t0 = time.perf_counter()
        summary = train(job, env)
        log(
            f"training done in {time.perf_counter() - t0:.1f} s: {json.dumps(summary, sort_keys=True, default=str)}"
        )
        packed = _package(config, job, script_path, log) if env.is_main else None
        _barrier()  # the artifact exists before any rank reloads it
        result = _score(config, job, env, log)  # every rank scores its share of the windows
        clean = True
        if not env.is_main or packed is None:
            return {}
        summary = {**packed, "val_loss": result.nll_nats, "val_bpb": result.bpb, "eval": result.to_dict()}
        from golfmodel.atomic import atomic_write_json

        atomic_write_json(Path(job.out_dir) / "submission_result.json", summary)
        return summary
    finally:
        end_process_group(clean=clean)


def _artifact_path(job: Any) -> Path:
    return Path(job.out_dir) / artifact_name(job.model)


def _package(config: dict[str, Any], job: Any, script_path: str, log: _Log) -> dict[str, Any]:
    """Rank 0: τ recalibration, the artifact and the size check; the summary's size fields."""
    from golfmodel.q2bn.size import size_check
    from golfmodel.train.checkpoint import load_final

    out = Path(job.out_dir)
    final = out / "final.pt"
    recal = config["recalibrate"]
    if job.model.quant_plan.qat and recal["mode"] == "act":
        # `mse` is folded into training (the trainer's final exact refit): nothing to recalibrate.
        from golfmodel.train.recalibrate import HOLDOUT_TOKENS, recalibrate

        res = recalibrate(
            final,
            job,
            mode=recal["mode"],
            calib_batches=recal["calib_batches"],
            holdout_tokens=int(recal.get("holdout_tokens", HOLDOUT_TOKENS)),
            out_path=out / "recalibrated.pt",
        )
        log(
            f"tau recalibration ({res.mode}): held-out train bpb {res.bpb_before:.4f} -> {res.bpb_after:.4f}, "
            f"kept={res.kept}"
        )
        final = out / "recalibrated.pt"
    model, _ = load_final(final)
    from golfmodel.q2bn.container import LABEL, export_of, pack_artifact

    tok_id = "byte260" if job.tokenizer == "byte260" else Path(job.tokenizer).stem
    meta = {
        "tokenizer": {"id": tok_id, "vocab_size": job.model.vocab_size},
        "settings_hash": config.get("name") or "train_gpt.py",
    }
    linear_kind = config.get("linear_kind", "q2")
    artifact = pack_artifact(model, out, meta=meta, linear_kind=linear_kind, stem=ARTIFACT_STEM).path
    label = LABEL[export_of(model)]
    size = size_check(artifact, [script_path], int(config.get("budget_bytes", 16_000_000)))
    log(f"Serialized model {label}: {size.artifact_bytes} bytes")
    log(f"Code size: {size.code_bytes} bytes")
    log(
        f"Total submission size {label}: {size.total_bytes} bytes (budget {size.budget_bytes}, {'OK' if size.ok else 'OVER'})"
    )
    return {
        "bytes_total": size.total_bytes,
        "bytes_code": size.code_bytes,
        "bytes_artifact": size.artifact_bytes,
        "artifact": str(artifact),
    }


def _score(config: dict[str, Any], job: Any, env: Any, log: _Log) -> Any:
    """Every rank: reload the model from the artifact alone and score its share of the windows (bf16 on CUDA)."""
    import torch

    from golfmodel.eval import ByteTable, score
    from golfmodel.eval.loading import load_artifact, model_fn_for
    from golfmodel.train.validation import load_val_tokens

    use_cuda = torch.cuda.is_available() and job.train.device != "cpu"
    device = torch.device("cuda", env.local_rank) if use_cuda else torch.device("cpu")
    reloaded, label = load_artifact(_artifact_path(job))
    reloaded = reloaded.to(device)
    ev = config["eval"]
    tokens = load_val_tokens(job.val_shards, ev.get("max_tokens") or 0, job.model.vocab_size)
    table = ByteTable.byte260() if job.tokenizer == "byte260" else ByteTable.from_sentencepiece(job.tokenizer)
    t0 = time.perf_counter()
    res = score(
        model_fn_for(reloaded, device), tokens, table, seq_len=ev["seq_len"], stride=ev.get("stride"),
        rule=ev.get("rule") or "all", batch_size=ev.get("batch_size") or 16, device=device,
        rank=env.rank, world_size=env.world_size,
    )  # fmt: skip
    mode = res.mode if res.stride is None else f"{res.mode} stride {res.stride}"
    log(
        f"final_{label}_roundtrip val_loss:{res.nll_nats:.4f} val_bpb:{res.bpb:.4f} eval_time:{(time.perf_counter() - t0) * 1000:.0f}ms"
    )
    log(
        f"final_{label}_roundtrip_exact val_loss:{res.nll_nats:.8f} val_bpb:{res.bpb:.8f} ({mode}, rule {res.rule}, {res.n_targets} targets, {res.n_bytes} bytes, {env.world_size} rank(s), {'bf16' if use_cuda else 'fp32'})"
    )
    return res


# --- self-test -------------------------------------------------------------------------------------


def _synthetic_shards(folder: Path, *, seed: int = 0) -> None:
    """byte260 train/val shards of random documents (BOS + bytes + 4) in the official format."""
    import numpy as np

    from golfmodel.data.shards import write_shard

    rng = np.random.default_rng(seed)
    for split, n_docs in (("train", 64), ("val", 8)):
        lengths = rng.integers(40, 120, size=n_docs)
        # each document: BOS then lowercase letters (bytes 97..122, ids + 4)
        docs = [np.concatenate([[1], rng.integers(4 + 97, 4 + 123, size=int(n))]) for n in lengths]
        write_shard(folder / f"fineweb_{split}_000000.bin", np.concatenate(docs).astype(np.uint16))


def selftest_config() -> dict[str, Any]:
    """A tiny q2-geode run: 3 steps of 512 tokens, MSE recalibration, non-overlapping scoring."""
    model = {
        "arm": "q2-geode", "vocab_size": 260, "d_model": 32, "depth": 1, "pattern": "GC", "n_heads": 2,
        "n_kv_heads": 1, "mlp_mult": 2.0, "max_seq_len": 32,
    }  # fmt: skip
    train = {
        "seed": 1, "global_batch_tokens": 512, "seq_len": 32, "micro_batch_seqs": 16, "max_steps": 3,
        "val_every": 0, "val_tokens": 256, "checkpoint_every": 0, "device": "cpu", "dtype": "fp32", "threads": 1,
        "log_every": 1,
    }  # fmt: skip
    return submission_config(
        {"model": model, "train": train, "qat": {"tau_refresh_steps": 1}},
        variant="byte260",
        eval_settings={"seq_len": 32, "stride": None, "rule": "all", "batch_size": 8, "max_tokens": 512},
        recalibrate="mse",
        calib_batches=1,
        budget_bytes=16_000_000,
        name="selftest",
    )


def selftest(script_path: str) -> int:
    """Train/pack/reload/score a tiny model on synthetic shards; also the gpt-int8 round trip. 0 = pass."""
    import math

    with tempfile.TemporaryDirectory(prefix="train_gpt-selftest-") as tmp:
        root = Path(tmp)
        _synthetic_shards(root / "data")
        env = {"DATA_PATH": str(root / "data")}
        res = run(selftest_config(), env, script_path, out_root=root, run_id="selftest")
        ok = math.isfinite(res["val_bpb"]) and res["bytes_code"] > 0 and res["bytes_artifact"] > 0
        cfg = selftest_config()
        cfg["job"]["model"].update({"arm": "gpt-int8", "pattern": "GCCC"})
        res8 = run(cfg, env, script_path, out_root=root, run_id="selftest-int8")
        ok = ok and math.isfinite(res8["val_bpb"])
    # the bootstrap names the embedded modules <script>/golfmodel/...
    embedded = __file__.startswith(script_path + os.sep)
    print(f"library: {'embedded in ' + script_path if embedded else 'installed golfmodel at ' + __file__}")
    print(
        f"selftest {'ok' if ok else 'FAILED'}: q2-geode {res['val_bpb']:.4f} bpb, gpt-int8 {res8['val_bpb']:.4f} bpb"
    )
    return 0 if ok else 1


def main(config: dict[str, Any], argv: Sequence[str], environ: Mapping[str, str], script_path: str) -> int:
    """Entry point of train_gpt.py (see the module docstring)."""
    p = argparse.ArgumentParser(prog="train_gpt.py", description="golf submission: train, pack and score")
    p.add_argument("--selftest", action="store_true", help="tiny model on synthetic shards (CPU, seconds)")
    args = p.parse_args(list(argv))
    if args.selftest:
        return selftest(script_path)
    if config.get("placeholder"):
        print(
            "error: this train_gpt.py carries no run configuration (written for a size check); use golf export",
            file=sys.stderr,
        )
        return 2
    out_root = Path(environ.get("OUT_DIR") or ".")
    run_id = environ.get("RUN_ID") or time.strftime("golf_%Y%m%d_%H%M%S")
    run(config, environ, script_path, out_root=out_root, run_id=run_id)
    return 0
