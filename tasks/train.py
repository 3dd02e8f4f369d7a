"""The train stage: RUN.json from the settings, then `torchrun ... -m golfmodel.train` as a subprocess.

The trainer runs in its own process group; its output is streamed line by line into the run
log, and the whole group is killed on `train.timeout_seconds`, on cancellation or on any error
(Prefect's own task timeout would not reach child processes). The work folder is keyed by the
stage's cache key and kept after a failure, so re-running the stage (`golf stage train`)
resumes from the trainer's last checkpoint. Retries on transient faults only (a lost Prefect
API; `golf.tasks.retries`): a crash or a diverged run (exit code 3) would only fail again.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.settings.convert import model_config, probe_config, torchrun_command, train_job
from golf.tasks.cache import StageRecord, StageResult
from golf.tasks.common import cached_stage, logger
from golf.tasks.publish import publish_table, record_of, rows
from golf.tasks.retries import TRANSIENT_RETRIES
from golf.tasks.subproc import run_streaming

OUTPUTS = ("final.pt", "train_summary.json", "metrics.jsonl", "events.jsonl", "RUN.json")
EXIT_CODES = {2: "invalid training job", 3: "training diverged (non-finite loss)"}


def tokenizer_of(tokenise: StageRecord) -> str:
    """The byte-table source of the tokens: the sentencepiece model's path, or "byte260"."""
    tok = tokenise.values.get("tokenizer")
    return str(tokenise.path(tok)) if tok else "byte260"


def shipped_code_bytes() -> int:
    """Bytes of the code a submission ships (the solver leaves room for it in the budget)."""
    from golfmodel.export import code_bytes

    return code_bytes()


def allocated_model(settings: Settings, tokenise: StageRecord, prior: Path | None, work: Path) -> Any:
    """q2-mixed: probe the default plan's shape on training tokens, allocate, size the model for that plan.

    Writes `sensitivity.json` (the probe's table and the allocation) into `work`; the probe's
    settings (quant.probe_steps, quant.mixed_candidates) are part of this stage's key.
    """
    from golf.tasks.cache import write_json_atomic
    from golfmodel.model.allocate import allocate, format_allocation
    from golfmodel.model.sensitivity import format_table, load_train_tokens, probe_tokens_needed, run_probe

    log = logger()
    vocab = tokenise.values["vocab_size"]
    code = shipped_code_bytes() if settings.model.solve else 0
    base = model_config(settings, vocab, code_bytes=code, bigram_logprior=prior)
    probe = probe_config(settings)
    tokens = load_train_tokens(tokenise.paths("train_shards"), vocab, probe_tokens_needed(probe))
    from golfmodel.model.trained_ratio import load_ratios

    ratios = load_ratios(budget_bytes=settings.pack.budget_bytes)
    table = run_probe(base, tokens, probe, bigram_logprior=prior, ratios=ratios)
    log.info("q2-mixed probe (training tokens only):\n%s", format_table(table))
    budget = None if settings.model.solve else parts_budget(settings, base, table)
    alloc = allocate(table, budget_bytes=budget, export=base.quant_plan.export, ratios=ratios)
    log.info("q2-mixed allocation:\n%s", format_allocation(alloc))
    write_json_atomic(
        work / "sensitivity.json", {"sensitivity": table.to_dict(), "allocation": alloc.to_dict()}
    )
    return model_config(settings, vocab, code_bytes=code, bigram_logprior=prior, plan=alloc.plan)


def parts_budget(settings: Settings, base: Any, table: Any) -> float:
    """Fixed shape: the compressed bytes the probed parts may use (the budget less everything else)."""
    from golfmodel.model.budget import predict_bytes
    from golfmodel.model.probe import estimate
    from golfmodel.model.trained_ratio import load_ratios

    ratios, export = load_ratios(budget_bytes=settings.pack.budget_bytes), base.quant_plan.export
    plan = base.quant_plan
    at_base = sum(
        r.payload_bytes * ratios.ratio(export, r.spec)
        for r in table.rows
        if r.spec == plan.spec_for(r.family, r.depth).label
    )
    rest = predict_bytes(estimate(base), export, ratios) - at_base
    return settings.pack.budget_bytes * (1 - settings.pack.margin_frac) - rest


def run_training(settings: Settings, tokenise: StageRecord, bigram: StageRecord, work: Path) -> StageResult:
    """Write RUN.json into `work`, run the trainer there, and return its summary."""
    log = logger()
    prior = bigram.path(bigram.values["logprob"]) if settings.model.bigram_prior else None
    if settings.quant.allocated:
        model = allocated_model(settings, tokenise, prior, work)
    else:
        model = model_config(
            settings,
            tokenise.values["vocab_size"],
            code_bytes=shipped_code_bytes() if settings.model.solve else 0,
            bigram_logprior=prior,
        )
    job = train_job(
        settings,
        vocab_size=tokenise.values["vocab_size"],
        train_shards=tokenise.paths("train_shards"),
        val_shards=tokenise.paths("val_shards"),
        tokenizer=tokenizer_of(tokenise),
        bigram_logprior=prior,
        out_dir=work,
        model=model,
        progress_bar=False,
    )
    job.to_json(work / "RUN.json")
    cmd = torchrun_command(settings, work / "RUN.json", python=sys.executable)
    log.info("train: %s", " ".join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(job.train.threads)}
    run_streaming(
        cmd, on_line=lambda line: log.info("%s", line), timeout=settings.train.timeout_seconds, env=env
    )
    summary: dict[str, Any] = json.loads((work / "train_summary.json").read_text())
    return StageResult(
        values={"final": "final.pt", "metrics": "metrics.jsonl", "model": model.to_dict(),
                "prequant_bpb": summary.get("prequant_val_bpb"),
                "sensitivity": "sensitivity.json" if settings.quant.allocated else None},
        metrics=summary,
        outputs=OUTPUTS + (("sensitivity.json",) if settings.quant.allocated else ()),
        prune=("ckpt",),
    )  # fmt: skip


@task(name="train", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def train(settings: Settings, tokenise: StageRecord, bigram: StageRecord, force: bool = False) -> Any:
    """Train the model with torchrun (its own process group), resuming from a checkpoint if one exists."""
    result = cached_stage(
        "train", settings, {"tokenise": tokenise, "bigram": bigram},
        lambda work: run_training(settings, tokenise, bigram, work), resume=True, force=force,
    )  # fmt: skip
    if (record := record_of(result)) is not None:
        publish_table("golf-train-summary", rows(record.metrics), "train: the trainer's summary")
    return result
