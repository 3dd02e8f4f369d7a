"""QuantSpec validation and labels; QuantPlan rules, named plans, JSON and arm aliases (SPEC §4 rev. 2)."""

from __future__ import annotations

import pytest

from golfmodel.quant.plan import (
    FAMILIES,
    PLANS,
    QuantPlan,
    QuantRule,
    named_plan,
    parse_arm,
    plan_from_table,
    plan_names,
)
from golfmodel.quant.spec import QuantSpec


def test_spec_fills_the_kinds_bits() -> None:
    """bits=0 means the kind's width; int needs its bits."""
    assert QuantSpec(kind="q2").bits == 2
    assert QuantSpec(kind="fp8").bits == 8
    assert QuantSpec(kind="int", bits=4).bits == 4


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"kind": "int2"}, "kind"),
        ({"kind": "int"}, "bits"),
        ({"kind": "int", "bits": 9}, "bits"),
        ({"kind": "q2", "bits": 4}, "bits"),
        ({"kind": "q2", "group_size": -1}, "group_size"),
        ({"kind": "fp16", "group_size": 64}, "group_size"),
        ({"kind": "q2", "scale": "absmax"}, "scale"),
        ({"kind": "fp32", "scale": "learned"}, "scale"),
    ],
)
def test_spec_rejects_bad_fields_by_name(kw: dict, field: str) -> None:
    """Each invalid field raises a ValueError that names it."""
    with pytest.raises(ValueError, match=f"^{field}:"):
        QuantSpec(**kw)


@pytest.mark.parametrize("text", ["q2", "ternary", "int4g64", "int8:absmax", "fp8g32", "fp16", "q2:learned"])
def test_spec_label_parses_back(text: str) -> None:
    """parse(label[:scale]) rebuilds the spec; to_dict / from_dict round-trip."""
    spec = QuantSpec.parse(text)
    assert spec.label == text.partition(":")[0]
    assert QuantSpec.from_dict(spec.to_dict()) == spec


def test_named_plans_cover_every_family() -> None:
    """Every named plan resolves a spec for every family at any depth."""
    for name in PLANS:
        plan = named_plan(name)
        assert plan.name == name
        for family in FAMILIES:
            assert isinstance(plan.spec_for(family, 3), QuantSpec)


def test_q2_plan_is_the_seed_design() -> None:
    """q2: block matrices q2 per row (fit), embedding and bigram int8 rows (absmax), scalars fp16."""
    plan = named_plan("q2")
    assert plan.spec_for("mlp_down", 0) == QuantSpec(kind="q2")
    assert plan.spec_for("embed") == QuantSpec(kind="int", bits=8, scale="absmax")
    assert plan.spec_for("bigram") == QuantSpec(kind="int", bits=8, scale="absmax")
    assert plan.spec_for("scalars") == QuantSpec(kind="fp16")
    assert plan.qat and plan.export == "q2bn"


def test_int8_plan_is_the_baseline_export() -> None:
    """int8: no QAT, the int8+zlib container, small tensors kept float, control tensors fp32."""
    plan = named_plan("int8")
    assert not plan.qat and plan.export == "int8zlib"
    assert plan.keep_float_max_numel == 65_536 and "resid_mix" in plan.fp32_patterns


def test_first_matching_rule_wins_by_depth() -> None:
    """A depth rule before an all-depth rule overrides it at that depth only."""
    base = named_plan("q2")
    int4 = QuantSpec(kind="int", bits=4, group_size=16)
    plan = QuantPlan(name="x", rules=(QuantRule(family="mlp_down", depth=0, spec=int4), *base.rules))
    assert plan.spec_for("mlp_down", 0) == int4
    assert plan.spec_for("mlp_down", 1) == QuantSpec(kind="q2")


def test_plan_round_trips_through_json() -> None:
    """to_dict → from_dict (and the allocator's JSON entry point) gives the same plan."""
    plan = named_plan("int8")
    assert QuantPlan.from_dict(plan.to_dict()) == plan
    mixed = plan_from_table(named_plan("int4").to_json(), name="q2-mixed")
    assert mixed.rules == named_plan("int4").rules


def test_plan_table_accepts_spec_labels() -> None:
    """An allocator table may give specs as labels; a missing family is an error naming it."""
    rules = [{"family": f, "spec": "fp16" if f == "scalars" else "int6"} for f in FAMILIES]
    plan = plan_from_table({"rules": [{"family": "mlp_down", "depth": 1, "spec": "int8g32"}, *rules]})
    assert plan.name == "q2-mixed" and plan.spec_for("mlp_down", 1).label == "int8g32"
    with pytest.raises(ValueError, match="embed"):
        plan_from_table({"rules": [r for r in rules if r["family"] != "embed"]})


def test_q2_mixed_is_named_but_needs_its_table() -> None:
    """q2-mixed is a plan name, but only the allocator's table builds it."""
    assert "q2-mixed" in plan_names()
    with pytest.raises(ValueError, match="allocator"):
        named_plan("q2-mixed")


def test_old_arm_names_are_aliases() -> None:
    """q2-geode = geode + q2, gpt-int8 = gpt + int8; a clashing explicit plan is refused."""
    assert parse_arm("q2-geode") == ("geode", named_plan("q2"))
    assert parse_arm("gpt-int8") == ("gpt", named_plan("int8"))
    assert parse_arm("geode", "int4")[1].name == "int4"
    with pytest.raises(ValueError, match="plan:"):
        parse_arm("q2-geode", "int4")
