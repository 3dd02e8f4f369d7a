"""Minigolf bench configuration: defaults, `BenchConfig` and the ablations (overrides of the q2-geode job)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from golfmodel.bench import stats
from golfmodel.bench.minigolf_arm import (
    EvalSpec,
)

MAIN_ARMS = ("q2-geode", "q2-geode-fp32", "gpt-int8")
# gpt-int8 tokens that take about 10 minutes of training on this CPU: `--calibrate 90` measured
# 27,900 tok/s for the solver's 120,000-byte byte260 int8 shape (one thread, two arms side by
# side, machine shared) → 16.7 M tokens in 600 s; see docs/minigolf.md.
DEFAULT_INT8_TOKENS = 16_000_000
DEFAULT_BUDGET_BYTES = 120_000
MIN_FILL = 0.9  # both arms must fill at least this fraction of the byte budget
BASELINE_KEEP_FLOAT = 65_536  # the challenge baseline keeps float tensors up to this many elements ...
CHALLENGE_BUDGET = 16_000_000  # ... at this budget

Log = Callable[[str], None]


# --- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What the bench runs; every field is a CLI option of `golf bench minigolf`."""

    budget_bytes: int = DEFAULT_BUDGET_BYTES
    match: Literal["gpu-tokens", "time"] = "gpu-tokens"
    int8_tokens: int = DEFAULT_INT8_TOKENS
    seconds: float = 600.0
    seeds: int = 1
    first_seed: int = 1337
    workers: int = 2
    seq_len: int = 256
    global_batch_tokens: int = 8192
    micro_batch_seqs: int = 32
    val_points: int = 10  # periodic validation points per run (the bpb-vs-tokens plot)
    val_tokens: int = 32_768  # tokens of the periodic validation slice (the final scores use all)
    eval: EvalSpec = field(default_factory=EvalSpec)
    recalibrate: Literal["off", "mse", "act"] = "mse"  # the pipeline's τ-recalibration stage on q2-geode
    ablations: tuple[str, ...] = ()
    ablation_scale: float = 0.5  # token budget (or seconds) of ablation runs, relative to the main table
    margin_nats: float = stats.CHALLENGE_MARGIN_NATS
    min_fill: float = MIN_FILL
    checkpoints: int = 4  # checkpoints per run, so an interrupted bench resumes mid-run
    # the trainer's device: cpu for the CPU bench; cuda/auto for units on a GPU work pool
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    # gpt-int8 export: tensors with at most this many elements stay float. None = the baseline's
    # 65,536 scaled by budget/16,000,000, so matrices are int8 rows at any budget (see the docs).
    int8_keep_float: int | None = None
    # the solver's MLP top-up step (gpt; geode's stays 16): one step of 16 at the bench's d ≈ 128 is
    # ~6% of 120 KB, so the int8 arm's fill landed anywhere in 94–100%; 4 lands within ~1.5%
    mlp_step: int = 4
    # SubLN (an RMSNorm before every output projection) in every geode arm's blocks: the q2 default
    # since the study measured it at -0.128 bpb (3 seeds, p = 0.006; docs/decisions/study.md). The
    # gpt-int8 arm is the challenge baseline's module and never has it.
    sub_norm: bool = True

    @property
    def int8_keep_float_numel(self) -> int:
        """The keep-float threshold the gpt-int8 arm is packed (and solved) with."""
        if self.int8_keep_float is not None:
            return self.int8_keep_float
        return max(1, round(BASELINE_KEEP_FLOAT * self.budget_bytes / CHALLENGE_BUDGET))

    def __post_init__(self) -> None:
        def check(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        check(self.budget_bytes > 0, f"budget_bytes must be > 0, got {self.budget_bytes}")
        check(self.match in ("gpu-tokens", "time"), f"match must be gpu-tokens|time, got {self.match!r}")
        check(self.int8_tokens >= 1, f"int8_tokens must be >= 1, got {self.int8_tokens}")
        check(self.seconds > 0, f"seconds must be > 0, got {self.seconds}")
        check(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
        check(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        check(0 < self.ablation_scale <= 1, f"ablation_scale must be in (0, 1], got {self.ablation_scale}")
        check(self.device in ("cpu", "cuda", "auto"), f"device must be cpu|cuda|auto, got {self.device!r}")
        check(self.val_points >= 0, f"val_points must be >= 0, got {self.val_points}")
        check(0 <= self.min_fill <= 1, f"min_fill must be in [0, 1], got {self.min_fill}")
        check(self.mlp_step >= 1, f"mlp_step must be >= 1, got {self.mlp_step}")
        check(
            self.recalibrate in ("off", "mse", "act"),
            f"recalibrate must be off|mse|act, got {self.recalibrate!r}",
        )
        for name in self.ablations:
            check_changes(parse_ablation(name), sub_norm=self.sub_norm)  # raises with the known names


# --- ablations ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Ablation:
    """An override of the q2-geode arm: model fields (re-solved at equal bytes), QAT, averaging, recal."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)  # MODEL_OVERRIDES fields: the solver re-sizes
    qat: dict[str, Any] = field(default_factory=dict)
    averaging: dict[str, Any] = field(default_factory=dict)
    optim: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    quant: dict[str, Any] = field(default_factory=dict)  # QUANT_OVERRIDES: plan (re-solved at equal bytes)
    recalibrate: Literal["off", "mse", "act"] | None = None


ABLATION_NAMES = (
    "gqa-only",
    "oneshot-qat",
    "qat-start",
    "tau-std",
    "plain-ste",
    "no-avg",
    "no-recal",
    "recal-act",
    "bigram",
    "sub-norm",
    "no-sub-norm",
)


# Sections of the trainer job a generic override (`SECTION.FIELD=VALUE[+...]`) may set.
OVERRIDE_SECTIONS = ("model", "qat", "averaging", "optim", "schedule", "quant")
MODEL_OVERRIDES = ("pattern", "bigram_prior", "sub_norm")  # model fields the solver re-sizes at equal bytes
# quant.plan: a geode plan name (q2, ternary, int4, int6, q2-mixed = probe + allocator on the bench's
# training tokens), the shape re-solved for it at equal trained bytes; the q2-mixed probe's knobs.
QUANT_OVERRIDES = ("plan", "probe_steps", "mixed_candidates")
# the pipeline's quant.* QAT settings and their trainer (QATConfig) names; quant.recalibrate is the
# bench's recalibration mode. quant.calib_batches has no bench equivalent (rejected as unknown).
QUANT_TO_QAT = {"qat": "enabled", "progressive": "progressive", "tau_refresh_steps": "tau_refresh_steps",
                "ste_masked": "ste_masked", "tau_method": "tau_method", "tau_std_mult": "tau_std_mult"}  # fmt: skip


def _override_ablation(spec: str) -> Ablation:
    """`optim.muon_lr=0.04+schedule.f1=0.3+...` → Ablation overriding those trainer fields.

    Values are JSON (numbers, true/false, "strings") or bare strings; the trainer's dataclasses
    validate them when the job is built, so a wrong field or value fails before any training.
    """
    parts: dict[str, dict[str, Any]] = {s: {} for s in OVERRIDE_SECTIONS}
    for item in spec.split("+"):
        key, eq, raw = item.partition("=")
        section, _, fname = key.partition(".")
        if not eq or section not in OVERRIDE_SECTIONS or not fname:
            raise ValueError(
                f"ablation {spec!r}: override {item!r} must be SECTION.FIELD=VALUE with SECTION in "
                f"{', '.join(OVERRIDE_SECTIONS)}"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parts[section][fname] = value
    recal = _settings_quant_fields(parts)
    return Ablation(name=spec, description=f"override {spec.replace('+', ', ')}", recalibrate=recal, **parts)


def _settings_quant_fields(parts: dict[str, dict[str, Any]]) -> Any:
    """The pipeline's `quant.*` settings names → the bench job: QAT fields into `qat`, recalibrate apart.

    So `--ablate quant.tau_method=std` means what `golf run --set quant.tau_method=std` means;
    returns the recalibration mode (None when not overridden).
    """
    q = parts["quant"]
    for name in QUANT_TO_QAT:
        if name in q:
            parts["qat"][QUANT_TO_QAT[name]] = q.pop(name)
    recal = q.pop("recalibrate", None)
    if recal is not None and recal not in ("off", "mse", "act"):
        raise ValueError(f"quant.recalibrate must be off, mse or act, got {recal!r}")
    return recal


def parse_ablation(spec: str) -> Ablation:
    """`NAME`, `qat-start=F` or `SECTION.FIELD=V[+...]` → Ablation; raises ValueError naming the known ones."""
    if "." in spec.partition("=")[0]:
        ab = _override_ablation(spec)
        _validate_overrides(ab)
        return ab
    name, _, arg = spec.partition("=")
    if name == "gqa-only":
        return Ablation(
            name=spec, description="all-GQA groups (GGGG) at equal bytes", model={"pattern": "GGGG"}
        )
    if name == "oneshot-qat":
        return Ablation(name=spec, description="QAT on for every group at once", qat={"progressive": False})
    if name == "qat-start":
        f = float(arg) if arg else 0.0
        if not 0 <= f <= 1:
            raise ValueError(f"ablation qat-start={arg}: the start fraction must be in [0, 1]")
        return Ablation(name=f"qat-start={f:g}", description=f"QAT starts at p={f:g}", qat={"start_frac": f})
    if name == "tau-std":
        mult = float(arg) if arg else 0.98
        return Ablation(
            name=spec if arg else "tau-std",
            description=f"τ = {mult:g}·row std (no MSE search)",
            qat={"tau_method": "std", "tau_std_mult": mult},
        )
    if name == "plain-ste":
        return Ablation(name=spec, description="plain STE (no |w| ≤ 3τ mask)", qat={"ste_masked": False})
    if name == "no-avg":
        return Ablation(name=spec, description="no weight averaging", averaging={"kind": "none"})
    if name == "no-recal":
        return Ablation(name=spec, description="no τ recalibration after training", recalibrate="off")
    if name == "recal-act":
        return Ablation(name=spec, description="τ recalibration weighted by activations", recalibrate="act")
    if name == "sub-norm":
        return Ablation(
            name=spec,
            description="RMSNorm before every output projection (SubLN), at equal bytes",
            model={"sub_norm": True},
        )
    if name == "no-sub-norm":
        return Ablation(
            name=spec,
            description="no RMSNorm before the output projections (the spec's block), at equal bytes",
            model={"sub_norm": False},
        )
    if name == "bigram":
        return Ablation(
            name=spec,
            description="bigram log-prior in the logits, at equal bytes",
            model={"bigram_prior": True},
        )
    raise ValueError(
        f"unknown ablation {spec!r}; known: {', '.join(ABLATION_NAMES)} (qat-start=F, tau-std=M), all, "
        "or trainer overrides SECTION.FIELD=VALUE[+...]"
    )


def _validate_overrides(ab: Ablation) -> None:
    """Build the overridden trainer configs once, so a bad field or value fails at parse time."""
    from golfmodel.train.config import AveragingConfig, OptimConfig, QATConfig, ScheduleConfig

    unknown = sorted(set(ab.model) - set(MODEL_OVERRIDES))
    if unknown:
        raise ValueError(
            f"ablation {ab.name!r}: model overrides must be among {', '.join(MODEL_OVERRIDES)}, got {unknown}"
        )
    unknown = sorted(set(ab.quant) - set(QUANT_OVERRIDES))
    if unknown:
        raise ValueError(
            f"ablation {ab.name!r}: quant overrides must be among {', '.join(QUANT_OVERRIDES)}, got {unknown}"
        )
    if "plan" in ab.quant:
        from golfmodel.quant.plan import plan_names

        if ab.quant["plan"] not in plan_names():
            raise ValueError(
                f"ablation {ab.name!r}: quant.plan must be one of {plan_names()}, got {ab.quant['plan']!r}"
            )
    if isinstance(ab.quant.get("mixed_candidates"), str):  # "q2,int4,int8" on the command line
        object.__setattr__(
            ab, "quant", {**ab.quant, "mixed_candidates": ab.quant["mixed_candidates"].split(",")}
        )

    for cls, values in (
        (QATConfig, ab.qat),
        (AveragingConfig, ab.averaging),
        (OptimConfig, ab.optim),
        (ScheduleConfig, ab.schedule),
    ):
        try:
            cls(**values)
        except (TypeError, ValueError) as e:  # unknown field / invalid value
            raise ValueError(f"ablation {ab.name!r}: {e}") from None


def check_changes(ab: Ablation, *, sub_norm: bool) -> None:
    """Raise when an ablation only sets the SubLN switch to the bench's own block (a row equal to its base)."""
    others = (ab.qat, ab.averaging, ab.optim, ab.schedule, ab.quant, ab.recalibrate)
    if ab.model == {"sub_norm": sub_norm} and not any(x for x in others):
        raise ValueError(
            f"ablation {ab.name!r} changes nothing: the bench's geode blocks already have sub_norm={sub_norm} "
            f"(--sub-norm {'on' if sub_norm else 'off'}); the lever is {'no-sub-norm' if sub_norm else 'sub-norm'}"
        )


def expand_ablations(names: Sequence[str], *, sub_norm: bool = True) -> tuple[str, ...]:
    """Split comma lists and expand `all` (the SubLN toggle that changes `sub_norm`); keeps order, drops duplicates."""
    every = tuple(n for n in ABLATION_NAMES if n != ("sub-norm" if sub_norm else "no-sub-norm"))
    out: list[str] = []
    for item in names:
        for name in (s.strip() for s in item.split(",")):
            if not name:
                continue
            for n in every if name == "all" else (name,):
                if n not in out:
                    out.append(n)
    return tuple(out)
