"""Models get their layers from the plan: arch × plan, depth rules, aliases, byte accounting per kind."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from golfmodel.model import ModelConfig, build_model, param_report
from golfmodel.quant.kinds import kind_for
from golfmodel.quant.plan import QuantPlan, QuantRule, named_plan
from golfmodel.quant.qlinear import Q2Linear, QLinear
from golfmodel.quant.spec import QuantSpec


def _geode(**kw: object) -> ModelConfig:
    base = dict(
        arm="geode", vocab_size=64, d_model=32, depth=2, n_heads=4, n_kv_heads=2, mlp_mult=2.0, max_seq_len=16
    )
    return ModelConfig(**{**base, **kw})


def test_alias_and_arch_build_the_same_model() -> None:
    """arm="q2-geode" and arm="geode" (plan q2 by default) give bit-identical models."""
    torch.manual_seed(0)
    a = build_model(_geode(arm="q2-geode"))
    torch.manual_seed(0)
    b = build_model(_geode())
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(isinstance(m, Q2Linear) for g in b.qat_groups() for m in g)


def test_every_linear_follows_its_family_spec() -> None:
    """Under plan int4 every block matrix is a QLinear int4 tagged with its family and group."""
    model = build_model(_geode(plan="int4"))
    layers = [m for m in model.modules() if isinstance(m, QLinear)]
    assert layers and all(m.spec == QuantSpec(kind="int", bits=4) for m in layers)
    fams = {(m.quant_family, m.quant_depth) for m in layers}
    assert ("cfc_out", 1) in fams and ("attn_qkv", 0) in fams and ("mlp_down", 1) in fams


def test_depth_rule_changes_one_group_only() -> None:
    """A rule for mlp_down at group 0 applies there and nowhere else."""
    int8g16 = QuantSpec(kind="int", bits=8, group_size=16)
    plan = QuantPlan(
        name="x", rules=(QuantRule(family="mlp_down", depth=0, spec=int8g16), *named_plan("q2").rules)
    )
    model = build_model(_geode(plan=plan))
    assert model.groups[0][0].mlp.down.spec == int8g16
    assert model.groups[1][0].mlp.down.spec == QuantSpec(kind="q2")
    assert model.groups[0][0].mlp.up.spec == QuantSpec(kind="q2")


def test_config_with_a_plan_table_round_trips() -> None:
    """A config carrying a plan table serialises it (JSON-ready) and reads it back equal; no plan, no key."""
    cfg = _geode(plan=named_plan("ternary").to_dict())
    assert isinstance(cfg.plan, QuantPlan) and cfg.quant_plan.name == "ternary"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert "plan" not in _geode().to_dict()


def test_gpt_int8_keeps_plain_linears() -> None:
    """The int8 plan is applied after training: gpt-int8 has plain nn.Linear and no QAT groups."""
    cfg = ModelConfig(
        arm="gpt-int8", vocab_size=64, d_model=32, depth=2, n_heads=4, n_kv_heads=2, mlp_mult=2.0
    )
    model = build_model(cfg)
    assert model.qat_groups() == [] and not any(isinstance(m, QLinear) for m in model.modules())


def test_gpt_with_a_qat_plan_has_layer_groups() -> None:
    """gpt + plan q2: QLinears, one QAT group per layer."""
    cfg = ModelConfig(
        arm="gpt", plan="q2", vocab_size=64, d_model=32, depth=3, n_heads=4, n_kv_heads=2, mlp_mult=2.0
    )
    groups = build_model(cfg).qat_groups()
    assert len(groups) == 3 and all(len(g) == 6 for g in groups)


@pytest.mark.parametrize("plan", ["ternary", "int4", "int6"])
def test_report_bytes_are_the_kinds_byte_counts(plan: str) -> None:
    """param_report's bytes per tensor are the plan's kind.stored_bytes (one rule, no copy)."""
    model = build_model(_geode(plan=plan))
    rows = {r.name: r for r in param_report(model)}
    spec = named_plan(plan).spec_for("mlp_down", 0)
    down = rows["groups.0.0.mlp.down.weight"]
    assert (down.kind, down.bytes) == (spec.label, kind_for(spec).stored_bytes(down.shape))


def test_alias_with_another_plan_is_refused() -> None:
    """arm="gpt-int8" with plan="q2" is contradictory: the error names the plan field."""
    with pytest.raises(ValueError, match="plan:"):
        _geode(arm="q2-geode", plan="int4")


def test_frozen_config_is_hashable_with_a_plan() -> None:
    """Configs stay hashable (dict plans are converted to frozen QuantPlans)."""
    cfg = _geode(plan=named_plan("int6").to_dict())
    assert hash(cfg) == hash(dataclasses.replace(cfg))
    assert isinstance(build_model(cfg), nn.Module)


def test_group_size_that_does_not_divide_names_the_layer() -> None:
    """A plan whose group size does not divide a layer's inputs fails naming the plan, family and depth."""
    plan = QuantPlan(
        name="g24",
        rules=(
            QuantRule(family="mlp_down", spec=QuantSpec(kind="int", bits=4, group_size=24)),
            *named_plan("q2").rules,
        ),
    )
    with pytest.raises(ValueError, match="plan: 'g24' gives mlp_down at depth 0"):
        build_model(_geode(plan=plan))


def test_switching_qat_group_by_group_never_recompiles() -> None:
    """A compiled geode model serves every QAT state (off, deepest group on, all on) with one graph."""
    torch.manual_seed(0)
    model = build_model(_geode(pattern="GC", cfc_chunk=4, mlp_mult=1.0))
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    idx = torch.randint(0, 64, (1, 4))  # one CfC chunk: the trace stays short
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled(idx)
        for group in reversed(model.qat_groups()):  # deepest first, as the trainer switches
            for layer in group:
                layer.set_qat(True)
            out = compiled(idx)
    assert torch.equal(out, model(idx))
