"""The study's arm table (issue 12): an arm is an architecture × quantisation plan × treatment.

    arms = parse_arms("fp32-twin,q2,q2-mixed,ternary,int4,int6,int8", bigram="off")
    arms[0].name, arms[0].plan, arms[0].kind        # "fp32-twin", "q2", "q2-geode-fp32"

Arm names are plan names on the Geode architecture, except `int8` (gpt-int8: the challenge
baseline's module and int8 + zlib export) and `fp32-twin` (the q2 arm's shape, never quantised:
the 2-bit penalty's reference). `<arm>-fp32` is the fp32 twin of any other arm's shape (opt-in);
`<arm>+bigram` is the arm with the bigram log-prior (`--bigram-prior both` adds one per arm).
`<arm>~<lever>` is a geode arm with one trainer lever changed (issue 12 item 6: the ablation rows):
any `--ablate` name of the 3-arm bench that changes training or the model, e.g. `q2~no-avg`,
`q2~oneshot-qat`, `q2~sub-norm` (model levers re-solve the shape at equal bytes). It trains at its
base arm's chosen LR and reports its Δ against that arm, paired by seed.

`kind` is the treatment `minigolf_arm` applies (STYLE §11: the only place that maps arm names):
"q2-geode" = QAT with the plan's storage kinds, packed as Q2BN; "q2-geode-fp32" = no QAT, fp32
rows (an fp32 twin, of either architecture); "gpt-int8" = the baseline, quantised after training.
`legacy` names the arms the 3-arm bench's JSON keys keep (`q2-geode`, `q2-geode-fp32`, `gpt-int8`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_ARMS = ("fp32-twin", "q2", "q2-mixed", "ternary", "int4", "int6", "int8")
GEODE_PLANS = (
    "q2",
    "q2-mixed",
    "q2-learned",
    "ternary",
    "int4",
    "int6",
)  # geode × these plans are arms of that name
BASELINE = "int8"  # the reference arm every Δ is measured against
LEGACY_KEYS = {"q2": "q2-geode", "fp32-twin": "q2-geode-fp32", "int8": "gpt-int8"}
TWIN_SUFFIX = "-fp32"
BIGRAM_SUFFIX = "+bigram"
LEVER_SEP = "~"
# ablations that are not levers of one arm: the prior has its own suffix, plans are arms of their own
NOT_LEVERS = ("bigram",)


@dataclass(frozen=True, kw_only=True)
class StudyArm:
    """One row of the study: its name, architecture, plan, treatment, and whose shape it borrows."""

    name: str
    arch: Literal["geode", "gpt"]
    plan: str  # a plan name of golfmodel.quant.plan (q2-mixed: the allocator's, built per budget)
    kind: str  # the treatment: "q2-geode" | "q2-geode-fp32" | "gpt-int8" (see the module docstring)
    shape_of: str | None = None  # an fp32 twin: the arm whose solved shape and tokens it takes
    bigram: bool = False
    lever: str | None = None  # an `--ablate` spec changing one training/model lever of `base`
    base: str | None = None  # a lever arm: the arm it changes (its LR, its seeds, its Δ reference)

    @property
    def solver_arm(self) -> str:
        """The name `budget.solve` takes for this architecture (its alias for the baseline)."""
        return "gpt-int8" if self.arch == "gpt" else "geode"

    @property
    def is_twin(self) -> bool:
        return self.shape_of is not None

    @property
    def legacy(self) -> str | None:
        """The 3-arm bench's JSON key of this arm, if it has one (never for +bigram arms)."""
        return None if self.bigram else LEGACY_KEYS.get(self.name)

    @property
    def ablation(self) -> Any:
        """The lever as the 3-arm bench's `Ablation` (None for arms without one)."""
        from golfmodel.bench.minigolf_config import parse_ablation

        return None if self.lever is None else parse_ablation(self.lever)


def _lever(name: str) -> StudyArm:
    base_name, _, lever = name.partition(LEVER_SEP)
    base = _base(base_name)
    if base.kind != "q2-geode" or base.is_twin or base.lever is not None:
        raise ValueError(
            f"--arms: {name!r}: levers apply to the quantised geode arms ({', '.join(GEODE_PLANS)})"
        )
    from golfmodel.bench.minigolf_config import parse_ablation

    try:
        ab = parse_ablation(lever)
    except ValueError as e:
        raise ValueError(f"--arms: {name!r}: {e}") from None
    if lever in NOT_LEVERS or ab.quant:
        raise ValueError(
            f"--arms: {name!r}: {lever!r} is not a lever (plans are arms of their own; the prior is <arm>+bigram)"
        )
    return StudyArm(name=name, arch=base.arch, plan=base.plan, kind=base.kind, lever=lever, base=base.name)


def _base(name: str) -> StudyArm:
    if LEVER_SEP in name:
        return _lever(name)
    if name == BASELINE:
        return StudyArm(name=name, arch="gpt", plan="int8", kind="gpt-int8")
    if name in GEODE_PLANS:
        return StudyArm(name=name, arch="geode", plan=name, kind="q2-geode")
    if name == "fp32-twin":
        return StudyArm(name=name, arch="geode", plan="q2", kind="q2-geode-fp32", shape_of="q2")
    if name.endswith(TWIN_SUFFIX):
        of = _base(name.removesuffix(TWIN_SUFFIX))
        if of.is_twin:
            raise ValueError(f"--arms: {name!r} is the twin of a twin")
        return StudyArm(name=name, arch=of.arch, plan=of.plan, kind="q2-geode-fp32", shape_of=of.name)
    known = ", ".join((*DEFAULT_ARMS, *GEODE_PLANS[2:3], "<arm>-fp32", "<arm>+bigram", "<arm>~<lever>"))
    raise ValueError(f"--arms: unknown arm {name!r}; known: {known}")


def parse_arm(name: str) -> StudyArm:
    """One arm by name (`int4`, `int6-fp32`, `q2+bigram`); raises ValueError naming the known ones."""
    name = name.strip()
    bigram = name.endswith(BIGRAM_SUFFIX)
    arm = _base(name.removesuffix(BIGRAM_SUFFIX))
    if not bigram:
        return arm
    shape_of = None if arm.shape_of is None else arm.shape_of + BIGRAM_SUFFIX
    base = None if arm.base is None else arm.base + BIGRAM_SUFFIX
    return dataclasses.replace(arm, name=name, shape_of=shape_of, base=base, bigram=True)


def parse_arms(spec: str | tuple[str, ...], *, bigram: str = "off") -> tuple[StudyArm, ...]:
    """The study's arms from a comma list; `bigram` off | on (every arm with the prior) | both (each twice).

    A twin's source arm and a lever arm's base are added when missing (the twin needs its shape,
    the lever its reference); order is kept.
    """
    if bigram not in ("off", "on", "both"):
        raise ValueError(f"--bigram-prior: must be off, on or both, got {bigram!r}")
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise ValueError("--arms: the list is empty")
    out: list[str] = []
    for n in names:
        base = n.removesuffix(BIGRAM_SUFFIX)
        variants = {"off": [base], "on": [base + BIGRAM_SUFFIX], "both": [base, base + BIGRAM_SUFFIX]}[bigram]
        for v in variants if not n.endswith(BIGRAM_SUFFIX) else [n]:
            if v not in out:
                out.append(v)
    arms = [parse_arm(n) for n in out]
    have = {a.name for a in arms}
    for a in list(arms):
        for need in (a.shape_of, a.base):
            if need is not None and need not in have:
                arms.insert(0, parse_arm(need))
                have.add(need)
    return tuple(arms)
