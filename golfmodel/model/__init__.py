"""golfmodel.model: the two architectures, their config, and per-tensor byte accounting.

    cfg = ModelConfig(arm="geode", plan="int4", vocab_size=1024, d_model=576, depth=4, n_heads=8,
                      n_kv_heads=4, mlp_mult=8/3)   # or arm="q2-geode" (= geode + q2), geode(), ...
    model = build_model(cfg)          # HybridLM (geode) or GPT (gpt), layers from cfg.quant_plan
    rows = param_report(model)        # [(name, shape, numel, kind, bytes), ...]

The storage rules live in `golfmodel/quant/` (one class per kind, `assign.slot_for` for which
tensor gets which spec); this module only sums what they say. The architecture modules are
imported when a model is built, so `golfmodel.model.config` stays light.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from torch import nn

from golfmodel.model.config import ModelConfig, geode, head_shape, naive_baseline
from golfmodel.quant.assign import is_scale_of_qlinear, owners, slot_for
from golfmodel.quant.kinds import kind_for
from golfmodel.quant.plan import CONTROL_TENSOR_PATTERNS, INT8_KEEP_FLOAT_MAX_NUMEL, QuantPlan

__all__ = [
    "CONTROL_TENSOR_PATTERNS",
    "INT8_KEEP_FLOAT_MAX_NUMEL",
    "ModelConfig",
    "ParamRow",
    "build_model",
    "geode",
    "head_shape",
    "naive_baseline",
    "param_report",
    "storage_kind",
]


class ParamRow(NamedTuple):
    """One stored tensor: its storage label ("q2", "int8", "int4g64", "fp16", "fp32", "alias", ...) and payload bytes."""

    name: str
    shape: tuple[int, ...]
    numel: int
    kind: str
    bytes: int


def build_model(cfg: ModelConfig) -> nn.Module:
    """The model of `cfg.arch`: HybridLM for "geode", GPT for "gpt"."""
    if cfg.arch == "geode":
        from golfmodel.model.hybrid import HybridLM

        return HybridLM(cfg)
    from golfmodel.model.gpt import GPT  # ModelConfig admits only the two architectures

    return GPT(cfg)


def storage_kind(name: str, shape: tuple[int, ...], module: nn.Module, plan: QuantPlan) -> str:
    """Storage label of a (non-alias) tensor named `name` owned by `module` under `plan` (SPEC §4–5)."""
    slot = slot_for(name, shape, module, plan)
    return kind_for(slot.spec).label(shape)


def _report_plan(model: nn.Module, int8_config: Any) -> QuantPlan:
    plan = model.config.quant_plan
    if int8_config is not None and plan.keep_float_max_numel:
        plan = plan.with_export_rules(
            keep_float_max_numel=int8_config.keep_float_max_numel,
            fp32_patterns=tuple(int8_config.keep_fp32_patterns),
        )
    return plan


def param_report(model: nn.Module, *, int8_config: Any = None) -> list[ParamRow]:
    """Per-tensor parameter and byte accounting of the stored model, in state-dict order.

    Bytes are each tensor's payload at its storage kind (`QuantKind.stored_bytes`: before
    compression, without record headers); aliases (the tied head) 0. QLinear scales are part of
    their weight's record and are not listed. Works on meta-device models (shapes only).
    int8_config: a baseline export config (`golfmodel.q2bn.int8zlib.Int8ZlibConfig`) whose
    keep-float threshold and fp32 patterns replace the plan's (plans with the baseline's rules only).
    """
    plan = _report_plan(model, int8_config)
    own = owners(model)
    rows: list[ParamRow] = []
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if is_scale_of_qlinear(name, own[name]):
            continue
        shape = tuple(tensor.shape)
        numel = math.prod(shape)
        if id(tensor) in seen:
            rows.append(ParamRow(name, shape, numel, "alias", 0))
            continue
        seen.add(id(tensor))
        kind = kind_for(slot_for(name, shape, own[name], plan).spec)
        rows.append(ParamRow(name, shape, numel, kind.label(shape), kind.stored_bytes(shape)))
    return rows
