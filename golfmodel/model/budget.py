"""Budget solver: the largest model of an arm (by parameter count) whose packed artifact fits a byte budget.

    plan = solve("q2-geode", 1024, 16_000_000)        # search groups 1..4 and width (step 16)
    plan = solve("gpt-int8", 1024, 16_000_000, groups=9)

Search (SPEC §6): for each depth (Geode groups for q2-geode, layers for gpt-int8; fixed when
`groups` is given, else 1..`max_depth`) a binary search over width (multiples of 16, ≥ 32) on
an analytic estimate — the exact payload of every stored tensor (`param_report`, from a model
built on the meta device) plus record headers, times a compression ratio — brackets the widest
model that fits. The best candidates are then CONFIRMED with the real packer (Q2BN + zstd-22
for q2-geode, the baseline's int8 + zlib-9 for gpt-int8) on a randomly initialised model; the
measured ratio re-aims the width, which steps down until the real artifact fits and up while
the next width still fits. `budget_bytes` covers the artifact plus `code_bytes` (the shipped
code, SPEC §5).

Why `max_depth`: in both arms bytes grow as depth·d² while the per-parameter cost of the int8
embedding (V·d) shrinks with d, so "most parameters" alone always prefers deeper and narrower
models. The depth range is capped at the spec's full-scale shapes (4 Geode groups, the
baseline's 9 layers); within it the most parameters win (ties: the wider model).

Random weights stand in for trained ones: Gaussian rows give the 2-bit symbols their typical
skew (p ≈ 0.16/0.34/0.34/0.16, ~1.9 bits of entropy) and the int8 rows a Gaussian spread, so
zstd/zlib see realistic statistics; trained weights with heavier tails or structure may compress
slightly differently, so keep a little slack (`code_bytes`, or a smaller budget) when it matters.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from golfmodel.model import build_model, param_report
from golfmodel.model.config import ARMS, ModelConfig, head_shape

WIDTH_STEP = 16
MIN_WIDTH = 32  # 2 heads of 16
DEFAULT_MAX_DEPTH = {"q2-geode": 4, "gpt-int8": 9}
DEFAULT_MLP_MULT = {"q2-geode": 8 / 3, "gpt-int8": 2.0}
# Compressed / raw payload before any measurement (zstd on near-uniform 2-bit symbols gains
# ~4%; zlib on int8 Gaussian rows ~10%). Only the starting point: confirmation measures it.
PRIOR_RATIO = {"q2-geode": 0.97, "gpt-int8": 0.92}
CONTAINER_BYTES = {"q2-geode": 2048, "gpt-int8": 4096}  # header JSON / pickle framing (estimate)
MAX_CONFIRMS = 12

Packer = Callable[[nn.Module, Path], int]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A solved shape: `artifact_bytes` (packed, compressed) + `code_bytes` ≤ `budget_bytes`."""

    config: ModelConfig
    params: int
    artifact_bytes: int
    code_bytes: int
    budget_bytes: int
    fill: float  # (artifact_bytes + code_bytes) / budget_bytes
    estimate_bytes: int  # analytic estimate of the compressed artifact
    confirmed: bool  # artifact_bytes measured with the real packer
    breakdown: dict[str, int] = field(default_factory=dict)  # raw payload bytes per storage kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.config.arm,
            "params": self.params,
            "artifact_bytes": self.artifact_bytes,
            "code_bytes": self.code_bytes,
            "budget_bytes": self.budget_bytes,
            "fill": round(self.fill, 6),
            "estimate_bytes": self.estimate_bytes,
            "confirmed": self.confirmed,
            "breakdown": dict(self.breakdown),
            "config": self.config.to_dict(),
        }


def make_config(
    arm: str,
    vocab: int,
    d_model: int,
    depth: int,
    *,
    pattern: str = "GCCC",
    head_dim: int = 64,
    bigram_prior: bool = False,
    mlp_mult: float | None = None,
) -> ModelConfig:
    """The config the solver uses for a (width, depth) point: heads by `head_shape`, arm's MLP ratio."""
    n_heads, n_kv = head_shape(d_model, head_dim)
    return ModelConfig(
        arm=arm,
        vocab_size=vocab,
        d_model=d_model,
        depth=depth,
        pattern=pattern,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        mlp_mult=DEFAULT_MLP_MULT[arm] if mlp_mult is None else mlp_mult,
        bigram_prior=bigram_prior,
    )


@dataclass(frozen=True)
class _Estimate:
    params: int
    raw_bytes: int  # payload + record headers + container
    breakdown: dict[str, int]


def estimate(cfg: ModelConfig) -> _Estimate:
    """Exact parameter count and uncompressed artifact size of `cfg` (model built on the meta device)."""
    with torch.device("meta"):
        model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    breakdown: dict[str, int] = {}
    raw = CONTAINER_BYTES[cfg.arm]
    for row in param_report(model):
        breakdown[row.kind] = breakdown.get(row.kind, 0) + row.bytes
        raw += row.bytes + 12 + len(row.name) + 4 * len(row.shape) + (2 if row.kind == "alias" else 0)
    return _Estimate(params, raw, breakdown)


def random_model(cfg: ModelConfig, seed: int = 0) -> nn.Module:
    """`cfg`'s model with random trained-like weights, cheaply (no per-layer τ solve).

    Matrices N(0, 1): the int8 rows then use their whole range, as trained weights do (the
    baseline's export floors the int8 step at 1/127, so small init-scale weights would compress
    far better than trained ones: the naive baseline packs to 15,881,631 bytes here against
    15,815,847 bytes trained); vectors N(1, 0.1²); log Δt as at init; Q2Linear τ = 0.996·row std
    (the MSE-optimal step for a Gaussian row, SPEC §4); bigram prior = random log-softmax rows.
    """
    from golfmodel.model.layers import Rotary
    from golfmodel.quant.q2linear import Q2Linear

    with torch.device("meta"):
        model = build_model(cfg)
    model.to_empty(device="cpu")
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight  # to_empty makes new Parameters: re-tie
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 1.0, generator=g)
            elif name.endswith("log_dt"):
                p.uniform_(math.log(0.01), 0.0, generator=g)
            else:
                p.normal_(1.0, 0.1, generator=g)
        for module in model.modules():
            if isinstance(module, Q2Linear):
                module.set_tau(0.996 * module.weight.float().std(dim=1).clamp_min(1e-6))
            elif isinstance(module, Rotary):
                module.reset_tables()
        if cfg.bigram_prior:
            noise = torch.randn(cfg.vocab_size, cfg.vocab_size, generator=g) * 2.0
            model.set_bigram_logprior(torch.log_softmax(noise, dim=1))
    return model


_PROBE_META = {"tokenizer": "budget-probe", "settings_hash": "0" * 64}  # a header as large as a real one


def _pack_q2bn(model: nn.Module, path: Path) -> int:
    from golfmodel.q2bn.artifact import pack_model

    return pack_model(model, path, meta=dict(_PROBE_META), linear_kind="q2").compressed_bytes


def _pack_int8zlib(model: nn.Module, path: Path) -> int:
    from golfmodel.q2bn.int8zlib import pack_int8zlib

    return pack_int8zlib(model, path, meta=dict(_PROBE_META)).compressed_bytes


DEFAULT_PACKERS: dict[str, Packer] = {"q2-geode": _pack_q2bn, "gpt-int8": _pack_int8zlib}


def measure(cfg: ModelConfig, packer: Packer | None = None, seed: int = 0) -> int:
    """Compressed bytes of `cfg`'s randomly initialised model under the arm's real packer."""
    pack = packer or DEFAULT_PACKERS[cfg.arm]
    model = random_model(cfg, seed)
    with tempfile.TemporaryDirectory(prefix="golf-budget-") as tmp:
        return int(pack(model, Path(tmp) / "probe.bin"))


def solve(
    arm: str,
    vocab: int,
    budget_bytes: int,
    *,
    groups: int | None = None,
    pattern: str = "GCCC",
    head_dim: int = 64,
    bigram_prior: bool = False,
    code_bytes: int = 0,
    mlp_mult: float | None = None,
    max_depth: int | None = None,
    confirm: bool = True,
    packer: Packer | None = None,
) -> Plan:
    """Largest model of `arm` (by params) whose artifact + `code_bytes` fits `budget_bytes`.

    groups: fixed depth (Geode groups for q2-geode, layers for gpt-int8); None searches
    1..max_depth (default 4 groups / 9 layers). confirm=False skips the real packer and reports
    the estimate. Raises ValueError when not even the smallest model (width 32, depth 1) fits.
    """
    if arm not in ARMS:
        raise ValueError(f"arm: must be one of {ARMS}, got {arm!r}")
    if budget_bytes <= 0 or code_bytes < 0:
        raise ValueError(f"budget_bytes: must be > 0 (and code_bytes >= 0), got {budget_bytes}, {code_bytes}")
    target = budget_bytes - code_bytes
    if groups is not None:
        if groups < 1:
            raise ValueError(f"groups: must be >= 1, got {groups}")
        depths = [groups]
    else:
        depths = list(range(1, (max_depth or DEFAULT_MAX_DEPTH[arm]) + 1))

    cache: dict[tuple[int, int], _Estimate] = {}

    def cfg_at(depth: int, d: int) -> ModelConfig:
        return make_config(
            arm,
            vocab,
            d,
            depth,
            pattern=pattern,
            head_dim=head_dim,
            bigram_prior=bigram_prior,
            mlp_mult=mlp_mult,
        )

    def est(depth: int, d: int) -> _Estimate:
        if (depth, d) not in cache:
            cache[(depth, d)] = estimate(cfg_at(depth, d))
        return cache[(depth, d)]

    def widest(depth: int, ratio: float) -> int | None:
        """Largest width whose estimated compressed size fits (None if width 32 does not)."""
        if est(depth, MIN_WIDTH).raw_bytes * ratio > target:
            return None
        lo, hi = MIN_WIDTH, MIN_WIDTH * 2
        while est(depth, hi).raw_bytes * ratio <= target:
            lo, hi = hi, hi * 2
        while hi - lo > WIDTH_STEP:  # invariant: lo fits, hi does not
            mid = (lo + hi) // 2 // WIDTH_STEP * WIDTH_STEP
            lo, hi = (mid, hi) if est(depth, mid).raw_bytes * ratio <= target else (lo, mid)
        return lo

    ratio = PRIOR_RATIO[arm]

    def ranked(r: float) -> list[tuple[int, int, int]]:
        cands = []
        for depth in depths:
            d = widest(depth, r)
            if d is not None:
                cands.append((est(depth, d).params, d, depth))
        return sorted(cands, reverse=True)  # most params first, then wider

    candidates = ranked(ratio)
    if not candidates:
        raise ValueError(
            f"budget_bytes: {budget_bytes} (code {code_bytes}) cannot hold even a width-{MIN_WIDTH} "
            f"{arm} model at vocab {vocab}"
        )
    if not confirm:
        params, d, depth = candidates[0]
        e = est(depth, d)
        size = round(e.raw_bytes * ratio)
        return _plan(cfg_at(depth, d), e, size, size, code_bytes, budget_bytes, confirmed=False)

    measured: dict[tuple[int, int], int] = {}

    def real(depth: int, d: int) -> int:
        if (depth, d) not in measured:
            if len(measured) >= MAX_CONFIRMS:
                raise RuntimeError(f"solve: no confirmed fit after {MAX_CONFIRMS} packs (estimate far off?)")
            measured[(depth, d)] = measure(cfg_at(depth, d), packer)
        return measured[(depth, d)]

    def confirm_depth(depth: int, d: int) -> int | None:
        """Widest width at `depth` whose real artifact fits, starting the walk at `d`."""
        while d >= MIN_WIDTH and real(depth, d) > target:
            d -= WIDTH_STEP
        if d < MIN_WIDTH:
            return None
        while real(depth, d + WIDTH_STEP) <= target:
            d += WIDTH_STEP
        return d

    best: tuple[int, int, int] | None = None  # (params, d, depth)
    done: set[int] = set()
    while True:  # confirm the most promising unconfirmed depth until none could beat the best
        todo = [c for c in ranked(ratio) if c[2] not in done and (best is None or c[0] > best[0])]
        if not todo:
            break
        _, d0, depth = todo[0]
        done.add(depth)
        d = confirm_depth(depth, d0)
        if d is None:
            continue
        ratio = measured[(depth, d)] / est(depth, d).raw_bytes  # re-aim the other depths
        cand = (est(depth, d).params, d, depth)
        best = cand if best is None or cand > best else best
    if best is None:
        raise ValueError(f"budget_bytes: {budget_bytes} (code {code_bytes}) fits no confirmed {arm} model")
    _, d, depth = best
    e = est(depth, d)
    size = measured[(depth, d)]
    return _plan(
        cfg_at(depth, d), e, size, round(e.raw_bytes * PRIOR_RATIO[arm]), code_bytes, budget_bytes, True
    )


def _plan(
    cfg: ModelConfig, e: _Estimate, size: int, est_size: int, code: int, budget: int, confirmed: bool
) -> Plan:
    return Plan(
        config=cfg,
        params=e.params,
        artifact_bytes=size,
        code_bytes=code,
        budget_bytes=budget,
        fill=(size + code) / budget,
        estimate_bytes=est_size,
        confirmed=confirmed,
        breakdown=dict(e.breakdown),
    )
