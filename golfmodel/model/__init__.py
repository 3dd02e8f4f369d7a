"""golfmodel.model: the two language-model arms, their config, and per-tensor byte accounting.

    cfg = ModelConfig(arm="q2-geode", vocab_size=1024, d_model=576, depth=4, n_heads=8, n_kv_heads=4,
                      mlp_mult=8/3)   # or geode(), naive_baseline(), budget.solve(...).config
    model = build_model(cfg)          # HybridLM (q2-geode) or GPT (gpt-int8)
    rows = param_report(model)        # [(name, shape, numel, kind, bytes), ...]

The arm modules are imported when a model is built, so `golfmodel.model.config` stays light.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from torch import nn

from golfmodel.model.config import ModelConfig, geode, head_shape, naive_baseline

__all__ = [
    "ModelConfig",
    "ParamRow",
    "build_model",
    "geode",
    "head_shape",
    "naive_baseline",
    "param_report",
    "storage_kind",
]

# gpt-int8 export rules of the challenge baseline (train_gpt.py quantize_state_dict_int8): float
# tensors with more than 65,536 elements are int8 per row (2-D), smaller ones are kept as fp16,
# except the control tensors (matched by name), which stay fp32.
INT8_KEEP_FLOAT_MAX_NUMEL = 65_536
INT8_BUFFERS = ("bigram_logprior",)  # 2-D buffers Q2BN stores as int8 rows
CONTROL_TENSOR_PATTERNS = (
    "attn_scale",
    "attn_scales",
    "mlp_scale",
    "mlp_scales",
    "resid_mix",
    "resid_mixes",
    "q_gain",
    "skip_weight",
    "skip_weights",
)


class ParamRow(NamedTuple):
    """One stored tensor: its storage kind ("q2", "int8", "fp16", "fp32", "alias") and payload bytes."""

    name: str
    shape: tuple[int, ...]
    numel: int
    kind: str
    bytes: int


def build_model(cfg: ModelConfig) -> nn.Module:
    """The model of `cfg.arm`: HybridLM for "q2-geode", GPT for "gpt-int8"."""
    if cfg.arm == "q2-geode":
        from golfmodel.model.hybrid import HybridLM

        return HybridLM(cfg)
    if cfg.arm == "gpt-int8":
        from golfmodel.model.gpt import GPT

        return GPT(cfg)
    raise ValueError(f"arm: unknown arm {cfg.arm!r}")


def storage_kind(
    name: str,
    shape: tuple[int, ...],
    module: nn.Module,
    arm: str,
    *,
    keep_float_max_numel: int = INT8_KEEP_FLOAT_MAX_NUMEL,
    keep_fp32_patterns: tuple[str, ...] = CONTROL_TENSOR_PATTERNS,
) -> str:
    """Storage kind of a (non-alias) tensor named `name` owned by `module` (SPEC §4–5).

    q2-geode (the Q2BN packer's rules, golfmodel/q2bn/artifact.py): Q2Linear weights → "q2";
    nn.Embedding / nn.Linear weights (embedding, untied head) and the bigram prior → "int8" rows;
    everything else (norm gains, log Δt, query gains) → "fp16". gpt-int8 (the baseline's export,
    golfmodel/q2bn/int8zlib.py): tensors of at most `keep_float_max_numel` elements stay float
    (fp32 when the name matches `keep_fp32_patterns`, else fp16); larger ones are int8 ("int8"
    per row for matrices, "int8-tensor" with one scale otherwise).
    """
    numel = math.prod(shape)
    leaf = name.rpartition(".")[2]
    if arm == "q2-geode":
        if _is_q2linear(module) and leaf == "weight":
            return "q2"
        if len(shape) == 2 and (
            (isinstance(module, nn.Embedding | nn.Linear) and leaf == "weight") or leaf in INT8_BUFFERS
        ):
            return "int8"
        return "fp16"
    if numel <= keep_float_max_numel:
        return "fp32" if any(p in name for p in keep_fp32_patterns) else "fp16"
    return "int8" if len(shape) == 2 else "int8-tensor"


def _is_q2linear(module: nn.Module) -> bool:
    try:
        from golfmodel.quant.q2linear import Q2Linear
    except ImportError:  # pragma: no cover - the quantiser ships with the package
        return False
    return isinstance(module, Q2Linear)


def _payload_bytes(kind: str, shape: tuple[int, ...]) -> int:
    numel = math.prod(shape)
    rows = shape[0] if shape else 1
    cols = numel // rows if rows else 0
    if kind == "q2":
        return rows * (2 + math.ceil(cols / 4))  # fp16 τ + 4 symbols per byte, rows padded
    if kind == "int8":
        return rows * (2 + cols)  # fp16 scale + int8 per element
    if kind == "int8-tensor":
        return numel + 4  # one fp32 scale
    if kind == "fp16":
        return 2 * numel
    if kind == "fp32":
        return 4 * numel
    return 0  # alias


def param_report(model: nn.Module, *, int8_config: Any = None) -> list[ParamRow]:
    """Per-tensor parameter and byte accounting of the stored model, in state-dict order.

    Bytes are the payload of each tensor at its storage kind (before compression, without record
    headers): q2 = 2 bits per weight + fp16 τ per row, int8 rows = 1 byte + fp16 scale per row,
    fp16 = 2 bytes, fp32 = 4 bytes, aliases (the tied head) 0. Q2Linear τ buffers are part of
    their weight's q2 record and are not listed. Works on meta-device models (shapes only).
    int8_config: a gpt-int8 export config (`golfmodel.q2bn.int8zlib.Int8ZlibConfig`) whose
    keep-float threshold and fp32 patterns replace the baseline's.
    """
    arm = model.config.arm
    rules: dict[str, Any] = {}
    if int8_config is not None:
        rules = {
            "keep_float_max_numel": int8_config.keep_float_max_numel,
            "keep_fp32_patterns": tuple(int8_config.keep_fp32_patterns),
        }
    owner: dict[str, nn.Module] = {}
    for mod_name, module in model.named_modules():
        for local, _ in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            owner[f"{mod_name}.{local}" if mod_name else local] = module
    rows: list[ParamRow] = []
    seen: dict[int, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        module = owner[name]
        if _is_q2linear(module) and name.endswith(".tau"):
            continue
        shape = tuple(tensor.shape)
        numel = math.prod(shape)
        if id(tensor) in seen:
            kind = "alias"
        else:
            seen[id(tensor)] = name
            kind = storage_kind(name, shape, module, arm, **rules)
        rows.append(ParamRow(name, shape, numel, kind, _payload_bytes(kind, shape)))
    return rows
