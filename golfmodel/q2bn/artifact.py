"""Pack a model into a Q2BN artifact, load it back, and the export view both must agree with.

Which spec each state-dict tensor is stored as is the plan's (`golfmodel/quant/assign.py`,
the same rule `golfmodel.model.param_report` counts with): a QLinear weight as its own spec
(its τ lives in the record), the embedding / untied head / bigram table as the plan's embed /
bigram spec (int8 rows in every named plan), everything else as its scalars spec (fp16).
Models without a `config.quant_plan` (test stand-ins) use plan "q2". Overrides:
`linear_kind="fp32"` stores QLinear weights unrounded (the fp32 twin; τ then is an fp16 tensor
of its own), `keep_fp32` names (last component) are fp32. Tied tensors (same storage) are an
alias of the first record; non-persistent buffers (RoPE tables) are not stored.

Tensors go in state-dict order, i.e. the model's registration order (embedding, blocks in
depth order, head). Payloads are the kinds' `encode`; `export_view` decodes exactly the records
`pack_model` writes, so the loaded weights equal it bit for bit. `load_model` reads version 1
and 2 files, copies the stored weights (and each QLinear's τ from its weight record) into a
freshly built model and switches QAT off: a QLinear then runs a plain linear on its weight,
which *is* the dequantised weight (switching QAT back on reproduces it, since quantising a
dequantised weight with the same τ is the identity).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from golfmodel.q2bn.format import (
    ZSTD_LEVEL,
    Kind,
    Q2BNError,
    TensorRecord,
    decode_all,
    encode_alias,
    encode_spec,
    read_q2bn_contents,
    record_scale,
    write_q2bn,
)
from golfmodel.quant.assign import FP32, is_scale_of_qlinear, owners, slot_for
from golfmodel.quant.plan import QuantPlan, named_plan
from golfmodel.quant.qlinear import QLinear, no_tau_init, qlinears

LINEAR_KINDS = ("q2", "fp32")
KEEP_FP32: tuple[str, ...] = ()  # fp16 suffices for gains and log Δt; see docs/decisions/quant.md

ModelBuilder = Callable[[dict[str, Any]], nn.Module]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One record of an artifact: name, storage label ("q2", "int8", "int4g64", "fp16", "alias"), shape, payload bytes."""

    name: str
    kind: str
    shape: tuple[int, ...]
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class PackResult:
    """What pack_model wrote."""

    path: Path
    compressed_bytes: int
    raw_bytes: int
    sha256: str
    tensors: tuple[TensorInfo, ...]

    def kind_totals(self) -> dict[str, int]:
        """Payload bytes per storage kind."""
        return kind_totals(self.tensors)


def tensor_infos(records: Sequence[TensorRecord]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(r.name, r.label, r.shape, len(r.payload)) for r in records)


def kind_totals(infos: Sequence[TensorInfo]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for info in infos:
        totals[info.kind] = totals.get(info.kind, 0) + info.payload_bytes
    return totals


def storage_key(t: Tensor) -> tuple[int, int, tuple[int, ...], tuple[int, ...], str]:
    """Identity of a tensor's memory (tied parameters and views of one storage share it)."""
    return (
        t.untyped_storage().data_ptr(),
        t.storage_offset(),
        tuple(t.shape),
        tuple(t.stride()),
        str(t.dtype),
    )


def storage_plan(model: nn.Module) -> QuantPlan:
    """The plan whose rules store `model`: its config's plan, or plan "q2" for a model without one."""
    config = getattr(model, "config", None)
    plan = getattr(config, "quant_plan", None)
    return plan if isinstance(plan, QuantPlan) else named_plan("q2")


def model_records(
    model: nn.Module, linear_kind: str = "q2", *, keep_fp32: Sequence[str] = KEEP_FP32
) -> list[TensorRecord]:
    """The records of every persistent tensor of `model`, in state-dict order (specs from `storage_plan`)."""
    if linear_kind not in LINEAR_KINDS:
        raise ValueError(f"linear_kind: must be one of {LINEAR_KINDS}, got {linear_kind!r}")
    plan = storage_plan(model)
    own = owners(model)
    records: list[TensorRecord] = []
    first: dict[tuple[Any, ...], int] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        owner = own[name]
        if is_scale_of_qlinear(name, owner) and linear_kind == "q2":
            continue  # stored inside its weight's record (the fp32 twin keeps τ as a tensor of its own)
        key = storage_key(t) if t.numel() > 0 else None
        if key is not None and key in first:
            records.append(encode_alias(name, first[key], tuple(t.shape)))
            continue
        if not t.is_floating_point():
            raise ValueError(f"{name}: {t.dtype} tensors have no Q2BN storage kind")
        spec = slot_for(name, tuple(t.shape), owner, plan).spec
        scale = None
        if isinstance(owner, QLinear) and name.rpartition(".")[2] == "weight":
            if linear_kind == "fp32":
                spec = FP32  # the fp32 twin: shadow weights unrounded
            else:
                scale = owner.stored_scale()
        elif name.rpartition(".")[2] in keep_fp32:
            spec = FP32
        rec = encode_spec(name, t, spec, scale)  # scale None: the rule's own fit (embedding, bigram table)
        if key is not None:
            first[key] = len(records)
        records.append(rec)
    return records


def state_from_records(
    records: Sequence[TensorRecord], source: str = "<records>", *, scaled: Collection[str] | None = None
) -> dict[str, Tensor]:
    """A state dict (fp32) from records; a scaled record `X.weight` named in `scaled` also yields `X.tau`.

    scaled: the weights whose module keeps its scale as `tau` (a model's QLinear weights, see
    `scaled_weights`); None = every per-row q2 record (version 1's rule, for model-free callers).
    """
    state = decode_all(records)
    out: dict[str, Tensor] = {}
    for rec in records:
        out[rec.name] = state[rec.name]
        wants = rec.kind == Kind.Q2_ROWS and rec.group_size == 0 if scaled is None else rec.name in scaled
        if not wants:
            continue
        if not (rec.name.endswith(".weight") or rec.name == "weight"):
            raise Q2BNError(f"{source}: scaled record {rec.name!r} is not a '.weight'")
        scale = record_scale(rec)
        if scale is None:
            raise Q2BNError(f"{source}: record {rec.name!r} ({rec.label}) carries no scale for its layer's τ")
        out[rec.name[: -len("weight")] + "tau"] = scale
    return out


def scaled_weights(model: nn.Module, linear_kind: str = "q2") -> set[str]:
    """State-dict names of the weights whose QLinear keeps a τ (restored from the weight's record)."""
    if linear_kind == "fp32":
        return set()  # the fp32 twin stores τ as a tensor of its own
    return {
        f"{n}.weight" if n else "weight"
        for n, m in model.named_modules()
        if isinstance(m, QLinear) and m.tau is not None
    }


def export_view(
    model: nn.Module, linear_kind: str = "q2", *, keep_fp32: Sequence[str] = KEEP_FP32
) -> dict[str, Tensor]:
    """Every persistent tensor of `model` rounded to its storage kind (fp32), as a loadable state dict."""
    records = model_records(model, linear_kind, keep_fp32=keep_fp32)
    return state_from_records(records, scaled=scaled_weights(model, linear_kind))


def pack_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any],
    linear_kind: str = "q2",
    keep_fp32: Sequence[str] = KEEP_FP32,
    level: int = ZSTD_LEVEL,
    threads: int = 0,
) -> PackResult:
    """Write `model` as a Q2BN artifact (atomic). meta must hold `tokenizer` and `settings_hash`;
    `model` (the config dict) defaults to `model.config.to_dict()`."""
    plan = storage_plan(model)
    header: dict[str, Any] = {"format": "q2bn", "linear_kind": linear_kind, "plan": plan.to_dict(), **meta}
    if "model" not in header:
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "to_dict"):
            raise ValueError("meta lacks 'model' and the model has no config.to_dict()")
        header["model"] = config.to_dict()
    records = model_records(model, linear_kind, keep_fp32=keep_fp32)
    info = write_q2bn(path, header, records, level=level, threads=threads)
    return PackResult(Path(path), info.compressed_bytes, info.raw_bytes, info.sha256, tensor_infos(records))


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """The default builder: golfmodel.model.build_model(ModelConfig.from_dict(config))."""
    from golfmodel.model import build_model  # imported here: the model package imports the quantiser
    from golfmodel.model.config import ModelConfig

    return build_model(ModelConfig.from_dict(config))


def load_model(
    path: str | os.PathLike[str], *, builder: ModelBuilder | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a version 1 or 2 artifact's header and load the stored weights; QAT off, eval mode.

    builder: config dict → model (default: golfmodel.model.build_model(ModelConfig.from_dict(...))).
    """
    contents = read_q2bn_contents(path)
    try:
        with no_tau_init():  # τ comes from the artifact
            model = (builder or build_from_config)(contents.header["model"])
    except (TypeError, ValueError) as e:
        raise Q2BNError(f"{path}: cannot build the model its header describes: {e}") from None
    linear_kind = contents.header.get("linear_kind", "q2")
    state = state_from_records(contents.records, str(path), scaled=scaled_weights(model, linear_kind))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise Q2BNError(f"{path}: stored tensors do not fit the model built from its header: {e}") from None
    for layer in qlinears(model):
        layer.set_qat(False)
    model.eval()
    return model, contents.header
