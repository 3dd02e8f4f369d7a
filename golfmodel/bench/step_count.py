"""What one training step of an arm does, counted on the real code: FLOPs and bytes per block kind.

    counts = count_arm(model_cfg, seq_len=1024, cache_dir="artifacts/cache/step_cost")

A full d 640 x 16-block model takes minutes to lower on a 2-core CPU, so the step is counted per
*unit* and scaled: one block of each kind in the arm (q2-geode: a GQA block "G" and a CfC block
"C"; gpt-int8: its GPTBlock "B"), plus the stem (embedding, first norm, final norm, tied head,
soft-cap and the cross-entropy loss). Each unit runs forward + backward at 2 sequences of
`seq_len` tokens under CPU bf16 autocast (standing in for the GPU's), QAT on for Q2Linear layers
(the phase-2/3 state that is most of the run). Cross-block fusion (one block's residual add with
the next block's norm) is therefore not seen: a small over-count, stated. gpt-int8's U-Net skip
adds and resid_mix are inside GPTBlock or negligible.

Per unit: matmul FLOPs and attention FLOPs per sequence (`torch.utils.flop_counter`, forward
and forward + backward), and inductor's bytes per sequence / per call by category
(`golfmodel.bench.inductor_count`). For CfC blocks the chunked scan is also counted alone, so
that the projection can swap it for the fused kernel's analytic traffic; and the CfC block is
counted a second time with the fused kernels as opaque ops (`golfmodel.bench.fused_standins`), so
the fused design keeps exactly the generated kernels the real kernels leave around them (softplus,
the gates, the scan and their backward are inside the scan kernel; the h cast and its gradient are
not).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from golfmodel.bench.inductor_count import StepCounts, count_step

CATEGORIES = (
    "norm + residual",
    "attention pre/post",
    "CfC gates + scan",
    "MLP gate",
    "embedding, head, loss",
    "weights (fake-quant, casts)",
)
_MM_OPS = ("aten.mm", "aten.addmm", "aten.bmm", "aten.matmul", "aten.linear")


@dataclass(frozen=True, kw_only=True)
class UnitCounts:
    """One unit's forward + backward at one sequence: FLOPs, bytes by category, kernels."""

    name: str  # "G", "C", "B" (gpt-int8 block) or "stem"
    mm_flops: float  # fwd + bwd matmul FLOPs per sequence
    attn_flops: float  # fwd + bwd attention FLOPs per sequence (analytic, non-causal count)
    fwd_mm_flops: float
    fwd_attn_flops: float
    bytes_per_seq: dict[str, float]  # generated kernels, fwd + bwd, by category
    bytes_per_call: float  # generated kernels that do not grow with the batch (weights)
    fwd_bytes_per_seq: float  # generated kernels of the forward graph only
    scan_bytes_per_seq: float  # the chunked scan alone (CfC units; 0 elsewhere)
    # CfC units counted again with the fused scan as an opaque op: what inductor leaves around the
    # kernel (its own traffic is analytic, `scan_triton.scan_traffic_bytes`); {} / 0 elsewhere
    fused_bytes_per_seq: dict[str, float] = field(default_factory=dict)
    fused_fwd_bytes_per_seq: float = 0.0
    fused_kernels: int = 0
    kernels: int  # scheduled kernels (generated + extern), fwd + bwd
    lowering_seconds: float  # CPU seconds to lower + schedule the unit's fwd and bwd graphs


@dataclass(frozen=True, kw_only=True)
class ArmCounts:
    """Units of one arm at `seq_len`, and how many of each the full model holds."""

    arm: str
    seq_len: int
    units: dict[str, UnitCounts]
    multiplicity: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "seq_len": self.seq_len,
            "units": {k: asdict(v) for k, v in self.units.items()},
            "multiplicity": self.multiplicity,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArmCounts:
        return cls(
            arm=d["arm"],
            seq_len=d["seq_len"],
            units={k: UnitCounts(**v) for k, v in d["units"].items()},
            multiplicity=d["multiplicity"],
        )


class _Stem(nn.Module):
    """Embedding → first RMSNorm → (blocks elided) → final norm → tied head → soft-cap → cross-entropy."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.tok_emb, self.final_norm, self.lm_head = model.tok_emb, model.final_norm, model.lm_head
        self.cap = model.config.logit_softcap

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = F.rms_norm(self.tok_emb(idx), (self.tok_emb.embedding_dim,))  # (B, T, d)
        logits = self.lm_head(self.final_norm(x)).float()  # (B, T, V)
        logits = self.cap * torch.tanh(logits / self.cap)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B·T,)


class _ScanOnly(nn.Module):
    def __init__(self, chunk: int) -> None:
        super().__init__()
        self.chunk = chunk

    def forward(self, ld: torch.Tensor, c: torch.Tensor, reset: torch.Tensor) -> torch.Tensor:
        from golfmodel.model.cfc import cfc_scan

        return cfc_scan(ld, c, reset, self.chunk)


def _category(unit: str, module: str) -> str:
    if unit == "stem":
        return "embedding, head, loss"
    leaf = module.rsplit(".", 1)[-1]
    if module == "" or "norm" in leaf or leaf in ("resid_mix", "attn_scale", "mlp_scale"):
        return "norm + residual"
    if module.startswith("mlp"):
        return "MLP gate"
    if module.startswith(("mixer", "attn")):
        return "CfC gates + scan" if unit == "C" else "attention pre/post"
    return "norm + residual"


def _mm_flops(fn: Any, *, backward: bool) -> float:
    """Matmul FLOPs of `fn()` (and of its backward of .float().sum()), by `FlopCounterMode`."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        out = fn()
        if backward:
            out.float().sum().backward()
    return float(
        sum(n for op, n in fc.get_flop_counts().get("Global", {}).items() if str(op).startswith(_MM_OPS))
    )


def attention_flops(cfg: Any, seq_len: int) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs of one causal-attention call per sequence, without the causal skip.

    QKᵀ and PV: 2 matmuls of 2·T²·d each forward; the flash-attention backward runs 5 (with the
    recomputation of P), so forward + backward is 3.5x the forward. (`FlopCounterMode` has no
    formula for the CPU flash kernel, so this one is analytic.)
    """
    fwd = 4.0 * seq_len * seq_len * cfg.d_model
    return fwd, 3.5 * fwd


def _qat_on(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "set_qat") and hasattr(m, "tau"):
            m.set_qat(True)


def _unit_inputs(name: str, cfg: Any, seq_len: int, batch: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if name == "stem":
        idx = torch.randint(4, cfg.vocab_size, (batch, seq_len), generator=g)
        return [idx, idx.roll(-1, dims=1)]
    x = torch.randn(batch, seq_len, cfg.d_model, generator=g).requires_grad_(True)
    if name == "C":
        reset = torch.zeros(batch, seq_len, dtype=torch.bool)
        reset[:, ::200] = True
        return [x, reset]
    if name == "B":
        return [x, torch.randn(batch, seq_len, cfg.d_model, generator=g)]
    return [x]


def _build_unit(name: str, cfg: Any) -> nn.Module:
    if name == "stem":
        from golfmodel.model import build_model

        return _Stem(build_model(dataclasses.replace(cfg, depth=1, pattern="C")))
    from golfmodel.quant.assign import plan_linears

    linear = plan_linears(
        cfg.quant_plan, 0
    )  # the plan's layers of group/layer 0 (the same kinds at every depth)
    if name == "B":
        from golfmodel.model.gpt import GPTBlock

        return GPTBlock(cfg, linear=linear)
    from golfmodel.model.hybrid import Block

    return Block(name, cfg, linear=linear)


def _count_unit(name: str, cfg: Any, seq_len: int) -> UnitCounts:
    torch.manual_seed(0)
    unit = _build_unit(name, cfg)
    _qat_on(unit)
    with (
        torch.no_grad()
    ):  # non-zero output projections: a trained-like path (zero weights are not special to inductor)
        for m in unit.modules():
            if isinstance(m, nn.Linear) and getattr(m, "_zero_init", False):
                nn.init.normal_(m.weight, std=0.02)
    one = _unit_inputs(name, cfg, seq_len, 1)
    amp = torch.autocast("cpu", dtype=torch.bfloat16)

    def fwd() -> torch.Tensor:
        with amp:
            return unit(*one)

    mm = _mm_flops(fwd, backward=True)
    with torch.no_grad():
        fmm = _mm_flops(fwd, backward=False)
    fattn, attn = attention_flops(cfg, seq_len) if name in ("G", "B") else (0.0, 0.0)
    counts: StepCounts = count_step(
        unit, _unit_inputs(name, cfg, seq_len, 2), seq_len=seq_len, autocast_dtype=torch.bfloat16
    )
    by_cat = dict.fromkeys(CATEGORIES, 0.0)
    per_call = 0.0
    for k in counts.kernels:
        if k.extern:
            continue
        by_cat[_category(name, k.module)] += k.per_seq
        per_call += k.per_call
    scan = 0.0
    lowering = counts.lowering_seconds
    fused: dict[str, float] = {}
    fused_fwd, fused_kernels = 0.0, 0
    if name == "C":
        from golfmodel.bench.fused_standins import fused_standins

        with fused_standins():  # the block again, the fused kernels opaque (extern) ops
            fc = count_step(
                unit, _unit_inputs(name, cfg, seq_len, 2), seq_len=seq_len, autocast_dtype=torch.bfloat16
            )
        fused = dict.fromkeys(CATEGORIES, 0.0)
        for k in fc.kernels:
            if not k.extern:
                fused[_category(name, k.module)] += k.per_seq
        fused_fwd, fused_kernels = fc.bytes(extern=False, backward=False)[0], len(fc.kernels)
    if name == "C":
        d = cfg.d_model
        ld = -F.softplus(torch.randn(2, seq_len, d)).requires_grad_(True)
        c = torch.randn(2, seq_len, d).requires_grad_(True)
        reset = torch.zeros(2, seq_len, dtype=torch.bool)
        sc = count_step(_ScanOnly(cfg.cfc_chunk), [ld, c, reset], seq_len=seq_len)
        scan = sc.bytes(extern=False)[0]  # its lowering time is not the block's: not added
    return UnitCounts(
        name=name,
        mm_flops=mm,
        attn_flops=attn,
        fwd_mm_flops=fmm,
        fwd_attn_flops=fattn,
        bytes_per_seq=by_cat,
        bytes_per_call=per_call,
        fwd_bytes_per_seq=counts.bytes(extern=False, backward=False)[0],
        scan_bytes_per_seq=scan,
        fused_bytes_per_seq=fused,
        fused_fwd_bytes_per_seq=fused_fwd,
        fused_kernels=fused_kernels,
        kernels=len(counts.kernels),
        lowering_seconds=lowering,
    )


def _source_hash() -> str:
    """Hash of the code whose kernels are counted (model, quantiser, the counter) and torch's version."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(torch.__version__.encode())
    for sub in ("model", "quant"):
        for p in sorted((root / sub).glob("*.py")):
            h.update(p.read_bytes())
    for name in ("inductor_count.py", "step_count.py", "fused_standins.py"):
        h.update((root / "bench" / name).read_bytes())
    return h.hexdigest()[:16]


def arm_units(cfg: Any) -> dict[str, int]:
    """The units of an arm and how many of each the full model holds."""
    if cfg.arm == "q2-geode":
        per = {k: cfg.pattern.count(k) * cfg.depth for k in "GC" if k in cfg.pattern}
        return {**per, "stem": 1}
    return {"B": cfg.depth, "stem": 1}


def count_arm(cfg: Any, *, seq_len: int, cache_dir: str | Path | None = None) -> ArmCounts:
    """Count every unit of `cfg` at `seq_len` (cached under `cache_dir` by config, code and torch version)."""
    if seq_len > cfg.max_seq_len:
        raise ValueError(f"seq_len: {seq_len} exceeds model max_seq_len {cfg.max_seq_len}")
    key = hashlib.sha256(
        json.dumps({"cfg": cfg.to_dict(), "seq_len": seq_len, "src": _source_hash()}, sort_keys=True).encode()
    ).hexdigest()[:20]
    path = Path(cache_dir) / f"{key}.json" if cache_dir else None
    if path is not None and path.exists():
        return ArmCounts.from_dict(json.loads(path.read_text()))
    mult = arm_units(cfg)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        units = {name: _count_unit(name, cfg, seq_len) for name in mult}
    finally:
        torch.set_num_threads(threads)
    counts = ArmCounts(arm=cfg.arm, seq_len=seq_len, units=units, multiplicity=mult)
    if path is not None:
        from golfmodel.atomic import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(counts.to_dict(), indent=1))
    return counts
