"""The minigolf bench: the Q² claim measured on a CPU, in two parts (issue 6).

    data = prepare_data(train_shards, val_shards, variant="byte260", sp_model=..., out_dir=out / "data")
    result = run_bench(BenchConfig(budget_bytes=120_000, int8_tokens=N, seeds=3), data, out)

Arms, trained by the same trainer (`python -m golfmodel.train`, one thread each, `workers` side by
side) on the same training shards and scored by the same scorer on the same validation stream,
each on the model reloaded from its packed artifact:
- (a) `q2-geode`: the solver's q2-geode shape for `budget_bytes`, 2-bit QAT, packed as Q2BN;
- (b) `q2-geode-fp32`: the same ModelConfig and token count, QAT never on, Q2BN with fp32 rows;
- (c) `gpt-int8`: the solver's gpt-int8 shape for the same budget, int8 + zlib after training.
The 2-bit penalty is a − b (paired by seed), the A/B gain c − a (positive: q2-geode wins).

Matching (a) and (c): `gpu-tokens` gives gpt-int8 `int8_tokens` tokens and every other arm
int8_tokens·(params_int8/params_arm)^0.5 — the H100 observation that a 4.3× larger model ran
2.1× slower per step (the ternary record against the baseline), so token budgets are known up
front and arms run side by side; `time` gives every arm `seconds` of training wall-clock (the
challenge's rule; on a CPU it over-penalises the larger arm). Steps = tokens / global batch.

Ablations (`ablations=("gqa-only", ...)`) are small overrides of the q2-geode arm's job, run at
`ablation_scale` of its budget with one seed and reported against q2-geode at the same budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from golfmodel.atomic import atomic_write_json
from golfmodel.bench import stats
from golfmodel.bench.minigolf_arm import (
    ArmSpec,
    EvalSpec,
    arm_key,
    cached_result,
    run_arm,
    sha256_file,
    sha256_json,
    source_hash,
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
    # gpt-int8 export: tensors with at most this many elements stay float. None = the baseline's
    # 65,536 scaled by budget/16,000,000, so matrices are int8 rows at any budget (see the docs).
    int8_keep_float: int | None = None

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
        check(self.val_points >= 0, f"val_points must be >= 0, got {self.val_points}")
        check(0 <= self.min_fill <= 1, f"min_fill must be in [0, 1], got {self.min_fill}")
        check(
            self.recalibrate in ("off", "mse", "act"),
            f"recalibrate must be off|mse|act, got {self.recalibrate!r}",
        )
        for name in self.ablations:
            parse_ablation(name)  # raises with the list of known names


# --- ablations ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Ablation:
    """An override of the q2-geode arm: model fields (re-solved at equal bytes), QAT, averaging, recal."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)  # pattern / bigram_prior: the solver re-sizes
    qat: dict[str, Any] = field(default_factory=dict)
    averaging: dict[str, Any] = field(default_factory=dict)
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
)


def parse_ablation(spec: str) -> Ablation:
    """`NAME` or `qat-start=F` → Ablation; raises ValueError naming the known ablations."""
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
    if name == "bigram":
        return Ablation(
            name=spec,
            description="bigram log-prior in the logits, at equal bytes",
            model={"bigram_prior": True},
        )
    raise ValueError(
        f"unknown ablation {spec!r}; known: {', '.join(ABLATION_NAMES)} (qat-start=F, tau-std=M), all"
    )


def expand_ablations(names: Sequence[str]) -> tuple[str, ...]:
    """Split comma lists and expand `all`; keeps order, drops duplicates."""
    out: list[str] = []
    for item in names:
        for name in (s.strip() for s in item.split(",")):
            if not name:
                continue
            for n in ABLATION_NAMES if name == "all" else (name,):
                if n not in out:
                    out.append(n)
    return tuple(out)


# --- data --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BenchData:
    """The bench's shards (already in `variant`), the byte table source and their content hash."""

    variant: str
    vocab_size: int
    train_shards: tuple[str, ...]
    val_shards: tuple[str, ...]
    tokenizer: str  # "byte260" or the sentencepiece model path
    hash: str
    bigram_logprior: str | None = None  # (V, V) table for the `bigram` ablation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shard_variant(path: str | Path) -> str:
    """The variant (byte260, sp<V>) named by the official folder `fineweb10B_<variant>`; sp1024 if none."""
    for part in reversed(Path(path).parts[:-1]):
        if part.startswith("fineweb10B_"):
            return part.removeprefix("fineweb10B_")
    return "sp1024"


def _hash_files(paths: Sequence[str | Path]) -> list[str]:
    return [sha256_file(p) for p in paths]


def prepare_data(
    train_shards: Sequence[str | Path],
    val_shards: Sequence[str | Path],
    *,
    variant: str,
    sp_model: str | Path | None,
    out_dir: str | Path,
    input_variant: str | None = None,
    log: Log = print,
) -> BenchData:
    """The bench's shards in `variant`; sp shards are decoded to byte260 once (cached by content hash)."""
    from golfmodel.data.tokenise import convert_sp_to_byte260

    if variant not in ("byte260", "sp1024"):
        raise ValueError(f"variant must be byte260 or sp1024, got {variant!r}")
    train = [Path(p) for p in train_shards]
    val = [Path(p) for p in val_shards]
    if not train or not val:
        raise ValueError(
            f"the bench needs training and validation shards (got {len(train)} train, {len(val)} val)"
        )
    src = input_variant or shard_variant(val[0])
    sp_hash = sha256_file(sp_model) if sp_model is not None and Path(sp_model).exists() else None
    if src == "byte260":
        if variant != "byte260":
            raise ValueError(
                "byte260 shards cannot be scored as sp1024: pass sp1024 shards for --variant sp1024"
            )
        out_train, out_val = train, val
    elif variant == "byte260":
        if sp_hash is None:
            raise ValueError(
                f"decoding {src} shards to byte260 needs the sentencepiece model (got {sp_model})"
            )
        key = sha256_json({"train": _hash_files(train), "val": _hash_files(val), "sp": sp_hash})[:16]
        dest = Path(out_dir) / f"byte260-{key}"
        done = dest / "done.json"
        if done.exists():
            info = json.loads(done.read_text())
            out_train = [dest / p for p in info["train"]]
            out_val = [dest / p for p in info["val"]]
        else:
            log(f"decoding {len(val)} val + {len(train)} train {src} shards to byte260 in {dest}")
            small = sum(p.stat().st_size for p in train + val) < (64 << 20)  # in-process: no pool start-up
            res = convert_sp_to_byte260(
                val, train, sp_model, dest, workers=0 if small else None, progress=False
            )  # type: ignore[arg-type]
            out_train, out_val = list(res.train_paths), list(res.val_paths)
            info = {"train": [p.name for p in out_train], "val": [p.name for p in out_val]}
            atomic_write_json(done, info)
    else:
        if src != variant:
            raise ValueError(f"the shards are {src}, the bench variant is {variant}")
        if sp_hash is None:
            raise ValueError(f"scoring {variant} needs the sentencepiece model (got {sp_model})")
        out_train, out_val = train, val
    vocab = 260 if variant == "byte260" else int(variant.removeprefix("sp"))
    tokenizer = "byte260" if variant == "byte260" else str(Path(sp_model).resolve())  # type: ignore[arg-type]
    digest = sha256_json(
        {"variant": variant, "train": _hash_files(out_train), "val": _hash_files(out_val), "sp": sp_hash}
    )
    return BenchData(
        variant=variant,
        vocab_size=vocab,
        train_shards=tuple(str(Path(p).resolve()) for p in out_train),
        val_shards=tuple(str(Path(p).resolve()) for p in out_val),
        tokenizer=tokenizer,
        hash=digest,
    )


def ensure_bigram(data: BenchData, out_dir: Path, log: Log = print) -> BenchData:
    """`data` with a bigram log-prior table built from its training shards (for the `bigram` ablation)."""
    if data.bigram_logprior is not None:
        return data
    from golfmodel.data import bigram

    path = out_dir / f"bigram-{data.hash[:16]}.npz"
    if not path.exists():
        log(f"counting bigrams of the training shards into {path}")
        bigram.build_bigram([Path(p) for p in data.train_shards], data.vocab_size, path)
    return dataclasses.replace(data, bigram_logprior=str(path))


# --- planning -----------------------------------------------------------------------------------------


def matched_tokens(int8_tokens: int, params_int8: int, params_arm: int) -> int:
    """gpu-tokens matching: tokens of an arm = int8_tokens·(params_int8/params_arm)^0.5 (rounded)."""
    if params_int8 <= 0 or params_arm <= 0:
        raise ValueError(f"parameter counts must be > 0, got {params_int8} and {params_arm}")
    return round(int8_tokens * math.sqrt(params_int8 / params_arm))


def steps_for(tokens: int, global_batch_tokens: int) -> int:
    """Optimiser steps that train on about `tokens` tokens (at least one)."""
    return max(1, round(tokens / global_batch_tokens))


def solve_shape(
    arm: str,
    vocab: int,
    cfg: BenchConfig,
    cache_path: Path,
    *,
    pattern: str = "GCCC",
    bigram_prior: bool = False,
) -> dict[str, Any]:
    """The solver's plan for an arm at the bench budget (cached in `cache_path` by inputs + source)."""
    from golfmodel.model import budget

    keep = cfg.int8_keep_float_numel if arm == "gpt-int8" else None
    key = sha256_json(
        {"arm": arm, "vocab": vocab, "budget": cfg.budget_bytes, "pattern": pattern, "bigram": bigram_prior,
         "keep_float": keep, "src": source_hash()}
    )  # fmt: skip
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if key not in cache:
        kw: dict[str, Any] = {"bigram_prior": bigram_prior}
        if arm == "q2-geode":
            kw["pattern"] = pattern
        elif keep != BASELINE_KEEP_FLOAT:
            kw.update(_int8_solver_options(keep))  # type: ignore[arg-type]
        try:
            plan = budget.solve(arm, vocab, cfg.budget_bytes, **kw)
        except RuntimeError as e:
            raise ValueError(
                f"the budget solver found no {arm} shape for {cfg.budget_bytes} bytes with tensors of <= {keep} "
                f"elements kept float ({e}); pass --int8-keep-float {BASELINE_KEEP_FLOAT} for the baseline's rule"
            ) from None
        cache[key] = plan.to_dict()
        atomic_write_json(cache_path, cache)
    plan = cache[key]
    if plan["fill"] < cfg.min_fill:
        raise ValueError(
            f"the solver's {arm} model fills {plan['fill']:.1%} of {cfg.budget_bytes} bytes, below the bench's "
            f"minimum of {cfg.min_fill:.0%}; pick another budget (or lower min_fill)"
        )
    return plan


def _int8_solver_options(keep_float: int) -> dict[str, Any]:
    """solve() options for a gpt-int8 export that keeps only tensors of <= keep_float elements float.

    The solver's estimate follows its export config when it takes one (`int8_config`); otherwise
    only its confirming packer does, which converges when the estimate is not far off.
    """
    import inspect

    from golfmodel.model import budget

    params = inspect.signature(budget.solve).parameters
    if "int8_config" in params:
        from golfmodel.q2bn.int8zlib import Int8ZlibConfig

        return {"int8_config": Int8ZlibConfig(keep_float_max_numel=keep_float)}
    return {"packer": int8_packer(keep_float)}


def int8_packer(keep_float: int) -> Callable[[Any, Path], int]:
    """The solver's gpt-int8 packer with the bench's keep-float threshold."""
    from golfmodel.q2bn.int8zlib import Int8ZlibConfig, pack_int8zlib

    icfg = Int8ZlibConfig(keep_float_max_numel=keep_float)
    meta = {"tokenizer": {"id": "budget-probe", "vocab_size": 0}, "settings_hash": "0" * 64}

    def pack(model: Any, path: Path) -> int:
        return pack_int8zlib(model, path, meta=meta, cfg=icfg).compressed_bytes

    return pack


def _model_config(plan: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    model = dict(plan["config"])
    model["max_seq_len"] = max(cfg.seq_len, cfg.eval.seq_len)  # RoPE tables are not stored: bytes unchanged
    return model


def _param_count(model: dict[str, Any]) -> int:
    import torch

    from golfmodel.model import build_model
    from golfmodel.model.config import ModelConfig

    with torch.device("meta"):
        m = build_model(ModelConfig.from_dict(model))
    return int(sum(p.numel() for p in m.parameters()))


def probe_step_seconds(model: dict[str, Any], cfg: BenchConfig, *, qat: bool, steps: int = 3) -> float:
    """Seconds per optimiser step of `model` on this CPU with one thread (random tokens, after a warm-up step)."""
    import torch
    import torch.nn.functional as F

    from golfmodel.model import build_model
    from golfmodel.model.config import ModelConfig
    from golfmodel.train.config import OptimConfig
    from golfmodel.train.muon import build_optimizers

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = build_model(ModelConfig.from_dict(model))
        if qat:
            for group in m.qat_groups():
                for layer in group:
                    layer.set_qat(True)
        opts = build_optimizers(m, OptimConfig())
        accum = cfg.global_batch_tokens // (cfg.seq_len * cfg.micro_batch_seqs)
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, int(model["vocab_size"]), (cfg.micro_batch_seqs, cfg.seq_len + 1), generator=g)
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            for _ in range(accum):
                logits = m(x[:, :-1])  # (B, T, V)
                F.cross_entropy(logits.flatten(0, 1), x[:, 1:].reshape(-1)).backward()
            for o in opts:
                o.step()
                o.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
        return sorted(times[1:])[len(times[1:]) // 2]
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True, kw_only=True)
class ArmPlan:
    """One row of the bench before it runs: shape, token budget (or seconds), steps."""

    name: str
    kind: str
    model: dict[str, Any]
    params: int
    tokens: int | None  # gpu-tokens: the planned tokens; time: None
    steps: int | None
    seconds: float | None
    solver: dict[str, Any]


def _budget(kind_tokens: int, cfg: BenchConfig, scale: float) -> tuple[int | None, int | None, float | None]:
    if cfg.match == "time":
        return None, None, cfg.seconds * scale
    steps = steps_for(round(kind_tokens * scale), cfg.global_batch_tokens)
    return steps * cfg.global_batch_tokens, steps, None


def plan_arms(
    cfg: BenchConfig, data: BenchData, out_dir: Path
) -> tuple[list[ArmPlan], list[tuple[Ablation, ArmPlan]]]:
    """Shapes and budgets of the three main arms and of each ablation (and its default reference)."""
    solver_cache = out_dir / "solver.json"
    q2 = solve_shape("q2-geode", data.vocab_size, cfg, solver_cache)
    i8 = solve_shape("gpt-int8", data.vocab_size, cfg, solver_cache)
    q2_model, i8_model = _model_config(q2, cfg), _model_config(i8, cfg)
    p_q2, p_i8 = _param_count(q2_model), _param_count(i8_model)

    def arm_plan(
        name: str, kind: str, model: dict[str, Any], params: int, solver: dict[str, Any], scale: float
    ) -> ArmPlan:
        tokens = cfg.int8_tokens if kind == "gpt-int8" else matched_tokens(cfg.int8_tokens, p_i8, params)
        t, s, sec = _budget(tokens, cfg, scale)
        return ArmPlan(
            name=name, kind=kind, model=model, params=params, tokens=t, steps=s, seconds=sec, solver=solver
        )

    main = [
        arm_plan("q2-geode", "q2-geode", q2_model, p_q2, q2, 1.0),
        arm_plan("q2-geode-fp32", "q2-geode-fp32", q2_model, p_q2, q2, 1.0),
        arm_plan("gpt-int8", "gpt-int8", i8_model, p_i8, i8, 1.0),
    ]
    ablations: list[tuple[Ablation, ArmPlan]] = []
    if cfg.ablations:
        ref = arm_plan("q2-geode", "q2-geode", q2_model, p_q2, q2, cfg.ablation_scale)
        ablations.append((Ablation(name="default", description="q2-geode as in the main table"), ref))
        for name in cfg.ablations:
            ab = parse_ablation(name)
            model, params, solver = q2_model, p_q2, q2
            if ab.model:
                solver = solve_shape(
                    "q2-geode",
                    data.vocab_size,
                    cfg,
                    solver_cache,
                    pattern=ab.model.get("pattern", "GCCC"),
                    bigram_prior=ab.model.get("bigram_prior", False),
                )
                model = _model_config(solver, cfg)
                params = _param_count(model)
            ablations.append(
                (ab, arm_plan(f"q2-geode+{ab.name}", "q2-geode", model, params, solver, cfg.ablation_scale))
            )
    return main, ablations


def _est_steps(plan: ArmPlan, probes: dict[str, float]) -> int:
    """The run's steps: planned (gpu-tokens), or estimated from the probe's seconds per step (time)."""
    if plan.steps is not None:
        return plan.steps
    return max(1, int(plan.seconds / probes[sha256_json(plan.model)]))  # type: ignore[operator]


def _probes(plans: Sequence[ArmPlan], cfg: BenchConfig, out_dir: Path) -> dict[str, float]:
    """Seconds per step of each shape (time matching only: spaces the periodic validation); cached."""
    path = out_dir / "probe.json"
    probes: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for p in plans:
        key = sha256_json(p.model)
        if p.seconds is not None and key not in probes:
            probes[key] = probe_step_seconds(p.model, cfg, qat=p.kind == "q2-geode")
            changed = True
    if changed:
        atomic_write_json(path, probes)
    return probes


def make_job(
    plan: ArmPlan, cfg: BenchConfig, data: BenchData, *, seed: int, est_steps: int, ablation: Ablation | None
) -> dict[str, Any]:
    """The TrainJob dict of one arm × seed (out_dir filled in later, from the key).

    est_steps (the planned steps, or an estimate under time matching) spaces the periodic
    validation (`val_points` per run), the checkpoints and the log lines.
    """
    from golfmodel.model.config import ModelConfig
    from golfmodel.train.config import AveragingConfig, QATConfig, TrainConfig, TrainJob

    ab = ablation or Ablation(name="default", description="")
    train = TrainConfig(
        seed=seed,
        global_batch_tokens=cfg.global_batch_tokens,
        seq_len=cfg.seq_len,
        micro_batch_seqs=cfg.micro_batch_seqs,
        max_steps=plan.steps,
        max_wallclock_seconds=plan.seconds,
        val_every=max(1, est_steps // cfg.val_points) if cfg.val_points else 0,
        val_tokens=cfg.val_tokens,
        val_batch_seqs=32,
        final_val=False,  # the bench scores the whole validation stream itself
        checkpoint_every=max(1, est_steps // cfg.checkpoints) if cfg.checkpoints else 0,
        device="cpu",
        dtype="fp32",
        threads=1,
        log_every=max(1, est_steps // 50),
        progress_bar=False,
    )
    job = TrainJob(
        model=ModelConfig.from_dict(plan.model),
        train=train,
        qat=QATConfig(enabled=plan.kind == "q2-geode", **ab.qat),
        averaging=AveragingConfig(**ab.averaging),
        train_shards=data.train_shards,
        val_shards=data.val_shards,
        tokenizer=data.tokenizer,
        bigram_logprior=data.bigram_logprior if plan.model.get("bigram_prior") else None,
        out_dir="-",
    )
    return job.to_dict()


def build_specs(cfg: BenchConfig, data: BenchData, out_dir: Path) -> tuple[list[ArmSpec], dict[str, Any]]:
    """Every arm × seed (main table) and every ablation run, with keys and run folders; plus the plan."""
    main, ablations = plan_arms(cfg, data, out_dir)
    probes = (
        _probes([p for p in main] + [p for _, p in ablations], cfg, out_dir) if cfg.match == "time" else {}
    )
    specs: list[ArmSpec] = []

    def add(plan: ArmPlan, seed: int, group: str, ab: Ablation | None) -> None:
        job = make_job(plan, cfg, data, seed=seed, est_steps=_est_steps(plan, probes), ablation=ab)
        recal = cfg.recalibrate if ab is None or ab.recalibrate is None else ab.recalibrate
        spec = ArmSpec(
            name=plan.name,
            kind=plan.kind,
            seed=seed,
            job=job,
            eval=cfg.eval,
            val_shards=data.val_shards,
            tokenizer=data.tokenizer,
            recalibrate=recal if plan.kind == "q2-geode" else "off",
            data_hash=data.hash,
            pack_options={"keep_float": cfg.int8_keep_float_numel} if plan.kind == "gpt-int8" else {},
            group=group,
            ablation=None if ab is None else ab.name,
            extra={"solver_fill": plan.solver["fill"], "description": "" if ab is None else ab.description},
        )
        key = arm_key(spec)
        run_dir = out_dir / "arms" / f"{plan.name.replace('=', '_')}-s{seed}-{key[:10]}"
        job = {**job, "out_dir": str(run_dir)}
        specs.append(dataclasses.replace(spec, job=job, key=key, run_dir=str(run_dir)))

    for i in range(cfg.seeds):
        for plan in main:
            add(plan, cfg.first_seed + i, "main", None)
    for ab, plan in ablations:
        add(plan, cfg.first_seed, "ablation", None if ab.name == "default" else ab)
    info = {
        "arms": {
            p.name: {
                "params": p.params,
                "tokens": p.tokens,
                "steps": p.steps,
                "seconds": p.seconds,
                "solver": p.solver,
            }
            for p in main
        },  # fmt: skip
        "ablations": {
            ab.name: {"params": p.params, "tokens": p.tokens, "seconds": p.seconds} for ab, p in ablations
        },
    }
    return specs, info


# --- running -----------------------------------------------------------------------------------------


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def run_specs(specs: Sequence[ArmSpec], workers: int, log: Log = print) -> dict[str, dict[str, Any]]:
    """Run every distinct spec (by key), `workers` at a time; results by key. Cached ones are read back."""
    unique: dict[str, ArmSpec] = {}
    for s in specs:
        unique.setdefault(s.key, s)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for key, s in unique.items():
        hit = cached_result(s)
        if hit is not None:
            results[key] = {**hit, "cached": True}
        else:
            todo.append(s)
    if results:
        log(f"{len(results)} of {len(unique)} runs cached in their run folders")
    total, done = len(todo), 0
    t0 = time.perf_counter()

    def report(s: ArmSpec, r: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        log(
            f"[{done}/{total}] {s.name} seed {s.seed}: {r['tokens']:,} tokens, {r['tokens_per_s']:,.0f} tok/s, "
            f"prequant {r['prequant_bpb']:.4f}, final {r['final_bpb']:.4f} bpb "
            f"({r['wall_seconds'] / 60:.1f} min; {(time.perf_counter() - t0) / 60:.1f} min elapsed)"
        )

    if workers == 1 or len(todo) <= 1:
        for s in todo:
            log(f"running {s.name} seed {s.seed} in {s.run_dir}")
            results[s.key] = run_arm(s)
            report(s, results[s.key])
        return results
    import multiprocessing as mp

    with ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
    ) as pool:
        futures: dict[Future[dict[str, Any]], ArmSpec] = {}
        for s in todo:
            futures[pool.submit(run_arm, s)] = s
        log(f"running {total} runs, {workers} at a time (one thread each)")
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                s = futures[f]
                results[s.key] = f.result()
                report(s, results[s.key])
    return results


# --- aggregation ---------------------------------------------------------------------------------------


PER_SEED_FIELDS = (
    "seed", "steps", "tokens", "tokens_per_s", "train_seconds", "prequant_bpb", "final_bpb",
    "prequant_nll", "final_nll", "artifact_bytes", "recalibration", "curve", "cached",
)  # fmt: skip


def aggregate_arm(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One arm's entry of the bench JSON: shape, means ± std over seeds, and the per-seed values."""
    rows = sorted(rows, key=lambda r: r["seed"])
    first = rows[0]
    pre = stats.summarize([r["prequant_bpb"] for r in rows])
    fin = stats.summarize([r["final_bpb"] for r in rows])
    tokens = stats.summarize([r["tokens"] for r in rows]).mean
    return {
        "params": first["params"],
        "artifact_bytes": round(stats.summarize([r["artifact_bytes"] for r in rows]).mean),
        "steps": round(stats.summarize([r["steps"] for r in rows]).mean),
        "tokens": round(tokens),
        "tokens_per_param": tokens / first["params"],
        "tokens_per_s": stats.summarize([r["tokens_per_s"] for r in rows]).mean,
        "prequant_bpb": pre.mean,
        "prequant_bpb_std": pre.std,
        "final_bpb": fin.mean,
        "final_bpb_std": fin.std,
        "n_seeds": len(rows),
        "model": first["model"],
        "seeds": [{k: r.get(k) for k in PER_SEED_FIELDS} for r in rows],
    }


def tokens_per_byte(rows: Sequence[dict[str, Any]]) -> float:
    """Scored targets per byte of the validation stream (identical for every arm of one bench)."""
    r = rows[0]
    return r["n_targets"] / r["n_bytes"]


def aggregate(
    specs: Sequence[ArmSpec], results: dict[str, dict[str, Any]], cfg: BenchConfig
) -> dict[str, Any]:
    """The bench JSON: `{arm: {...}, penalty_bpb, gain_bpb, p_penalty, p_gain}` plus `details` (see `public_json`)."""
    by_arm: dict[str, list[dict[str, Any]]] = {a: [] for a in MAIN_ARMS}
    for s in specs:
        if s.group == "main":
            by_arm[s.name].append(results[s.key])
    arms = {a: aggregate_arm(rows) for a, rows in by_arm.items()}
    seed_of = {a: {r["seed"]: r["final_bpb"] for r in rows} for a, rows in by_arm.items()}
    seeds = sorted(set(seed_of["q2-geode"]) & set(seed_of["q2-geode-fp32"]))
    pen = stats.penalty_test(
        [seed_of["q2-geode"][s] for s in seeds], [seed_of["q2-geode-fp32"][s] for s in seeds]
    )
    tpb = tokens_per_byte(by_arm["gpt-int8"])
    gain = stats.gain_test(
        [r["final_bpb"] for r in by_arm["gpt-int8"]],
        [r["final_bpb"] for r in by_arm["q2-geode"]],
        tokens_per_byte=tpb,
        margin_nats=cfg.margin_nats,
    )
    out: dict[str, Any] = {
        **arms,
        "penalty_bpb": arms["q2-geode"]["final_bpb"] - arms["q2-geode-fp32"]["final_bpb"],
        "gain_bpb": arms["gpt-int8"]["final_bpb"] - arms["q2-geode"]["final_bpb"],
        "p_penalty": pen.p,
        "p_gain": gain.p,
    }
    ablation_rows = []
    ref = None
    for s in specs:
        if s.group != "ablation":
            continue
        r = results[s.key]
        row = {
            "ablation": s.ablation or "default",
            "description": s.extra.get("description") or "q2-geode as in the main table",
            "params": r["params"],
            "artifact_bytes": r["artifact_bytes"],
            "tokens": r["tokens"],
            "prequant_bpb": r["prequant_bpb"],
            "final_bpb": r["final_bpb"],
        }
        if s.ablation is None:
            ref = row
        ablation_rows.append(row)
    for row in ablation_rows:
        row["delta_bpb"] = row["final_bpb"] - ref["final_bpb"] if ref is not None else None
    out["details"] = {
        "penalty_test": pen.to_dict(),
        "gain_test": gain.to_dict(),
        "tokens_per_byte": tpb,
        "margin_nats": cfg.margin_nats,
        "margin_bpb": stats.nats_to_bpb(cfg.margin_nats, tpb),
        "penalty_std": stats.summarize(
            [seed_of["q2-geode"][s] - seed_of["q2-geode-fp32"][s] for s in seeds]
        ).std
        if seeds
        else None,
        "ablations": ablation_rows,
        "eval": dataclasses.asdict(cfg.eval),
    }
    return out


def public_json(result: dict[str, Any]) -> dict[str, Any]:
    """Exactly the documented shape: the three arms, penalty_bpb, gain_bpb, p_penalty, p_gain."""
    return {k: result[k] for k in (*MAIN_ARMS, "penalty_bpb", "gain_bpb", "p_penalty", "p_gain")}


def run_bench(
    cfg: BenchConfig,
    data: BenchData,
    out_dir: str | Path,
    *,
    json_path: str | Path | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Plan, run (cached) and aggregate the bench; writes minigolf.{json,md,png} and bench.json into out_dir."""
    from golfmodel.bench import minigolf_report as report

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if any(parse_ablation(a).model.get("bigram_prior") for a in cfg.ablations):
        data = ensure_bigram(data, out / "data", log)
    specs, plan = build_specs(cfg, data, out)
    for name, p in plan["arms"].items():
        budget = f"{p['tokens']:,} tokens ({p['steps']} steps)" if p["tokens"] else f"{p['seconds']:g} s"
        log(f"{name}: {p['params']:,} params, solver fill {p['solver']['fill']:.1%}, {budget}")
    results = run_specs(specs, cfg.workers, log)
    result = aggregate(specs, results, cfg)
    result["details"]["config"] = _jsonable(dataclasses.asdict(cfg))
    result["details"]["data"] = data.to_dict()
    result["details"]["plan"] = plan
    report.write_all(result, out, json_path=None if json_path is None else Path(json_path))
    return result


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
