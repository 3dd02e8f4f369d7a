"""Trainer configuration: frozen keyword-only dataclasses and the `TrainJob` JSON (RUN.json).

The task layer (`golf.tasks`) turns validated settings into a `TrainJob`, writes it with
`TrainJob.to_json()` into the run folder, and the torchrun subprocess reads it back with
`TrainJob.from_json()`. Every dataclass validates its own fields in `__post_init__` and
names the field on failure; nothing here reads the environment.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from golfmodel.model.config import ModelConfig


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """Muon for 2-D block matrices, AdamW for everything else (embeddings, norms, gains, log_dt, biases)."""

    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    ns_steps: int = 5
    adam_lr: float = 0.008
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled; applied to matrices only (Muon and 2-D AdamW params)
    grad_clip: float = 1.0  # global grad-norm clip; 0 = off
    scale_lr: float = 1e-3  # AdamW LR of learned quantiser scales (`scale = "learned"`), no weight decay

    def __post_init__(self) -> None:
        _check(self.muon_lr > 0, f"optim.muon_lr must be > 0, got {self.muon_lr}")
        _check(
            0 <= self.muon_momentum < 1, f"optim.muon_momentum must be in [0, 1), got {self.muon_momentum}"
        )
        _check(self.ns_steps >= 1, f"optim.ns_steps must be >= 1, got {self.ns_steps}")
        _check(self.adam_lr > 0, f"optim.adam_lr must be > 0, got {self.adam_lr}")
        _check(
            len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
            f"optim.adam_betas must be two numbers in [0, 1), got {self.adam_betas}",
        )
        _check(self.adam_eps > 0, f"optim.adam_eps must be > 0, got {self.adam_eps}")
        _check(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        _check(self.scale_lr > 0, f"optim.scale_lr must be > 0, got {self.scale_lr}")


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """LR shape and the three phases, all as fractions of progress p in [0, 1] (SPEC §7)."""

    warmup_frac: float = 0.02
    warmdown_frac: float = 0.3
    f1: float = 0.1  # phase 1: full precision
    f2: float = 0.6  # phase 2: QAT switched on group by group, deepest first
    f3: float = 0.3  # phase 3: everything quantised, warm-down, weight averaging

    def __post_init__(self) -> None:
        for name in ("warmup_frac", "warmdown_frac", "f1", "f2", "f3"):
            v = getattr(self, name)
            _check(0 <= v <= 1, f"schedule.{name} must be in [0, 1], got {v}")
        _check(
            abs(self.f1 + self.f2 + self.f3 - 1.0) <= 1e-6,
            f"schedule.f1 + f2 + f3 must sum to 1, got {self.f1} + {self.f2} + {self.f3}",
        )
        _check(
            self.warmup_frac + self.warmdown_frac <= 1 + 1e-9,
            "schedule.warmup_frac + schedule.warmdown_frac must be <= 1 (warm-up and warm-down may not overlap)",
        )


@dataclass(frozen=True, kw_only=True)
class QATConfig:
    """Quantisation-aware training of the Q2Linear layers (ignored by models without any)."""

    enabled: bool = True  # False = the fp32 twin: same schedule, QAT never switched on
    progressive: bool = True  # group by group, deepest first; False = all groups at once
    # exact re-fit of the fitted τ of QAT-on layers every N steps; 0 = only at QAT switches, the start
    # of phase 3 and the end. Between exact refits `tau_update` keeps τ current (with "none" and 50
    # the minigolf q2 arm lost 0.09 bpb to stale τ). Default 1 = every step: Lloyd-only (0) measured
    # +0.021 bpb on minigolf (docs/minigolf.md); the GPU presets use 0 (the sort is what costs there).
    tau_refresh_steps: int = 1
    # every step without an exact refit: "lloyd" = one Lloyd step per row (no sort, no host sync;
    # compiled on CUDA), "none" = τ stays as last fitted. Learned scales are the optimiser's either way.
    tau_update: Literal["lloyd", "none"] = "lloyd"
    # τ on the final (averaged) weights: "exact" = the exact solve; "lloyd" = Lloyd steps from the
    # τ training tracked (tau_update="lloyd" only; std layers and the rest get the exact solve)
    final_refit: Literal["exact", "lloyd"] = "exact"
    ste_masked: bool = True  # straight-through estimator masked to |w| <= 3τ (else plain STE)
    tau_method: Literal["mse", "std"] = "mse"  # τ by squared-error search, or a fixed multiple of the row std
    tau_std_mult: float = 0.98
    start_frac: float | None = None  # QAT starts here instead of at f1 (progressive spacing ends at f1+f2)

    def __post_init__(self) -> None:
        _check(
            self.tau_refresh_steps >= 0, f"qat.tau_refresh_steps must be >= 0, got {self.tau_refresh_steps}"
        )
        _check(
            self.tau_update in ("lloyd", "none"),
            f"qat.tau_update must be 'lloyd' or 'none', got {self.tau_update!r}",
        )
        _check(
            self.final_refit in ("exact", "lloyd"),
            f"qat.final_refit must be 'exact' or 'lloyd', got {self.final_refit!r}",
        )
        _check(
            self.tau_method in ("mse", "std"),
            f"qat.tau_method must be 'mse' or 'std', got {self.tau_method!r}",
        )
        _check(self.tau_std_mult > 0, f"qat.tau_std_mult must be > 0, got {self.tau_std_mult}")
        if self.start_frac is not None:
            _check(0 <= self.start_frac <= 1, f"qat.start_frac must be in [0, 1], got {self.start_frac}")


@dataclass(frozen=True, kw_only=True)
class AveragingConfig:
    """Weight averaging of the fp32 shadow weights, from the start of phase 3 (or `start_frac`)."""

    kind: Literal["ema", "swa", "none"] = "ema"
    ema_decay: float = 0.99
    start_frac: float | None = None  # None = the start of phase 3 (f1 + f2)
    every: int = 1  # update the average every N steps

    def __post_init__(self) -> None:
        _check(self.kind in ("ema", "swa", "none"), f"averaging.kind must be ema|swa|none, got {self.kind!r}")
        _check(0 < self.ema_decay < 1, f"averaging.ema_decay must be in (0, 1), got {self.ema_decay}")
        _check(self.every >= 1, f"averaging.every must be >= 1, got {self.every}")
        if self.start_frac is not None:
            _check(
                0 <= self.start_frac <= 1, f"averaging.start_frac must be in [0, 1], got {self.start_frac}"
            )


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Batch shape, budgets, device and housekeeping of one training run.

    `debug_nan_at_step` and `debug_rank_state` are test hooks: the first replaces the loss of that
    step (numbered from 1) by NaN, the second makes every rank write a hash of its final weights.
    """

    seed: int = 1337
    global_batch_tokens: int = 524_288  # per optimiser step, independent of the world size
    seq_len: int = 1024
    micro_batch_seqs: int = 64  # sequences per rank per forward; gradient accumulation fills the rest
    max_steps: int | None = None  # None or 0 = no step budget
    max_wallclock_seconds: float | None = None  # None or 0 = no wall-clock budget
    val_every: int = 0  # validation bpb every N steps on the first `val_tokens` val tokens; 0 = off
    val_tokens: int = 32_768  # 0 = the whole validation set
    val_batch_seqs: int = 16
    final_val: bool = True  # score the final weights on the val slice (train_summary.json)
    checkpoint_every: int = 0  # atomic checkpoint every N steps; 0 = off
    keep_checkpoints: int = 2
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["fp32", "bf16", "auto"] = "auto"  # bf16 autocast applies on CUDA only; CPU runs fp32
    compile: bool = False  # torch.compile (CUDA only)
    backend: Literal["gloo", "nccl", "auto"] = "auto"  # auto = nccl on CUDA, gloo on CPU
    threads: int = 0  # torch intra-op threads per process; 0 = leave torch's default
    log_every: int = 10
    progress_bar: bool = True  # tqdm on rank 0 (stderr), shown only when stderr is a TTY
    debug_nan_at_step: int | None = None  # TEST HOOK: force a NaN loss at this step
    debug_rank_state: bool = False  # TEST HOOK: each rank writes debug/rank_<r>.json with its weights' sha256

    def __post_init__(self) -> None:
        for name in ("global_batch_tokens", "seq_len", "micro_batch_seqs", "log_every", "val_batch_seqs"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, f"train.{name} must be an integer >= 1, got {v!r}")
        _check(
            self.global_batch_tokens % (self.seq_len * self.micro_batch_seqs) == 0,
            f"train.global_batch_tokens={self.global_batch_tokens} must be a multiple of "
            f"seq_len*micro_batch_seqs={self.seq_len * self.micro_batch_seqs}",
        )
        _check(
            self.max_steps is None or self.max_steps >= 0,
            f"train.max_steps must be >= 0, got {self.max_steps}",
        )
        _check(
            self.max_wallclock_seconds is None or self.max_wallclock_seconds >= 0,
            f"train.max_wallclock_seconds must be >= 0, got {self.max_wallclock_seconds}",
        )
        _check(
            bool(self.max_steps) or bool(self.max_wallclock_seconds),
            "train: at least one of max_steps / max_wallclock_seconds must be set (> 0), or the run never stops",
        )
        for name in ("val_every", "val_tokens", "checkpoint_every", "threads"):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 0, f"train.{name} must be an integer >= 0, got {v!r}")
        _check(
            self.keep_checkpoints >= 1, f"train.keep_checkpoints must be >= 1, got {self.keep_checkpoints}"
        )
        _check(
            self.device in ("cpu", "cuda", "auto"), f"train.device must be cpu|cuda|auto, got {self.device!r}"
        )
        _check(
            self.dtype in ("fp32", "bf16", "auto"), f"train.dtype must be fp32|bf16|auto, got {self.dtype!r}"
        )
        _check(
            self.backend in ("gloo", "nccl", "auto"),
            f"train.backend must be gloo|nccl|auto, got {self.backend!r}",
        )

    @property
    def batch_seqs(self) -> int:
        """Sequences per optimiser step (all ranks together)."""
        return self.global_batch_tokens // self.seq_len

    def grad_accum(self, world_size: int) -> int:
        """Micro-steps per optimiser step on each rank; raises if the batch does not split evenly."""
        per = self.seq_len * self.micro_batch_seqs * world_size
        if self.global_batch_tokens % per:
            raise ValueError(
                f"train.global_batch_tokens={self.global_batch_tokens} is not a multiple of "
                f"seq_len*micro_batch_seqs*world_size={per} (world_size={world_size})"
            )
        return self.global_batch_tokens // per


@dataclass(frozen=True, kw_only=True)
class TrainJob:
    """Everything one training run needs: written as RUN.json, read by `python -m golfmodel.train`."""

    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    qat: QATConfig = field(default_factory=QATConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    train_shards: tuple[str, ...]
    val_shards: tuple[str, ...] = ()
    tokenizer: str = "byte260"  # byte table for val bpb: "byte260" or a sentencepiece .model path
    bigram_logprior: str | None = None  # .npz/.npy log-probability table (V, V) when model.bigram_prior
    out_dir: str

    def __post_init__(self) -> None:
        # lists from JSON become tuples so the job stays hashable and frozen
        object.__setattr__(self, "train_shards", tuple(str(s) for s in self.train_shards))
        object.__setattr__(self, "val_shards", tuple(str(s) for s in self.val_shards))
        _check(len(self.train_shards) > 0, "job.train_shards must list at least one shard")
        _check(bool(self.out_dir), "job.out_dir must be set")
        _check(bool(self.tokenizer), "job.tokenizer must be 'byte260' or a sentencepiece model path")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the model through `ModelConfig.to_dict`)."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "model":
                d[f.name] = v.to_dict()
            elif dataclasses.is_dataclass(v):
                d[f.name] = _plain(dataclasses.asdict(v))
            else:
                d[f.name] = _plain(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainJob:
        """Inverse of `to_dict`; unknown keys raise with their dotted name."""
        from golfmodel.model.config import ModelConfig

        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        _check(not unknown, f"job: unknown key(s) {sorted(unknown)}")
        _check("model" in d, "job.model is required")
        kwargs: dict[str, Any] = {"model": ModelConfig.from_dict(d.pop("model"))}
        sections = {
            "train": TrainConfig,
            "optim": OptimConfig,
            "schedule": ScheduleConfig,
            "qat": QATConfig,
            "averaging": AveragingConfig,
        }
        for name, typ in sections.items():
            if name in d:
                kwargs[name] = _build(typ, d.pop(name), name)
        kwargs.update(d)
        return cls(**kwargs)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the job; with `path`, also written there atomically."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if path is not None:
            from golfmodel.train.files import atomic_write_text

            atomic_write_text(Path(path), text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TrainJob:
        """Parse a job from JSON text or from a file path."""
        s = str(text_or_path)
        if not s.lstrip().startswith("{"):
            p = Path(s)
            try:
                s = p.read_text()
            except OSError as e:
                raise ValueError(f"cannot read job file {p}: {e}") from e
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"job JSON is malformed: {e}") from e
        _check(isinstance(d, dict), "job JSON must be an object")
        return cls.from_dict(d)


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"non-finite number {v} cannot be written to JSON")
    return v


def _build(typ: type, d: Any, section: str) -> Any:
    """Construct a config dataclass from a dict, turning JSON lists into the declared tuples."""
    _check(isinstance(d, dict), f"job.{section} must be an object")
    names = {f.name: f for f in dataclasses.fields(typ)}
    unknown = set(d) - set(names)
    _check(not unknown, f"job.{section}: unknown key(s) {sorted(unknown)}")
    hints = typing.get_type_hints(typ)
    kwargs = {}
    for k, v in d.items():
        hint = hints[k]
        origin = typing.get_origin(hint)
        if isinstance(v, list) and (origin is tuple or _is_tuple_union(hint)):
            v = tuple(v)
        kwargs[k] = v
    return typ(**kwargs)


def _is_tuple_union(hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(typing.get_origin(a) is tuple for a in typing.get_args(hint))
    return False
