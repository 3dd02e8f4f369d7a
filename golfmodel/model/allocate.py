"""The q2-mixed allocator: a spec per part (family × depth) from the sensitivity probe's table.

    table = SensitivityTable.load("sensitivity.json")
    alloc = allocate(table)            # Allocation: plan (QuantPlan "q2-mixed"), choices, bytes
    plan = alloc.plan                  # then the budget solver sizes the width for this plan

Issue 11 item 4: choose per part the spec that maximises loss saved per compressed byte,
against what the same bytes would buy as width, under the byte budget. Every part starts at its
cheapest candidate (compressed bytes = exact payload × the measured trained ratio of that kind,
`trained_ratio.json`); then, greedily, the upgrade (part, more expensive spec) with the most
loss saved per extra byte is taken while that rate beats `width_gain_per_byte` (what the probe
measured a byte buys as width) and the bytes fit `budget_bytes` (when given: a fixed shape).
Greedy on marginal rates is the standard knapsack relaxation here: each part's options are a
short chain, and an upgrade that does not pay more per byte than width is never worth its bytes.
The solver then fills the remaining budget with width under the chosen plan. Families the probe
does not vary (bigram table, scalars) keep the arch's default plan's spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from golfmodel.model.sensitivity import SensitivityRow, SensitivityTable
from golfmodel.model.trained_ratio import TrainedRatios, load_ratios
from golfmodel.quant.plan import QuantPlan, QuantRule, default_plan_name, named_plan
from golfmodel.quant.spec import QuantSpec

MIXED_PLAN = "q2-mixed"


@dataclass(frozen=True, kw_only=True)
class Allocation:
    """The chosen spec per part, its compressed bytes and Δ loss, and the resulting plan."""

    plan: QuantPlan
    choices: tuple[SensitivityRow, ...]  # one row (the chosen spec) per part
    compressed_bytes: dict[str, int]  # "family@depth" → predicted compressed bytes of the chosen spec
    predicted_delta_loss: float  # Σ Δ loss of the chosen specs (parts assumed independent)
    width_gain_per_byte: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "choices": [dataclasses.asdict(r) for r in self.choices],
            "compressed_bytes": dict(self.compressed_bytes),
            "predicted_delta_loss": self.predicted_delta_loss,
            "width_gain_per_byte": self.width_gain_per_byte,
        }


def _key(r: SensitivityRow) -> str:
    return f"{r.family}@{'all' if r.depth is None else r.depth}"


def allocate(
    table: SensitivityTable,
    *,
    budget_bytes: float | None = None,
    ratios: TrainedRatios | None = None,
    export: str = "q2bn",
) -> Allocation:
    """The q2-mixed choice from a probe table (see module doc); budget_bytes caps the parts' total bytes."""
    ratios = ratios or load_ratios()

    def cost(r: SensitivityRow) -> float:
        return r.payload_bytes * ratios.ratio(export, r.spec)

    options: dict[tuple[str, int | None], list[SensitivityRow]] = {}
    for r in table.rows:
        options.setdefault((r.family, r.depth), []).append(r)
    if not options:
        raise ValueError("sensitivity: the table has no rows (no part could be probed)")
    chosen = {p: min(rows, key=lambda r: (cost(r), r.delta_loss)) for p, rows in options.items()}
    total = sum(cost(r) for r in chosen.values())
    rate = table.width_gain_per_byte
    while True:
        best: tuple[float, tuple[str, int | None], SensitivityRow] | None = None
        for p, rows in options.items():
            cur = chosen[p]
            for r in rows:
                extra = cost(r) - cost(cur)
                saved = cur.delta_loss - r.delta_loss
                if extra <= 0 or saved <= 0:
                    continue
                if budget_bytes is not None and total + extra > budget_bytes:
                    continue
                if best is None or saved / extra > best[0]:
                    best = (saved / extra, p, r)
        if best is None or best[0] <= rate:
            break
        _, p, r = best
        total += cost(r) - cost(chosen[p])
        chosen[p] = r
    plan = mixed_plan(table, chosen.values())
    return Allocation(
        plan=plan,
        choices=tuple(chosen.values()),
        compressed_bytes={_key(r): round(cost(r)) for r in chosen.values()},
        predicted_delta_loss=sum(r.delta_loss for r in chosen.values()),
        width_gain_per_byte=rate,
    )


def mixed_plan(table: SensitivityTable, choices: Any) -> QuantPlan:
    """QuantPlan "q2-mixed": one rule per chosen part, then the arch's default plan's rules for coverage."""
    from golfmodel.quant.plan import arm_arch

    base = named_plan(default_plan_name(arm_arch(table.config["arm"])))
    rules = [QuantRule(family=r.family, depth=r.depth, spec=QuantSpec.parse(r.spec)) for r in choices]
    return dataclasses.replace(base, name=MIXED_PLAN, rules=(*rules, *base.rules))


def format_allocation(alloc: Allocation) -> str:
    """The chosen spec per part with its compressed bytes and Δ loss."""
    lines = [f"{'part':<16}{'depth':>6}{'spec':>14}{'bytes':>12}{'Δ loss':>10}"]
    for r in alloc.choices:
        lines.append(
            f"{r.family:<16}{'all' if r.depth is None else r.depth:>6}{r.spec:>14}"
            f"{alloc.compressed_bytes[_key(r)]:>12,}{r.delta_loss:>10.4f}"
        )
    lines.append(
        f"predicted Σ Δ loss {alloc.predicted_delta_loss:.4f} nats/token; width buys "
        f"{alloc.width_gain_per_byte * 1e3:.6f} nats/token per KB"
    )
    return "\n".join(lines)
