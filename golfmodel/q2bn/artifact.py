"""Pack a model into a Q2BN artifact, load it back, and the export view both must agree with.

Storage kind of each state-dict tensor (first name of a storage wins; later names → alias):

    Q2Linear.weight                         kind 0 q2-rows (its τ buffer lives in the record)
                                            or kind 2 fp32 with linear_kind="fp32" (fp32 twin)
    nn.Embedding / other nn.Linear weights  kind 3 int8-rows (embedding, untied head, gpt-int8 matrices)
    buffers named in INT8_BUFFERS           kind 3 int8-rows (the bigram log-prior)
    names (last component) in keep_fp32     kind 2 fp32
    every other float tensor                kind 1 fp16 (norm gains, log_dt, query gains, biases)
    tied tensors (same storage)             kind 4 alias of the first record
    non-persistent buffers (RoPE tables)    not stored (absent from the state dict)

Tensors go in state-dict order, i.e. the model's registration order (embedding, blocks in
depth order, head). `export_view` decodes exactly the records `pack_model` writes, so the loaded
weights equal it bit for bit. `load_model` copies the stored weights into a freshly built model
and switches QAT off: a Q2Linear then runs a plain linear on its weight, which *is* the
dequantised weight (and switching QAT back on reproduces it, since quantising a dequantised
weight with the same τ is the identity).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
    q2_tau,
    read_q2bn_contents,
    write_q2bn,
)
from golfmodel.quant.assign import FP32, is_scale_of_qlinear, owners, slot_for
from golfmodel.quant.kinds import kind_for
from golfmodel.quant.plan import QuantPlan, named_plan
from golfmodel.quant.qlinear import QLinear, no_tau_init, qlinears
from golfmodel.quant.spec import QuantSpec

LINEAR_KINDS = ("q2", "fp32")
V1_KINDS = {
    ("q2", 2, 0): Kind.Q2_ROWS,
    ("int", 8, 0): Kind.INT8_ROWS,
    ("fp16", 16, 0): Kind.FP16,
    ("fp32", 32, 0): Kind.FP32,
}
KEEP_FP32: tuple[str, ...] = ()  # fp16 suffices for gains and log Δt; see docs/decisions/quant.md

ModelBuilder = Callable[[dict[str, Any]], nn.Module]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One record of an artifact: name, kind, shape and payload bytes (before compression)."""

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
    return tuple(TensorInfo(r.name, r.kind.name.lower(), r.shape, len(r.payload)) for r in records)


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


def _v1_kind(spec: QuantSpec, name: str) -> Kind:
    """The Q2BN v1 kind of a spec (v1 has q2 per-row, int8 per-row, fp16, fp32)."""
    kind = V1_KINDS.get((spec.kind, spec.bits, spec.group_size))
    if kind is None:
        raise ValueError(f"{name}: spec {spec.label} has no Q2BN version-1 record kind")
    return kind


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
        kind = kind_for(spec)
        if scale is None and spec.has_scale:
            scale = kind.fit_scale(t.detach().float())  # embeddings, bigram table: the rule's own scale
        rec = TensorRecord(
            name, _v1_kind(spec, name), tuple(t.shape), kind.encode(t.detach().float(), scale, name)
        )
        if key is not None:
            first[key] = len(records)
        records.append(rec)
    return records


def state_from_records(records: Sequence[TensorRecord], source: str = "<records>") -> dict[str, Tensor]:
    """A state dict (fp32) from records; a q2 record `X.weight` also yields its τ as `X.tau`."""
    state = decode_all(records)
    out: dict[str, Tensor] = {}
    for rec in records:
        out[rec.name] = state[rec.name]
        if rec.kind == Kind.Q2_ROWS:
            if not rec.name.endswith(".weight") and rec.name != "weight":
                raise Q2BNError(f"{source}: q2 record {rec.name!r} is not a '.weight'")
            out[rec.name[: -len("weight")] + "tau"] = q2_tau(rec).float()
    return out


def export_view(
    model: nn.Module, linear_kind: str = "q2", *, keep_fp32: Sequence[str] = KEEP_FP32
) -> dict[str, Tensor]:
    """Every persistent tensor of `model` rounded to its storage kind (fp32), as a loadable state dict."""
    return state_from_records(model_records(model, linear_kind, keep_fp32=keep_fp32))


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
    header: dict[str, Any] = {"format": "q2bn", "linear_kind": linear_kind, **meta}
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
    """Rebuild the model from the artifact's header and load the stored weights; QAT off, eval mode.

    builder: config dict → model (default: golfmodel.model.build_model(ModelConfig.from_dict(...))).
    """
    contents = read_q2bn_contents(path)
    state = state_from_records(contents.records, str(path))
    try:
        with no_tau_init():  # τ comes from the artifact
            model = (builder or build_from_config)(contents.header["model"])
    except (TypeError, ValueError) as e:
        raise Q2BNError(f"{path}: cannot build the model its header describes: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise Q2BNError(f"{path}: stored tensors do not fit the model built from its header: {e}") from None
    for layer in qlinears(model):
        layer.set_qat(False)
    model.eval()
    return model, contents.header
