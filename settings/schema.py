"""The settings tree: one pydantic model per pipeline section, validated before any work runs.

Every field says what it is for and its allowed range; cross-field checks raise with the
field's dotted path. This module only *declares* settings; `settings/load.py` resolves them
(TOML preset → `GOLF_` environment → CLI `--set`), and `settings/convert.py` turns them into
the frozen dataclasses that `golfmodel` takes.

Field paths that scripts outside the code rely on are stable: `data.mirror`, `data.variant`,
`train.max_wallclock_seconds`, `train.max_steps`, `pack.budget_bytes` (pinned by a test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from golfmodel.quant.plan import ALLOCATED_PLANS, QuantPlan, plan_names  # plain Python: no torch

_STRICT = ConfigDict(extra="forbid", frozen=True, validate_default=True)

STAGES: tuple[str, ...] = (
    "download",
    "tokenise",
    "bigram",
    "train",
    "recalibrate",
    "pack",
    "size_check",
    "validate",
    "report",
)


class DataSettings(BaseModel):
    """Where the FineWeb shards come from (the challenge's hub repo or a local mirror of it)."""

    model_config = _STRICT

    repo_id: str = Field("willdepueoai/parameter-golf", description="Hub dataset repository.")
    revision: str = Field(
        "main", description="Branch, tag or 40-hex commit SHA; the resolved commit is recorded."
    )
    variant: str = Field(
        "sp1024",
        pattern=r"^(sp\d+|byte260)$",
        description="Dataset variant on the hub: fineweb10B_<variant> (sp1024 for the challenge).",
    )
    mirror: Path | None = Field(
        None,
        description="Local folder laid out like the hub repo root (holds datasets/manifest.json); "
        "used instead of the hub when set.",
    )
    endpoint: str | None = Field(
        None, description="Hub endpoint URL (HF_ENDPOINT), e.g. a loopback test server."
    )
    train_shards: int = Field(
        1, ge=1, le=1000, description="How many training shards to fetch (1e8 tokens each on the hub)."
    )
    val_shards: int | None = Field(
        None, ge=1, description="Cap on validation shards (None = all; the challenge scores all)."
    )
    retries: int = Field(
        4, ge=0, le=20, description="Retries on network faults (never on 404 or checksum errors)."
    )


class TokeniserSettings(BaseModel):
    """How documents become tokens: reuse the hub's shards, convert them to bytes, or tokenise docs."""

    model_config = _STRICT

    variant: str = Field(
        "sp1024",
        pattern=r"^(sp\d+|byte260)$",
        description="Token variant the model trains on: sp<V> (sentencepiece) or byte260 (UTF-8 bytes + 4).",
    )
    source: Literal["shards", "docs"] = Field(
        "shards",
        description="shards: use the downloaded sp shards (decoded to bytes for byte260); docs: tokenise a document source.",
    )
    docs: str | None = Field(
        None,
        description="Document source when source=docs: a JSONL or Parquet path, or 'fineweb:<config>' "
        "(datasets streaming); None = the repo's docs_selected.jsonl.",
    )
    text_field: str = Field("text", description="Text column/field of the document source.")
    tokenizer: Literal["hub", "train"] = Field(
        "hub",
        description="sp variants: the hub's tokenizer model, or train one on the training docs (official recipe).",
    )
    num_val_docs: int = Field(
        50_000,
        ge=0,
        description="Validation = the first num_val_docs documents in source order (50,000 for the challenge).",
    )
    shard_tokens: int = Field(
        100_000_000, ge=1024, description="Tokens per written shard (1e8 like the official shards)."
    )
    workers: int = Field(0, ge=0, le=256, description="Tokeniser processes; 0 = all cores.")

    @property
    def vocab_size(self) -> int:
        """Vocabulary size implied by the variant (derived once, here)."""
        return 260 if self.variant == "byte260" else int(self.variant[2:])


class ModelSettings(BaseModel):
    """Model shape. `solve=true` lets the budget solver pick width and depth for pack.budget_bytes."""

    model_config = _STRICT

    arch: Literal["geode", "gpt"] = Field(
        "geode",
        description="Architecture: geode ([GQA, CfC, CfC, CfC] x G, the product) or gpt (the naive "
        "baseline's). An arm is arch + quant.plan (q2-geode = geode + q2, gpt-int8 = gpt + int8).",
    )
    d_model: int = Field(256, ge=16, le=8192, multiple_of=16, description="Width (step 16).")
    depth: int = Field(1, ge=1, le=64, description="Geode groups for q2-geode, layers for gpt-int8.")
    pattern: str = Field("GCCC", pattern=r"^[GC]+$", description="Blocks of one Geode group: G=GQA, C=CfC.")
    n_heads: int = Field(4, ge=1, le=128, description="Attention query heads.")
    n_kv_heads: int = Field(
        2, ge=1, le=128, description="Attention key/value heads (GQA: fewer than n_heads)."
    )
    mlp_mult: float = Field(2.0, gt=0, le=16, description="MLP hidden width as a multiple of d_model.")
    rope_base: float = Field(10_000.0, gt=0, description="RoPE frequency base.")
    logit_softcap: float = Field(30.0, gt=0, description="Logit soft-cap: cap·tanh(logits/cap).")
    bigram_prior: bool = Field(
        False, description="Add the bigram log-prior table to the logits (stored int8 in the artifact)."
    )
    sub_norm: bool | None = Field(
        None,
        description="SubLN: an RMSNorm before each output projection. null = the architecture's default: on for "
        "geode (the study: -0.128 bpb at 120 KB, 3 seeds, p = 0.006; docs/decisions/study.md), off for gpt "
        "(the challenge baseline's block); false = the spec's geode block; true is refused for gpt.",
    )
    cfc_chunk: int = Field(64, ge=1, le=4096, description="Chunk length of the CfC parallel scan.")
    cfc_scan: Literal["auto", "torch", "triton"] = Field(
        "auto",
        description="CfC scan: auto = the fused Triton kernel on CUDA and the chunked torch scan elsewhere; "
        "torch or triton forces one (the run log says which ran).",
    )
    solve: bool = Field(
        False, description="Pick d_model/depth with the budget solver to fill pack.budget_bytes."
    )

    @model_validator(mode="after")
    def _heads(self) -> ModelSettings:
        if self.d_model % self.n_heads:
            raise ValueError(f"model.n_heads={self.n_heads} must divide model.d_model={self.d_model}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("model.d_model/model.n_heads (head_dim) must be even for RoPE")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"model.n_kv_heads={self.n_kv_heads} must divide model.n_heads={self.n_heads}")
        if self.sub_norm and self.arch != "geode":
            raise ValueError(f"model.sub_norm applies to geode blocks only, got model.arch={self.arch!r}")
        return self

    @property
    def sub_norm_on(self) -> bool:
        """SubLN resolved: the explicit setting, else on for geode and off for gpt."""
        return self.arch == "geode" if self.sub_norm is None else self.sub_norm


class QuantSettings(BaseModel):
    """The quantisation plan, Q² quantisation-aware training and the τ-recalibration stage."""

    model_config = _STRICT

    plan: str | dict[str, Any] | None = Field(
        None,
        description="Quantisation plan: a name (q2, q2-learned = q2 with learned per-row scales, ternary, "
        "int4, int6, int8, q2-mixed = the allocator's, chosen by a sensitivity probe in the train stage) "
        "or an inline table "
        "(QuantPlan form: name, rules = [{family, depth, spec}], ...); None = the arch's default "
        "(geode: q2, gpt: int8).",
    )
    probe_steps: int = Field(
        60, ge=1, le=100_000, description="q2-mixed: AdamW steps of the sensitivity probe's fp32 twin."
    )
    mixed_candidates: tuple[str, ...] = Field(
        ("q2", "fp16"),
        min_length=1,
        description="q2-mixed: spec labels the allocator chooses from per part (e.g. q2, fp16, int4, int4g64, "
        "int8; Q2BN version 2 stores every kind).",
    )
    qat: bool = Field(
        True, description="Quantisation-aware training (off = the fp32 twin; gpt-int8 ignores it)."
    )
    progressive: bool = Field(
        True, description="Switch QAT on group by group, deepest first (else all at once)."
    )
    tau_refresh_steps: int = Field(
        1,
        ge=0,
        description="Exact τ re-fit every N steps while QAT is on (1 = every step; 0 = only at QAT switches, "
        "phase 3 and the end, tau_update keeping τ current in between: no sort on the hot path).",
    )
    tau_update: Literal["lloyd", "none"] = Field(
        "lloyd",
        description="Between exact re-fits: one Lloyd step per row every step (no sort, no host sync), or none "
        "(a stale τ costs bpb, see docs/minigolf.md).",
    )
    final_refit: Literal["exact", "lloyd"] = Field(
        "exact",
        description="τ on the final averaged weights: the exact solve, or Lloyd steps from the tracked τ (with "
        "tau_update=lloyd; the exact solve can jump to a τ the network was not trained with, docs/minigolf.md).",
    )
    scale_lr: float = Field(
        1e-3, gt=0, le=1, description="AdamW LR of learned quantiser scales (plans with scale = learned)."
    )
    tau_method: Literal["mse", "std"] = Field(
        "mse", description="τ by squared-error search, or a fixed multiple of the row std."
    )
    tau_std_mult: float = Field(0.98, gt=0, le=4, description="Multiplier for tau_method=std.")
    ste_masked: bool = Field(
        True, description="Straight-through estimator masked to |w| <= 3τ (else plain STE)."
    )
    recalibrate: Literal["off", "mse", "act"] = Field(
        "mse", description="τ recalibration after training: off, plain squared error, or activation-weighted."
    )
    calib_batches: int = Field(
        4, ge=1, le=1000, description="Training batches for activation-weighted recalibration."
    )

    @field_validator("plan")
    @classmethod
    def _plan(cls, v: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(v, str) and v not in plan_names():
            raise ValueError(f"quant.plan: unknown plan {v!r}; named plans are {list(plan_names())}")
        if isinstance(v, dict):
            QuantPlan.from_dict(v, where="quant.plan")  # raises naming the rule
        return v

    @field_validator("mixed_candidates")
    @classmethod
    def _candidates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from golfmodel.quant.spec import QuantSpec

        for label in v:
            try:
                QuantSpec.parse(label)
            except ValueError as e:
                raise ValueError(f"quant.mixed_candidates: {label!r}: {e}") from None
        return v

    @property
    def allocated(self) -> bool:
        """True when the plan is chosen by the allocator in the train stage (q2-mixed)."""
        return isinstance(self.plan, str) and self.plan in ALLOCATED_PLANS


class TrainSettings(BaseModel):
    """Three-phase, wall-clock-budgeted training (SPEC §7)."""

    model_config = _STRICT

    seed: int = Field(1337, ge=0, description="Seed for init and data order.")
    max_wallclock_seconds: float = Field(
        600.0, gt=0, description="Training stops at this wall-clock budget (600 for the challenge)."
    )
    max_steps: int = Field(
        20_000, ge=1, description="Step budget (reproducible tests use this, not wall-clock)."
    )
    seq_len: int = Field(1024, ge=8, le=65_536, description="Training sequence length.")
    global_batch_tokens: int = Field(
        524_288, ge=8, description="Tokens per optimiser step, independent of nproc."
    )
    micro_batch_seqs: int = Field(
        64, ge=1, description="Sequences per rank per forward (gradient accumulation fills the rest)."
    )
    nproc: int = Field(1, ge=1, le=64, description="torchrun processes (8 for the challenge run).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")
    dtype: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto = bf16 autocast on GPU, fp32 on CPU."
    )
    compile: bool = Field(False, description="torch.compile the model (GPU runs).")
    threads: int = Field(
        0, ge=0, le=256, description="torch intra-op threads per process; 0 = cores / nproc."
    )
    muon_lr: float = Field(0.02, gt=0, le=1, description="Muon learning rate (block matrices).")
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="Muon (Nesterov) momentum.")
    adam_lr: float = Field(
        0.008, gt=0, le=1, description="AdamW learning rate (embeddings, norms, gains, time constants)."
    )
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, ge=0, description="Global grad-norm clip (0 = off).")
    warmup_frac: float = Field(0.02, ge=0, lt=1, description="Linear LR warm-up, fraction of progress.")
    warmdown_frac: float = Field(
        0.3, ge=0, le=1, description="Linear LR warm-down at the end, fraction of progress."
    )
    phase_fractions: tuple[float, float, float] = Field(
        (0.1, 0.6, 0.3),
        description="Phase 1 (full precision), 2 (progressive QAT), 3 (all quantised) fractions.",
    )
    averaging: Literal["ema", "swa", "none"] = Field("ema", description="Weight averaging in phase 3.")
    ema_decay: float = Field(0.99, gt=0, lt=1, description="EMA decay per step.")
    val_every: int = Field(0, ge=0, description="Validation bpb every N steps on a small slice (0 = off).")
    val_tokens: int = Field(32_768, ge=64, description="Tokens of the periodic validation slice.")
    checkpoint_every: int = Field(200, ge=1, description="Atomic checkpoint every N steps (resume on retry).")
    log_every: int = Field(10, ge=1, description="Metrics line every N steps.")
    timeout_seconds: float = Field(
        3600.0, gt=0, description="Hard limit for the torchrun subprocess (the task kills its group)."
    )

    @field_validator("phase_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(
                f"train.phase_fractions must be three non-negative numbers summing to 1, got {v}"
            )
        return v

    @model_validator(mode="after")
    def _batch(self) -> TrainSettings:
        per_step = self.seq_len * self.micro_batch_seqs * self.nproc
        if self.global_batch_tokens % per_step:
            raise ValueError(
                f"train.global_batch_tokens={self.global_batch_tokens} must be a multiple of "
                f"seq_len*micro_batch_seqs*nproc={per_step}"
            )
        if self.warmup_frac + self.warmdown_frac > 1:
            raise ValueError("train.warmup_frac + train.warmdown_frac must be <= 1")
        return self


class PackSettings(BaseModel):
    """Q2BN packing and the size check."""

    model_config = _STRICT

    budget_bytes: int = Field(
        16_000_000, gt=0, description="Artifact + shipped code must fit in this many bytes."
    )
    linear_kind: Literal["q2", "fp32"] = Field(
        "q2", description="Storage of Q2Linear weights (fp32 = the fp32 twin)."
    )
    margin_frac: float = Field(
        0.002,
        ge=0,
        lt=0.5,
        description="Budget fraction the solver keeps free below pack.budget_bytes (its size model predicts "
        "trained bytes; the size check stays the final word).",
    )


class EvalSettings(BaseModel):
    """Validation scoring (SPEC §3) on the model reloaded from the packed artifact."""

    model_config = _STRICT

    seq_len: int = Field(1024, ge=8, le=65_536, description="Evaluation window length.")
    stride: int | None = Field(
        64, ge=1, description="Sliding-window stride (None = non-overlapping windows)."
    )
    rule: Literal["all", "challenge"] = Field(
        "all", description="all: score all N−1 targets; challenge: the first ((N−1)//seq_len)·seq_len."
    )
    batch_size: int = Field(16, ge=1, le=4096, description="Windows per forward pass.")
    max_tokens: int | None = Field(
        None, ge=2, description="Score only the first N validation tokens (None = all)."
    )

    @model_validator(mode="after")
    def _stride(self) -> EvalSettings:
        if self.stride is not None and self.stride > self.seq_len:
            raise ValueError(f"eval.stride={self.stride} must be <= eval.seq_len={self.seq_len}")
        return self


class PipelineSettings(BaseModel):
    """Where runs go, which stages run, housekeeping."""

    model_config = _STRICT

    artifacts_dir: Path = Field(Path("artifacts"), description="Root for runs and the stage cache.")
    stages: tuple[str, ...] = Field(STAGES, description="Stages to run, in pipeline order.")
    retention_days: float = Field(
        14.0, ge=0, description="golf gc removes unreferenced outputs older than this."
    )
    quality_gate: Literal["fail", "warn"] = Field(
        "fail",
        description="A final bpb above the bigram's (on the same scored tokens) fails validate; warn = log only (experiments).",
    )

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in v if s not in STAGES]
        if unknown:
            raise ValueError(f"pipeline.stages: unknown stage(s) {unknown}; allowed: {list(STAGES)}")
        return tuple(s for s in STAGES if s in v)


class DriftSettings(BaseModel):
    """Nightly drift check: final bpb and artifact bytes against the previous successful nightly."""

    model_config = _STRICT

    check: Literal["deployment", "always", "off"] = Field(
        "deployment",
        description="Compare with the previous successful run of the same settings: in deployment runs "
        "(the nightly), in every run, or never.",
    )
    bpb_tolerance: float = Field(
        0.01,
        ge=0,
        description="Allowed |Δ final bpb| (default ≈ 3× the measured 3-seed std of q2-geode, 0.0031; docs/decisions/pipeline.md).",
    )
    bytes_tolerance: int = Field(
        4500,
        ge=0,
        description="Allowed |Δ artifact bytes| (default 3× the 8×H100 anchor's 3-seed std of 1,498 bytes).",
    )
    reference_bpb: float | None = Field(
        None, gt=0, description="Pinned reference final bpb (also compared when set)."
    )
    reference_bytes: int | None = Field(
        None, gt=0, description="Pinned reference artifact bytes (also compared when set)."
    )


class Settings(BaseModel):
    """All pipeline settings. This plain model is the Prefect flow's parameter (the UI form)."""

    model_config = _STRICT

    preset: str = Field("smoke", description="Preset these settings started from (provenance only).")
    data: DataSettings = DataSettings()
    tokeniser: TokeniserSettings = TokeniserSettings()
    model: ModelSettings = ModelSettings()
    quant: QuantSettings = QuantSettings()
    train: TrainSettings = TrainSettings()
    pack: PackSettings = PackSettings()
    eval: EvalSettings = EvalSettings()
    pipeline: PipelineSettings = PipelineSettings()
    drift: DriftSettings = DriftSettings()

    @model_validator(mode="after")
    def _cross(self) -> Settings:
        if self.tokeniser.variant.startswith("sp") and self.tokeniser.source == "shards":
            if self.tokeniser.variant != self.data.variant:
                raise ValueError(
                    f"tokeniser.variant={self.tokeniser.variant} needs data.variant={self.tokeniser.variant} "
                    f"when tokeniser.source=shards (got data.variant={self.data.variant})"
                )
        if (
            self.model.arch == "geode"
            and "G" in self.model.pattern
            and self.model.n_kv_heads >= self.model.n_heads
        ):
            if self.model.n_heads > 1:
                raise ValueError("model.n_kv_heads must be < model.n_heads for the GQA mixer of geode")
        if self.eval.seq_len > 65_536 or self.train.seq_len < 8:
            raise ValueError("eval.seq_len / train.seq_len out of range")
        return self

    @property
    def vocab_size(self) -> int:
        """Vocabulary size, derived from the tokeniser variant (the one place it is derived)."""
        return self.tokeniser.vocab_size
