"""The gpt-int8 arm's artifact: the challenge baseline's int8 + zlib export (SPEC §6).

Mirrors `quantize_state_dict_int8` of the challenge's train_gpt.py: float tensors with at most
65,536 elements are kept (fp16, or fp32 for the control tensors matched by name); larger 2-D
float tensors become int8 per row with the row's absolute value clipped at the 99.99984th
percentile and scale = max(clip/127, 1/127) stored as fp16 (q is rounded with the fp32 scale, as
the baseline does); larger other float tensors get one fp32 scale; non-float tensors pass
through. The dict is `torch.save`d and compressed with `zlib.compress(level=9)`.

Two additions the baseline does not need: tied tensors (the baseline has no second name for the
embedding; our GPT's tied lm_head does) are stored once and listed in `aliases`, and a JSON
`header` (model config, tokenizer, settings hash) lets `load_int8zlib` rebuild the model.
Loading uses `torch.load(weights_only=True)`. The artifact size of this arm is the file's size.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from golfmodel.atomic import atomic_write_bytes
from golfmodel.model import CONTROL_TENSOR_PATTERNS
from golfmodel.q2bn.artifact import ModelBuilder, PackResult, TensorInfo, build_from_config, storage_key
from golfmodel.q2bn.format import check_header
from golfmodel.quant.qlinear import no_tau_init

FORMAT = "int8_clean_per_row_v1"
BASELINE_CONTROL_PATTERNS = CONTROL_TENSOR_PATTERNS  # the challenge baseline's fp32 control tensors
_QUANTILE_MAX_ELEMS = 1 << 24  # torch.quantile refuses larger inputs; rows are processed in chunks


class Int8ZlibError(ValueError):
    """An int8+zlib artifact is malformed; the message names the file and the fault."""


@dataclass(frozen=True, kw_only=True)
class Int8ZlibConfig:
    """Export rules; the defaults are the challenge baseline's."""

    clip_percentile: float = 99.99984
    keep_float_max_numel: int = 65_536
    keep_fp32_patterns: tuple[str, ...] = BASELINE_CONTROL_PATTERNS
    min_scale: float = 1.0 / 127.0
    zlib_level: int = 9


def _row_clip(t: Tensor, q: float) -> Tensor:
    """Per-row q-quantile of |t| (out,), in row chunks that torch.quantile accepts."""
    rows = max(1, _QUANTILE_MAX_ELEMS // max(t.shape[1], 1))
    return torch.cat([torch.quantile(t[i : i + rows].abs(), q, dim=1) for i in range(0, t.shape[0], rows)])


def _quantize(t: Tensor, cfg: Int8ZlibConfig) -> tuple[Tensor, Tensor]:
    q_level = cfg.clip_percentile / 100.0
    if t.ndim == 2:
        clip = _row_clip(t, q_level) if t.numel() else torch.empty(t.shape[0])
        clipped = torch.maximum(torch.minimum(t, clip[:, None]), -clip[:, None])
        scale = (clip / 127.0).clamp_min(cfg.min_scale)  # (out,) fp32; stored as fp16 below
        q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8)
        return q.contiguous(), scale.half().contiguous()
    clip_abs = float(torch.quantile(t.abs().flatten(), q_level).item()) if t.numel() else 0.0
    scale = torch.tensor(clip_abs / 127.0 if clip_abs > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(t, -clip_abs, clip_abs) / scale), -127, 127).to(torch.int8)
    return q.contiguous(), scale


def quantize_state(state: dict[str, Tensor], cfg: Int8ZlibConfig = Int8ZlibConfig()) -> dict[str, Any]:
    """The baseline's quantised object for a state dict (tied entries become `aliases`)."""
    obj: dict[str, Any] = {
        "__quant_format__": FORMAT,
        "quantized": {},
        "scales": {},
        "dtypes": {},
        "passthrough": {},
        "passthrough_orig_dtypes": {},
        "qmeta": {},
        "aliases": {},
    }
    first: dict[tuple[Any, ...], str] = {}
    for name, tensor in state.items():
        key = storage_key(tensor) if tensor.numel() > 0 else None
        if key is not None and key in first:
            obj["aliases"][name] = first[key]
            continue
        if key is not None:
            first[key] = name
        t = tensor.detach().to("cpu").contiguous()
        if not t.is_floating_point():
            obj["passthrough"][name] = t.clone()
        elif t.numel() <= cfg.keep_float_max_numel:
            if any(p in name for p in cfg.keep_fp32_patterns):
                obj["passthrough"][name] = t.float().clone()
            else:
                obj["passthrough_orig_dtypes"][name] = str(t.dtype).removeprefix("torch.")
                obj["passthrough"][name] = t.half()
        else:
            q, s = _quantize(t.float(), cfg)
            if s.ndim > 0:
                obj["qmeta"][name] = {"scheme": "per_row", "axis": 0}
            obj["quantized"][name] = q
            obj["scales"][name] = s
            obj["dtypes"][name] = str(t.dtype).removeprefix("torch.")
    return obj


def dequantize_state(obj: dict[str, Any], source: str = "<object>") -> dict[str, Tensor]:
    """Inverse of quantize_state (the baseline's dequantize_state_dict_int8 plus aliases)."""
    out: dict[str, Tensor] = {}
    try:
        for name, q in obj["quantized"].items():
            dtype = getattr(torch, obj["dtypes"][name])
            s = obj["scales"][name]
            if q.dtype != torch.int8:
                raise Int8ZlibError(f"{source}: {name!r} is {q.dtype}, expected int8")
            if s.ndim > 0:
                if s.shape != (q.shape[0],):
                    raise Int8ZlibError(
                        f"{source}: {name!r} has {tuple(s.shape)} scales for {q.shape[0]} rows"
                    )
                w = q.float() * s.float().view(q.shape[0], *([1] * (q.ndim - 1)))
            else:
                w = q.float() * float(s.item())
            out[name] = w.to(dtype).contiguous()
        for name, t in obj["passthrough"].items():
            orig = obj["passthrough_orig_dtypes"].get(name)
            out[name] = t.to(getattr(torch, orig)).contiguous() if isinstance(orig, str) else t.contiguous()
        for name, target in obj.get("aliases", {}).items():
            out[name] = out[target]
    except (KeyError, AttributeError, TypeError) as e:
        raise Int8ZlibError(f"{source}: malformed int8 object: {type(e).__name__}: {e}") from None
    return out


def int8zlib_view(model: nn.Module, cfg: Int8ZlibConfig = Int8ZlibConfig()) -> dict[str, Tensor]:
    """The state dict the gpt-int8 artifact of `model` loads as."""
    return dequantize_state(quantize_state(model.state_dict(), cfg))


def _infos(obj: dict[str, Any]) -> tuple[TensorInfo, ...]:
    rows = [
        TensorInfo(
            n, "int8", tuple(q.shape), q.numel() + obj["scales"][n].numel() * obj["scales"][n].element_size()
        )
        for n, q in obj["quantized"].items()
    ]
    rows += [
        TensorInfo(n, str(t.dtype).removeprefix("torch."), tuple(t.shape), t.numel() * t.element_size())
        for n, t in obj["passthrough"].items()
    ]
    shapes = {r.name: r.shape for r in rows}
    rows += [TensorInfo(n, "alias", shapes.get(t, ()), 0) for n, t in obj["aliases"].items()]
    return tuple(rows)


def pack_int8zlib(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any],
    cfg: Int8ZlibConfig = Int8ZlibConfig(),
) -> PackResult:
    """Write the gpt-int8 artifact of `model` (atomic); meta as for pack_model."""
    header: dict[str, Any] = {"format": FORMAT, **meta}
    if "model" not in header:
        header["model"] = model.config.to_dict()
    fault = check_header(header)
    if fault is not None:
        raise ValueError(fault)
    obj = quantize_state(model.state_dict(), cfg)
    obj["header"] = json.dumps(header, sort_keys=True, ensure_ascii=False, allow_nan=False)
    buf = io.BytesIO()
    torch.save(obj, buf)
    raw = buf.getvalue()
    blob = zlib.compress(raw, level=cfg.zlib_level)
    atomic_write_bytes(Path(path), blob)
    return PackResult(Path(path), len(blob), len(raw), hashlib.sha256(blob).hexdigest(), _infos(obj))


def read_int8zlib(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(header, quantised object, decompressed size) of an int8+zlib artifact."""
    path = Path(path)
    try:
        raw = zlib.decompress(path.read_bytes())
    except OSError as e:
        raise Int8ZlibError(f"{path}: cannot read: {e.strerror or e}") from None
    except zlib.error as e:
        raise Int8ZlibError(f"{path}: corrupt or truncated zlib stream: {e}") from None
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many types on garbage
        raise Int8ZlibError(f"{path}: not a torch-saved int8 object: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict) or obj.get("__quant_format__") != FORMAT:
        raise Int8ZlibError(f"{path}: __quant_format__ is not {FORMAT!r}")
    for key in ("quantized", "scales", "dtypes", "passthrough", "passthrough_orig_dtypes", "aliases"):
        if not isinstance(obj.get(key), dict):
            raise Int8ZlibError(f"{path}: {key!r} is missing or not a dict")
    try:
        header = json.loads(obj.get("header", ""))
    except (TypeError, ValueError) as e:
        raise Int8ZlibError(f"{path}: header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("model"), dict):
        raise Int8ZlibError(f"{path}: header lacks the 'model' config")
    return header, obj, len(raw)


def load_int8zlib(
    path: str | os.PathLike[str], *, builder: ModelBuilder | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the header and load the dequantised weights (eval mode)."""
    header, obj, _ = read_int8zlib(path)
    state = dequantize_state(obj, str(path))
    try:
        with no_tau_init():  # a q2 model's τ (if any) comes from the state
            model = (builder or build_from_config)(header["model"])
        model.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError) as e:
        raise Int8ZlibError(
            f"{path}: stored tensors do not fit the model built from its header: {e}"
        ) from None
    model.eval()
    return model, header


def int8zlib_infos(obj: dict[str, Any]) -> Sequence[TensorInfo]:
    """Per-tensor rows (name, kind, shape, payload bytes) of a quantised object."""
    return _infos(obj)
