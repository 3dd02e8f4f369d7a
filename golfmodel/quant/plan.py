"""`QuantPlan`: tensor family × depth → `QuantSpec` (SPEC §4 rev. 2), and the one table of named plans and arms.

    plan = named_plan("q2")                      # or resolve_plan("int4"), QuantPlan.from_dict(table)
    plan.spec_for("mlp_down", depth=2)           # QuantSpec of group/layer 2's MLP down projection
    arch, plan = parse_arm("q2-geode")           # old arm names are aliases: ("geode", q2 plan)

Families: embed (token embedding; an untied head too), attn_qkv, attn_o, mlp_in (gate/up or
fc), mlp_down (down or proj), cfc_in (W1/W2), cfc_out (W_out), bigram (the log-prior table),
scalars (norm gains, log Δt, query gains, the baseline's control vectors). Depth is the Geode
group (geode) or the layer index (gpt); `depth=None` in a rule matches every depth. Rules are
tried in order and the first match wins; every family must be matched at every depth.

`qat=False` plans (the int8 baseline) build plain nn.Linear layers and quantise only at export;
`export` names the container ("q2bn" or the baseline's "int8zlib"); `keep_float_max_numel`
and `fp32_patterns` are the baseline's export rules (small tensors stay float; control tensors
fp32). This module is the only place that knows plan or arm names (STYLE §11).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from golfmodel.quant.spec import QuantSpec

FAMILIES = ("embed", "attn_qkv", "attn_o", "mlp_in", "mlp_down", "cfc_in", "cfc_out", "bigram", "scalars")
MATRIX_FAMILIES = ("attn_qkv", "attn_o", "mlp_in", "mlp_down", "cfc_in", "cfc_out")
ARCHS = ("geode", "gpt")
EXPORTS = ("q2bn", "int8zlib")
EXPORT_SUFFIX = {"q2bn": ".q2bn", "int8zlib": ".int8.ptz"}  # artifact file name suffix per container
# The baseline's control tensors (train_gpt.py CONTROL_TENSOR_NAME_PATTERNS), kept fp32 when small.
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
INT8_KEEP_FLOAT_MAX_NUMEL = 65_536  # the baseline keeps float tensors of at most this many elements


@dataclass(frozen=True, kw_only=True)
class QuantRule:
    """Tensors of `family` at `depth` (None = every depth) are stored as `spec`."""

    family: str
    depth: int | None = None
    spec: QuantSpec

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family: must be one of {FAMILIES}, got {self.family!r}")
        if self.depth is not None and (
            isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0
        ):
            raise ValueError(f"depth: must be None (all) or a non-negative int, got {self.depth!r}")
        if not isinstance(self.spec, QuantSpec):
            raise ValueError(f"spec: must be a QuantSpec, got {self.spec!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "depth": self.depth, "spec": self.spec.to_dict()}


@dataclass(frozen=True, kw_only=True)
class QuantPlan:
    """Ordered rules family × depth → spec, plus the export container and its float rules."""

    name: str
    rules: tuple[QuantRule, ...]
    qat: bool = True
    export: str = "q2bn"
    keep_float_max_numel: int = 0  # > 0: tensors of at most this many elements use the "scalars" spec
    fp32_patterns: tuple[str, ...] = field(
        default=()
    )  # names containing one of these: fp32 (when kept float)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "fp32_patterns", tuple(self.fp32_patterns))
        if self.export not in EXPORTS:
            raise ValueError(f"export: must be one of {EXPORTS}, got {self.export!r}")
        if (
            isinstance(self.keep_float_max_numel, bool)
            or not isinstance(self.keep_float_max_numel, int)
            or self.keep_float_max_numel < 0
        ):
            raise ValueError(f"keep_float_max_numel: must be an int >= 0, got {self.keep_float_max_numel!r}")
        if not isinstance(self.qat, bool):
            raise ValueError(f"qat: must be a bool, got {self.qat!r}")
        covered = {r.family for r in self.rules if r.depth is None}
        missing = [f for f in FAMILIES if f not in covered]
        if missing:
            raise ValueError(f"rules: plan {self.name!r} has no all-depth rule for families {missing}")
        for r in self.rules:
            if r.family in ("scalars",) and r.spec.has_scale:
                raise ValueError(f"rules: family 'scalars' must be fp16 or fp32, got {r.spec.label}")

    def spec_for(self, family: str, depth: int | None = None) -> QuantSpec:
        """The first rule's spec matching (family, depth)."""
        if family not in FAMILIES:
            raise ValueError(f"family: must be one of {FAMILIES}, got {family!r}")
        for r in self.rules:
            if r.family == family and (r.depth is None or r.depth == depth):
                return r.spec
        raise AssertionError("unreachable: __post_init__ checks coverage")  # pragma: no cover

    def linear_spec(self, family: str, depth: int) -> QuantSpec | None:
        """The spec a model's linear layer trains with, or None for a plain nn.Linear (qat=False plans)."""
        return self.spec_for(family, depth) if self.qat else None

    def with_export_rules(self, *, keep_float_max_numel: int, fp32_patterns: tuple[str, ...]) -> QuantPlan:
        """This plan with other baseline float rules (an Int8ZlibConfig's), for byte accounting."""
        return replace(self, keep_float_max_numel=keep_float_max_numel, fp32_patterns=tuple(fp32_patterns))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rules": [r.to_dict() for r in self.rules],
            "qat": self.qat,
            "export": self.export,
            "keep_float_max_numel": self.keep_float_max_numel,
            "fp32_patterns": list(self.fp32_patterns),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "plan") -> QuantPlan:
        """From `to_dict()` output; a rule's spec may be a label ("int4g64"). Errors name the rule."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a plan must be an object, got {type(data).__name__}")
        unknown = sorted(
            set(data) - {"name", "rules", "qat", "export", "keep_float_max_numel", "fp32_patterns"}
        )
        if unknown:
            raise ValueError(f"{where}: unknown plan keys {unknown}")
        if not isinstance(data.get("rules"), list):
            raise ValueError(f"{where}.rules: must be a list of rules")
        rules = []
        for i, r in enumerate(data["rules"]):
            at = f"{where}.rules[{i}]"
            if not isinstance(r, dict) or set(r) - {"family", "depth", "spec"} or "spec" not in r:
                raise ValueError(f"{at}: a rule is an object with 'family', optional 'depth' and 'spec'")
            try:
                rules.append(
                    QuantRule(
                        family=r.get("family"),
                        depth=r.get("depth"),
                        spec=QuantSpec.from_dict(r["spec"], f"{at}.spec"),
                    )
                )
            except ValueError as e:
                raise ValueError(f"{at}: {e}") from None
        kw = {k: data[k] for k in ("qat", "export", "keep_float_max_numel", "fp32_patterns") if k in data}
        try:
            return cls(name=data.get("name", "custom"), rules=tuple(rules), **kw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None


# --- the named plans (ONE table) ---------------------------------------------------------------


def _uniform(name: str, block: QuantSpec, *, embed: QuantSpec | None = None, **kw: Any) -> QuantPlan:
    """Every block matrix `block`, the embedding and bigram table int8 rows, scalars fp16."""
    int8 = QuantSpec(kind="int", bits=8, scale="absmax")
    rules = [QuantRule(family=f, spec=block) for f in MATRIX_FAMILIES]
    rules += [
        QuantRule(family="embed", spec=embed or int8),
        QuantRule(family="bigram", spec=int8),
        QuantRule(family="scalars", spec=QuantSpec(kind="fp16")),
    ]
    return QuantPlan(name=name, rules=tuple(rules), **kw)


def _int8_baseline() -> QuantPlan:
    """The challenge baseline's export (quantize_state_dict_int8 + zlib 9): int8 rows, small tensors float."""
    return _uniform(
        "int8",
        QuantSpec(kind="int", bits=8, scale="absmax"),
        qat=False,
        export="int8zlib",
        keep_float_max_numel=INT8_KEEP_FLOAT_MAX_NUMEL,
        fp32_patterns=CONTROL_TENSOR_PATTERNS,
    )


PLANS = {
    "q2": lambda: _uniform("q2", QuantSpec(kind="q2")),  # the seeds' design: today's q2-geode bit for bit
    # q2 with a learned per-row scale (LSQ gradient, AdamW at optim.scale_lr; ParetoQ's 2-bit "SEQ")
    "q2-learned": lambda: _uniform("q2-learned", QuantSpec(kind="q2", scale="learned")),
    "ternary": lambda: _uniform("ternary", QuantSpec(kind="ternary")),
    "int4": lambda: _uniform("int4", QuantSpec(kind="int", bits=4)),
    "int6": lambda: _uniform("int6", QuantSpec(kind="int", bits=6)),
    "int8": _int8_baseline,
}
ALLOCATED_PLANS = ("q2-mixed",)  # built by the allocator: QuantPlan.from_dict(its table)
ARM_ALIASES = {"q2-geode": ("geode", "q2"), "gpt-int8": ("gpt", "int8")}  # old arm names
DEFAULT_PLAN = {"geode": "q2", "gpt": "int8"}


def plan_names() -> tuple[str, ...]:
    return (*PLANS, *ALLOCATED_PLANS)


def named_plan(name: str) -> QuantPlan:
    """A plan from the table by name; allocator plans (q2-mixed) need their table (`plan_from_table`)."""
    if name in ALLOCATED_PLANS:
        raise ValueError(f"plan: {name!r} is chosen by the allocator; build it with plan_from_table(table)")
    if name not in PLANS:
        raise ValueError(f"plan: unknown plan {name!r}; named plans are {plan_names()}")
    return PLANS[name]()


def plan_from_table(table: dict[str, Any] | str, name: str = "q2-mixed") -> QuantPlan:
    """An allocator's plan from its JSON text or dict (`QuantPlan.to_dict()` form; name defaults to q2-mixed)."""
    data = json.loads(table) if isinstance(table, str) else dict(table)
    data.setdefault("name", name)
    return QuantPlan.from_dict(data, where=f"plan {data['name']!r}")


def resolve_plan(plan: QuantPlan | dict[str, Any] | str) -> QuantPlan:
    """A QuantPlan from a plan, its dict form, or a plan name."""
    if isinstance(plan, QuantPlan):
        return plan
    if isinstance(plan, dict):
        return QuantPlan.from_dict(plan)
    if isinstance(plan, str):
        return named_plan(plan)
    raise ValueError(f"plan: must be a name, a table or a QuantPlan, got {type(plan).__name__}")


def arm_arch(arm: str) -> str:
    """The architecture of an arm name ("geode", "gpt", or an alias)."""
    if arm in ARM_ALIASES:
        return ARM_ALIASES[arm][0]
    if arm in ARCHS:
        return arm
    raise ValueError(f"arm: must be one of {(*ARCHS, *ARM_ALIASES)}, got {arm!r}")


def default_plan_name(arm: str) -> str:
    """The plan an arm name implies when none is given (alias → its plan; geode → q2, gpt → int8)."""
    return ARM_ALIASES[arm][1] if arm in ARM_ALIASES else DEFAULT_PLAN[arm_arch(arm)]


def parse_arm(arm: str, plan: QuantPlan | dict[str, Any] | str | None = None) -> tuple[str, QuantPlan]:
    """(architecture, plan) of an arm; an alias with a different explicit plan is an error."""
    arch = arm_arch(arm)
    if plan is None:
        return arch, named_plan(default_plan_name(arm))
    resolved = resolve_plan(plan)
    if arm in ARM_ALIASES and resolved.name != ARM_ALIASES[arm][1]:
        raise ValueError(
            f"plan: arm {arm!r} is the alias of {ARM_ALIASES[arm]}; for plan {resolved.name!r} use arm={arch!r}"
        )
    return arch, resolved
