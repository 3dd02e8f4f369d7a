"""Size probes for the budget solver: the analytic artifact estimate and real packs of random models.

`estimate(cfg)` builds the model on the meta device (shapes only, milliseconds) and sums each
stored tensor's payload (`param_report`) plus its record header and the container. `measure(cfg)`
packs a randomly initialised model with its plan's real packer (`plan.export`: Q2BN + zstd-22,
or the baseline's int8 + zlib-9) and returns the compressed bytes.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from golfmodel.model import build_model, param_report
from golfmodel.model.config import ModelConfig

CONTAINER_BYTES = {"q2bn": 2048, "int8zlib": 4096}  # per export: header JSON / pickle framing (estimate)

Packer = Callable[[nn.Module, Path], int]  # (model, path) -> compressed bytes written


@dataclass(frozen=True)
class Estimate:
    """Parameter count, uncompressed artifact bytes and payload bytes per storage kind of a config.

    The bigram log-prior is booked as "bigram" (its own compression ratio), every other tensor by its label.
    """

    params: int
    raw_bytes: int  # payload + record headers + container
    breakdown: dict[str, int]


def estimate(cfg: ModelConfig, *, int8_config: Any = None) -> Estimate:
    """Exact parameter count and uncompressed artifact size of `cfg` (model built on the meta device).

    int8_config: the gpt-int8 export config (`Int8ZlibConfig`) whose storage rules to follow.
    Memoised (configs are frozen): a solve revisits points, and solves of one process share shapes.
    """
    return _estimate(cfg, int8_config)


@functools.lru_cache(maxsize=8192)
def _estimate(cfg: ModelConfig, int8_config: Any) -> Estimate:
    with torch.device("meta"):
        model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    breakdown: dict[str, int] = {}
    raw = CONTAINER_BYTES[cfg.quant_plan.export]
    if cfg.plan is not None:  # a non-default plan's table travels in the header (q2-mixed: ~1-3 KB of JSON)
        raw += len(cfg.quant_plan.to_json())
    for row in param_report(model, int8_config=int8_config):
        key = "bigram" if row.name.endswith("bigram_logprior") else row.kind  # trained_ratio.BIGRAM_KEY
        breakdown[key] = breakdown.get(key, 0) + row.bytes
        raw += row.bytes + 12 + len(row.name) + 4 * len(row.shape) + (2 if row.kind == "alias" else 0)
    return Estimate(params, raw, breakdown)


def random_model(cfg: ModelConfig, seed: int = 0, bigram_logprior: Any = None) -> nn.Module:
    """`cfg`'s model with random trained-like weights, cheaply (no per-layer τ solve).

    Matrices N(0, 1): the int8 rows then use their whole range, as trained weights do (the
    baseline's export floors the int8 step at 1/127, so small init-scale weights would compress
    far better than trained ones: the naive baseline packs to 15,881,631 bytes here against
    15,815,847 bytes trained); vectors N(1, 0.1²); log Δt as at init; Q2Linear τ = 0.996·row std
    (the MSE-optimal step for a Gaussian row, SPEC §4); bigram prior = `bigram_logprior` (V, V)
    when given (the real table is known before training and compresses far better than noise:
    the sample's byte260 table packs to ~8 KB, a random one to ~55 KB), else random log-softmax rows.
    """
    from golfmodel.model.layers import Rotary
    from golfmodel.quant.qlinear import QLinear

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
            if isinstance(module, QLinear) and module.spec.has_scale and module.spec.kind == "q2":
                module.set_tau(0.996 * module.weight.float().std(dim=1).clamp_min(1e-6))
            elif isinstance(module, QLinear) and module.spec.has_scale:  # cheap closed-form statistic
                module.set_tau(module.kind.stat_scale(module.weight.float()))
            elif isinstance(module, Rotary):
                module.reset_tables()
        if cfg.bigram_prior and bigram_logprior is not None:
            model.set_bigram_logprior(bigram_logprior)
        elif cfg.bigram_prior:
            noise = torch.randn(cfg.vocab_size, cfg.vocab_size, generator=g) * 2.0
            model.set_bigram_logprior(torch.log_softmax(noise, dim=1))
    return model


def _probe_meta(model: nn.Module) -> dict[str, Any]:
    """A header about as large as a real run's (tokenizer id, vocab, a sha256-sized settings hash)."""
    return {
        "tokenizer": {"id": "budget-probe", "vocab_size": model.config.vocab_size},
        "settings_hash": "0" * 64,
    }


def _pack_q2bn(model: nn.Module, path: Path) -> int:
    from golfmodel.q2bn.artifact import pack_model

    return pack_model(model, path, meta=_probe_meta(model)).compressed_bytes


def _pack_int8zlib(model: nn.Module, path: Path, int8_config: Any = None) -> int:
    from golfmodel.q2bn.int8zlib import Int8ZlibConfig, pack_int8zlib

    cfg = int8_config or Int8ZlibConfig()
    return pack_int8zlib(model, path, meta=_probe_meta(model), cfg=cfg).compressed_bytes


def int8zlib_packer(int8_config: Any = None) -> Packer:
    """The gpt-int8 packer with export rules `int8_config` (an `Int8ZlibConfig`; None: the baseline's)."""
    return functools.partial(_pack_int8zlib, int8_config=int8_config)


DEFAULT_PACKERS: dict[str, Packer] = {"q2bn": _pack_q2bn, "int8zlib": _pack_int8zlib}  # by plan.export


def packer_for(plan: Any, int8_config: Any = None) -> Packer:
    """The real packer of a plan's export container (int8_config: the baseline export's float rules)."""
    if plan.export == "int8zlib" and int8_config is not None:
        return int8zlib_packer(int8_config)
    return DEFAULT_PACKERS[plan.export]


def measure(
    cfg: ModelConfig, packer: Packer | None = None, seed: int = 0, bigram_logprior: Any = None
) -> int:
    """Compressed bytes of `cfg`'s randomly initialised model (with the real bigram table if given) packed."""
    pack = packer or DEFAULT_PACKERS[cfg.quant_plan.export]
    model = random_model(cfg, seed, bigram_logprior)
    with tempfile.TemporaryDirectory(prefix="golf-budget-") as tmp:
        return int(pack(model, Path(tmp) / "probe.bin"))


def part_breakdown(cfg: ModelConfig) -> list[dict[str, Any]]:
    """The plan as stored: one row per (family, depth) with its spec label(s), numel and payload bytes.

    Built on the meta device (shapes only); aliases (the tied head) are left out. This is what the
    report shows as "spec per family × depth, bytes per part".
    """
    from golfmodel.quant.assign import is_scale_of_qlinear, owners, slot_for
    from golfmodel.quant.kinds import kind_for

    with torch.device("meta"):
        model = build_model(cfg)
    plan, own, seen = cfg.quant_plan, owners(model), set()
    rows: dict[tuple[str, Any], dict[str, Any]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if is_scale_of_qlinear(name, own[name]) or id(t) in seen:
            continue
        seen.add(id(t))
        slot = slot_for(name, tuple(t.shape), own[name], plan)
        kind = kind_for(slot.spec)
        row = rows.setdefault(
            (slot.family, slot.depth),
            {"family": slot.family, "depth": slot.depth, "specs": [], "numel": 0, "payload_bytes": 0},
        )
        label = kind.label(tuple(t.shape))
        if label not in row["specs"]:
            row["specs"].append(label)
        row["numel"] += t.numel()
        row["payload_bytes"] += kind.stored_bytes(tuple(t.shape))
    return list(rows.values())
