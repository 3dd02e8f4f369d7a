"""Settings → golfmodel dataclasses, one function per component (the boundary of STYLE rule 2).

`golfmodel` never sees pydantic: the task layer calls these functions with the validated
`Settings` and hands the frozen dataclasses to the library.

    job = train_job(settings, vocab_size=1024, train_shards=[...], val_shards=[...],
                    tokenizer="tok.model", bigram_logprior=None, out_dir="...")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from golf.settings.schema import Settings

if TYPE_CHECKING:
    from golfmodel.data.hub import HubConfig
    from golfmodel.data.tokenise import TokeniseConfig
    from golfmodel.model.config import ModelConfig
    from golfmodel.train.config import TrainJob


def model_arm(settings: Settings, plan: Any = None) -> tuple[str, Any]:
    """(ModelConfig.arm, ModelConfig.plan) for `model.arch` + `quant.plan` (or an allocated `plan`).

    The arch's default plan keeps its alias arm name (geode + q2 = "q2-geode", gpt + int8 =
    "gpt-int8", looked up in the plan table's ARM_ALIASES) and no plan, so its config dict,
    hashes and caches are what they were before plans existed.
    """
    from golfmodel.quant.plan import ARM_ALIASES, default_plan_name

    arch = settings.model.arch
    plan = settings.quant.plan if plan is None else plan
    name = plan if isinstance(plan, str) else None
    if plan is None or name == default_plan_name(arch):
        alias = [a for a, pair in ARM_ALIASES.items() if pair == (arch, default_plan_name(arch))]
        return (alias[0] if alias else arch), None
    return arch, plan


def model_config(
    settings: Settings,
    vocab_size: int,
    *,
    code_bytes: int = 0,
    bigram_logprior: str | Path | None = None,
    plan: Any = None,
) -> ModelConfig:
    """The model shape; with `model.solve`, the width comes from the budget solver.

    code_bytes: the shipped code, counted against the budget; bigram_logprior: the bigram stage's
    table, packed by the solver instead of a random one when the model carries the prior.
    plan: a QuantPlan that replaces `quant.plan` (the allocator's q2-mixed choice); with
    `quant.plan = "q2-mixed"` and no `plan`, the shape is the arch's default plan's (the probe's shape).
    """
    from golfmodel.model.config import ModelConfig

    m = settings.model
    if plan is None and settings.quant.allocated:
        arm, cfg_plan = model_arm_default(settings)
    else:
        arm, cfg_plan = model_arm(settings, plan)
    cfg = ModelConfig(
        arm=arm,
        plan=cfg_plan,
        vocab_size=vocab_size,
        d_model=m.d_model,
        depth=m.depth,
        pattern=m.pattern,
        n_heads=m.n_heads,
        n_kv_heads=m.n_kv_heads,
        mlp_mult=m.mlp_mult,
        rope_base=m.rope_base,
        logit_softcap=m.logit_softcap,
        bigram_prior=m.bigram_prior,
        sub_norm=m.sub_norm_on,
        cfc_chunk=m.cfc_chunk,
        cfc_scan=m.cfc_scan,
        max_seq_len=max(settings.train.seq_len, settings.eval.seq_len),
    )
    if m.solve:
        cfg = solve_model(settings, cfg, code_bytes=code_bytes, bigram_logprior=bigram_logprior)
    return cfg


def solve_model(
    settings: Settings, base: ModelConfig, *, code_bytes: int = 0, bigram_logprior: str | Path | None = None
) -> ModelConfig:
    """Width (and heads) from the budget solver for `pack.budget_bytes` at `model.depth` groups/layers.

    The arm, pattern, MLP ratio, bigram prior and the non-shape options are kept from `base`.
    """
    import dataclasses

    from golfmodel.model import budget

    plan = budget.solve(
        base.arm,
        base.vocab_size,
        settings.pack.budget_bytes,
        plan=base.plan,
        margin_frac=settings.pack.margin_frac,
        groups=base.depth,
        pattern=base.pattern,
        bigram_prior=base.bigram_prior,
        code_bytes=code_bytes,
        mlp_mult=base.mlp_mult,
        bigram_logprior=bigram_logprior,
        sub_norm=base.sub_norm,
    )
    keep = ("rope_base", "logit_softcap", "cfc_chunk", "cfc_scan", "max_seq_len")
    return dataclasses.replace(plan.config, **{k: getattr(base, k) for k in keep})


def model_arm_default(settings: Settings) -> tuple[str, Any]:
    """(arm, plan) of the arch's default plan: the shape an allocated plan's probe runs at."""
    from golfmodel.quant.plan import default_plan_name

    return model_arm(settings, default_plan_name(settings.model.arch))


def probe_config(settings: Settings, seq_len: int | None = None) -> Any:
    """The q2-mixed sensitivity probe's config (`golfmodel.model.sensitivity.ProbeConfig`)."""
    from golfmodel.model.sensitivity import ProbeConfig

    q = settings.quant
    return ProbeConfig(
        steps=q.probe_steps,
        seq_len=min(seq_len or settings.train.seq_len, settings.train.seq_len),
        seed=settings.train.seed,
        candidates=tuple(q.mixed_candidates),
    )


def threads_per_process(settings: Settings) -> int:
    """`train.threads`, or the machine's cores shared evenly between the torchrun processes."""
    t = settings.train
    return t.threads or max(1, (os.cpu_count() or 1) // t.nproc)


def train_job(
    settings: Settings,
    *,
    vocab_size: int,
    train_shards: Sequence[str | Path],
    val_shards: Sequence[str | Path],
    tokenizer: str | Path,
    bigram_logprior: str | Path | None,
    out_dir: str | Path,
    model: ModelConfig | None = None,
    progress_bar: bool = True,
) -> TrainJob:
    """The trainer's RUN.json: model, batch/budget, optimiser, schedule, QAT and averaging."""
    from golfmodel.train.config import (
        AveragingConfig,
        OptimConfig,
        QATConfig,
        ScheduleConfig,
        TrainConfig,
        TrainJob,
    )

    t, q = settings.train, settings.quant
    f1, f2, f3 = t.phase_fractions
    return TrainJob(
        model=model if model is not None else model_config(settings, vocab_size),
        train=TrainConfig(
            seed=t.seed,
            global_batch_tokens=t.global_batch_tokens,
            seq_len=t.seq_len,
            micro_batch_seqs=t.micro_batch_seqs,
            max_steps=t.max_steps,
            max_wallclock_seconds=t.max_wallclock_seconds,
            val_every=t.val_every,
            val_tokens=t.val_tokens,
            checkpoint_every=t.checkpoint_every,
            device=t.device,
            dtype=t.dtype,
            compile=t.compile,
            threads=threads_per_process(settings),
            log_every=t.log_every,
            progress_bar=progress_bar,
        ),
        optim=OptimConfig(
            muon_lr=t.muon_lr,
            muon_momentum=t.muon_momentum,
            adam_lr=t.adam_lr,
            weight_decay=t.weight_decay,
            grad_clip=t.grad_clip,
            scale_lr=q.scale_lr,
        ),
        schedule=ScheduleConfig(
            warmup_frac=t.warmup_frac, warmdown_frac=t.warmdown_frac, f1=f1, f2=f2, f3=f3
        ),
        qat=QATConfig(
            enabled=q.qat,
            progressive=q.progressive,
            tau_refresh_steps=q.tau_refresh_steps,
            tau_update=q.tau_update,
            final_refit=q.final_refit,
            ste_masked=q.ste_masked,
            tau_method=q.tau_method,
            tau_std_mult=q.tau_std_mult,
        ),
        averaging=AveragingConfig(kind=t.averaging, ema_decay=t.ema_decay),
        train_shards=tuple(str(p) for p in train_shards),
        val_shards=tuple(str(p) for p in val_shards),
        tokenizer=str(tokenizer),
        bigram_logprior=None if bigram_logprior is None else str(bigram_logprior),
        out_dir=str(out_dir),
    )


def torchrun_command(settings: Settings, job_path: str | Path, python: str = "python") -> list[str]:
    """The command that trains a job: `torchrun --standalone` for several processes, plain python for one.

    torchrun is the script beside `python` when there is one (the same environment), else
    `python -m torch.distributed.run` (what the torchrun script runs).
    """
    n = settings.train.nproc
    if n == 1:
        return [python, "-m", "golfmodel.train", "--job", str(job_path)]
    script = Path(python).parent / "torchrun"
    launcher = (
        [str(script)]
        if Path(python).is_absolute() and script.exists()
        else [python, "-m", "torch.distributed.run"]
    )
    return [
        *launcher,
        "--standalone",
        f"--nproc_per_node={n}",
        "-m",
        "golfmodel.train",
        "--job",
        str(job_path),
    ]


def hub_config(settings: Settings, *, progress: bool = True) -> HubConfig:
    """Where the download stage fetches from (hub or mirror) and how much; docs only when tokenising them."""
    from golfmodel.data.hub import HubConfig

    d, t = settings.data, settings.tokeniser
    return HubConfig(
        repo_id=d.repo_id,
        revision=d.revision,
        variant=d.variant,
        train_shards=d.train_shards,
        val_shards=d.val_shards,
        mirror=d.mirror,
        endpoint=d.endpoint,
        include_docs=t.source == "docs" and t.docs is None,
        max_attempts=d.retries + 1,
        progress=progress,
    )


def tokenise_config(settings: Settings, tokenizer_path: str | Path | None) -> TokeniseConfig:
    """How the tokenise stage turns documents into shards (`tokenizer_path` None: train one, or byte260)."""
    from golfmodel.data.tokenise import TokeniseConfig

    t = settings.tokeniser
    return TokeniseConfig(
        variant=t.variant,
        tokenizer_path=None if t.variant == "byte260" else (Path(tokenizer_path) if tokenizer_path else None),
        num_val_docs=t.num_val_docs,
        shard_tokens=t.shard_tokens,
        workers=t.workers or None,
    )
