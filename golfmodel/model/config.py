"""Model configuration: the frozen `ModelConfig` shared by both architectures, and presets as functions.

An arm is an architecture plus a quantisation plan (`golfmodel/quant/plan.py`, SPEC §4 rev. 2).
`arm` names the architecture — "geode" or "gpt" — or is one of the old arm names, which are
aliases: "q2-geode" = geode + plan "q2", "gpt-int8" = gpt + plan "int8". `plan` is a plan name,
a plan table (`QuantPlan.to_dict()` form, e.g. the allocator's q2-mixed) or None (the arm's
default). Geode (the product, SPEC §6): `depth` groups, each a string of block letters
(`pattern`, "GCCC" by default: one GQA block then three CfC blocks), SwiGLU MLPs. gpt: the
challenge's naive baseline (`depth` layers of GQA + relu² MLP); `pattern` is unused there.
`cfg.arch` and `cfg.quant_plan` give the resolved pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from golfmodel.quant.plan import ARCHS, ARM_ALIASES, QuantPlan, arm_arch, parse_arm

ARMS = (*ARM_ALIASES, *ARCHS)
BLOCK_LETTERS = "GC"  # G = GQA mixer, C = CfC mixer
CFC_SCANS = ("auto", "torch", "triton")  # ModelConfig.cfc_scan (golfmodel.model.cfc.resolve_scan)

# Token id that starts every document, for both tokenisers (SPEC §2: pad/bos/eos/unk = 0/1/2/3).
BOS_ID = 1


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Shape and options of one model; validated on construction (errors name the field)."""

    arm: str  # "geode" | "gpt", or the aliases "q2-geode" | "gpt-int8"
    vocab_size: int
    d_model: int
    depth: int  # Geode groups (q2-geode) or layers (gpt-int8)
    pattern: str = "GCCC"
    n_heads: int
    n_kv_heads: int
    mlp_mult: float  # SwiGLU hidden = mult*d rounded to 16 (q2-geode); relu² hidden = round(mult*d)
    rope_base: float = 10000.0
    logit_softcap: float = 30.0
    bigram_prior: bool = False
    cfc_chunk: int = 64
    # CfC scan: "auto" (fused Triton kernel on CUDA, the chunked torch scan elsewhere) | "torch" | "triton"
    cfc_scan: str = "auto"
    max_seq_len: int = 1024
    tie_embeddings: bool = True
    qk_norm: bool = True
    # q2-geode: RMSNorm (with gain) on the input of each output projection (attention o, CfC W_out,
    # MLP down), BitNet's "SubLN": those projections carry most of the 2-bit error (docs/minigolf.md).
    sub_norm: bool = False
    plan: str | QuantPlan | None = (
        None  # a plan name, a QuantPlan (a dict is converted), or the arm's default
    )

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"arm: must be one of {ARMS}, got {self.arm!r}")
        if isinstance(self.plan, dict):
            object.__setattr__(self, "plan", QuantPlan.from_dict(self.plan, where="plan"))
        if self.plan is not None and not isinstance(self.plan, str | QuantPlan):
            raise ValueError(
                f"plan: must be a plan name, a plan table or None, got {type(self.plan).__name__}"
            )
        parse_arm(self.arm, self.plan)  # raises "plan: ..." for an unknown name or an alias clash
        for name in ("vocab_size", "d_model", "depth", "n_heads", "n_kv_heads", "cfc_chunk", "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: must be a positive int, got {value!r}")
        for name in ("mlp_mult", "rope_base", "logit_softcap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        for name in ("bigram_prior", "tie_embeddings", "qk_norm", "sub_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be a bool, got {getattr(self, name)!r}")
        if (
            not isinstance(self.pattern, str)
            or not self.pattern
            or any(ch not in BLOCK_LETTERS for ch in self.pattern)
        ):
            raise ValueError(
                f"pattern: must be a non-empty string of {BLOCK_LETTERS!r} letters, got {self.pattern!r}"
            )
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"n_heads: must divide d_model={self.d_model}, got {self.n_heads}")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_kv_heads: must divide n_heads={self.n_heads}, got {self.n_kv_heads}")
        if (self.d_model // self.n_heads) % 2 != 0:
            raise ValueError(f"n_heads: head_dim d_model/n_heads must be even for RoPE, got {self.head_dim}")
        if self.arch == "geode" and "G" in self.pattern and self.n_kv_heads >= self.n_heads:
            # SPEC §6: the Geode GQA mixer shares K/V across query heads (n_kv < n_heads).
            raise ValueError(
                f"n_kv_heads: q2-geode GQA needs n_kv_heads < n_heads={self.n_heads}, got {self.n_kv_heads}"
            )
        if self.mlp_hidden <= 0:
            raise ValueError(f"mlp_mult: gives an empty MLP hidden layer at d_model={self.d_model}")
        if self.cfc_scan not in CFC_SCANS:
            raise ValueError(f"cfc_scan: must be one of {CFC_SCANS}, got {self.cfc_scan!r}")
        if self.sub_norm and self.arch != "geode":
            raise ValueError(f"sub_norm: only the geode blocks have it, got arm={self.arm!r}")

    @property
    def arch(self) -> str:
        """The architecture: "geode" or "gpt"."""
        return arm_arch(self.arm)

    @cached_property
    def quant_plan(self) -> QuantPlan:
        """The resolved quantisation plan (the named plan, the table, or the arm's default)."""
        return parse_arm(self.arm, self.plan)[1]

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the MLP: SwiGLU rounds mult*d to a multiple of 16, relu² to an integer."""
        if self.arch == "geode":
            return 16 * round(self.mlp_mult * self.d_model / 16)
        return round(self.mlp_mult * self.d_model)

    @property
    def n_blocks(self) -> int:
        """Number of residual blocks (groups x pattern letters, or layers)."""
        return self.depth * len(self.pattern) if self.arch == "geode" else self.depth

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; a QuantPlan becomes its table, and no `plan` key when it is None."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.plan is None:
            del out["plan"]  # configs without a plan keep their old dict (hashes, caches, v1 headers)
        elif isinstance(self.plan, QuantPlan):
            out["plan"] = self.plan.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ModelConfig.from_dict: unknown keys {unknown}")
        return cls(**data)


def head_shape(d_model: int, head_dim: int = 64) -> tuple[int, int]:
    """Head counts for a width: (n_heads, n_heads/2) with d_model = n_heads·hd, n_heads even, hd % 8 == 0.

    hd within [head_dim/2, 2·head_dim] (narrow models: two heads of d/2) and closest to
    `head_dim`. GPU attention kernels want hd % 8 == 0, so a width such as 592 = 8 x 74 is refused
    rather than run on the slow path; even head counts keep the baseline's 2:1 query:KV ratio
    (8 heads / 4 KV at d 512) instead of falling to one KV head for a prime head count.
    ValueError if no split exists (the budget solver then skips that width).
    """
    if d_model < 16 or d_model % 8 != 0:
        raise ValueError(f"d_model: must be a multiple of 8 and >= 16, got {d_model}")
    lo, hi = min(head_dim // 2, d_model // 2), 2 * head_dim
    good = [n for n in range(2, d_model // 8 + 1, 2) if d_model % n == 0 and (d_model // n) % 8 == 0]
    good = [n for n in good if lo <= d_model // n <= hi]
    if not good:
        raise ValueError(
            f"d_model: {d_model} has no split into an even number of heads with head_dim a multiple of 8 "
            f"in [{lo}, {hi}]"
        )
    n_heads = min(good, key=lambda n: (abs(math.log(d_model / n / head_dim)), n))
    return n_heads, n_heads // 2


def naive_baseline(vocab: int = 1024) -> ModelConfig:
    """The challenge's naive baseline: 9 layers, d 512, 8 heads / 4 KV, relu² MLP x2, tied embeddings."""
    return ModelConfig(
        arm="gpt-int8", vocab_size=vocab, d_model=512, depth=9, n_heads=8, n_kv_heads=4, mlp_mult=2.0
    )


def geode(
    vocab: int = 1024, *, d_model: int = 576, groups: int = 4, pattern: str = "GCCC", mlp_mult: float = 8 / 3
) -> ModelConfig:
    """A q2-geode shape: `groups` x `pattern`, heads by `head_shape`, SwiGLU x`mlp_mult`.

    The defaults are the width and depth of the budget solver's 16,000,000-byte sp1024 plan
    (`golfmodel.model.budget.solve`, docs/decisions/model.md); the solver also widens the MLP
    into the leftover bytes, so use its plan's config for a run that must fill the budget.
    """
    n_heads, n_kv = head_shape(d_model)
    return ModelConfig(
        arm="q2-geode",
        vocab_size=vocab,
        d_model=d_model,
        depth=groups,
        pattern=pattern,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        mlp_mult=mlp_mult,
    )
