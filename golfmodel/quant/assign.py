"""Which spec each tensor of a model gets under a plan: the one rule the byte accounting and the packer share.

    factory = plan_linears(plan, depth=2)        # (family, in, out) -> layer, for group/layer 2
    specs = storage_specs(model, plan)           # state-dict name -> StorageSlot(spec, family, depth)

Models build every block matrix through `plan_linears`, which tags the layer with its family
and depth (`quant_family`, `quant_depth`), so the plan is applied to tensors by what they are,
never by parsing names. A QLinear's weight is stored as its own `spec` (what it trained with). Other tensors: the embedding (and an untied head) is `embed`, the
bigram log-prior buffer is `bigram`, everything else (gains, log Δt, control vectors) `scalars`.
Under a plan with the baseline's float rules (`keep_float_max_numel`), tensors of at most that
many elements are float instead: fp32 if the name contains one of `fp32_patterns`, else fp16.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from torch import nn

from golfmodel.quant.plan import QuantPlan
from golfmodel.quant.qlinear import QLinear, make_linear
from golfmodel.quant.spec import QuantSpec

LinearFactory = Callable[[str, int, int], nn.Linear]  # (family, in_features, out_features) -> layer
BIGRAM_BUFFER = "bigram_logprior"
FP16 = QuantSpec(kind="fp16")
FP32 = QuantSpec(kind="fp32")


class StorageSlot(NamedTuple):
    """A tensor's storage decision: its spec, family and depth (None for depth-free families)."""

    spec: QuantSpec
    family: str
    depth: int | None


def plan_linears(plan: QuantPlan, depth: int) -> LinearFactory:
    """A factory building the linear layers of group/layer `depth` as `plan` says (tagged with family/depth)."""

    def build(family: str, in_features: int, out_features: int) -> nn.Linear:
        spec = plan.linear_spec(family, depth)
        try:
            layer = make_linear(spec, in_features, out_features)
        except ValueError as e:
            raise ValueError(
                f"plan: {plan.name!r} gives {family} at depth {depth} ({in_features} -> {out_features}) "
                f"spec {spec.label if spec else None}: {e}"
            ) from None
        layer.quant_family = family
        layer.quant_depth = depth
        return layer

    return build


def class_linears(linear_cls: type[nn.Linear]) -> LinearFactory:
    """A factory from a plain layer class (untagged; for mixers built outside a model)."""
    return lambda family, i, o: linear_cls(i, o, bias=False)


def tensor_family(leaf: str, module: nn.Module) -> tuple[str, int | None]:
    """(family, depth) of tensor `leaf` owned by `module` (an untagged QLinear: "linear", None)."""
    if leaf == "weight" and hasattr(module, "quant_family"):
        return module.quant_family, module.quant_depth
    if leaf == "weight" and isinstance(module, QLinear):
        return "linear", None
    if leaf == BIGRAM_BUFFER:
        return "bigram", None
    if leaf == "weight" and isinstance(module, nn.Embedding | nn.Linear):
        return "embed", None  # the token embedding, or an untied head (the only untagged linear)
    return "scalars", None


def slot_for(name: str, shape: tuple[int, ...], module: nn.Module, plan: QuantPlan) -> StorageSlot:
    """The storage slot of tensor `name` (shape `shape`, owned by `module`) under `plan`."""
    leaf = name.rpartition(".")[2]
    family, depth = tensor_family(leaf, module)
    if leaf == "weight" and isinstance(module, QLinear):  # a layer stores what it trained with
        return StorageSlot(module.spec, family, depth)
    keep = plan.keep_float_max_numel
    if family == "scalars" or (keep and math.prod(shape) <= keep):
        if any(p in name for p in plan.fp32_patterns):
            return StorageSlot(FP32, family, depth)
        return StorageSlot(plan.spec_for("scalars") if family == "scalars" else FP16, family, depth)
    return StorageSlot(plan.spec_for(family, depth), family, depth)


def owners(model: nn.Module) -> dict[str, nn.Module]:
    """State-dict name → the module that registers it."""
    out: dict[str, nn.Module] = {}
    for mod_name, module in model.named_modules():
        for local, _ in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            out[f"{mod_name}.{local}" if mod_name else local] = module
    return out


def is_scale_of_qlinear(name: str, module: nn.Module) -> bool:
    """True for a QLinear's τ: it is stored inside its weight's record, not as a tensor of its own."""
    return isinstance(module, QLinear) and name.rpartition(".")[2] == "tau"


def storage_specs(model: nn.Module, plan: QuantPlan) -> dict[str, StorageSlot]:
    """name → slot for every persistent tensor except QLinear scales (aliases included: the caller decides)."""
    own = owners(model)
    return {
        name: slot_for(name, tuple(t.shape), own[name], plan)
        for name, t in model.state_dict(keep_vars=True).items()
        if not is_scale_of_qlinear(name, own[name])
    }
