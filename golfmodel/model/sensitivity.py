"""The sensitivity probe: Δ loss of fake-quantising one part (family × depth) of a briefly trained fp32 twin.

    probe = ProbeConfig(steps=60, candidates=("q2", "int4", "int8"))
    table = run_probe(cfg, train_tokens, probe)     # cfg: the shape; its plan is ignored (fp32 twin)
    print(format_table(table)); table.save(path)    # JSON the allocator (and `--sensitivity`) reads

Issue 11 item 4. The fp32 twin (the shape with every linear plain: no QAT) trains for
`steps` AdamW steps on the first tokens of the TRAINING shards; a held-out slice at the end of
the same training tokens (never validation: SPEC §3) scores it. Then for every part — the block
matrices of one family (`attn_qkv`, `attn_o`, `mlp_in`, `mlp_down`, `cfc_in`, `cfc_out`) at one
depth (Geode group / gpt layer), and the embedding — and every candidate spec, that part alone
is replaced by its dequantised weights (the kind's own scale fit) and the held-out loss re-measured (the default
plan's own spec for the part — q2, the embedding's int8:absmax — is always among the candidates):
Δ loss = loss(part quantised) − loss(fp32). Parts that a spec cannot store (a group size that
does not divide the row) get no entry.

The width trade-off: a second, narrower twin (`width_frac` of the width, same depth and steps)
gives the loss that the bytes between the two shapes buy as width, `width_gain_per_byte` =
(loss(narrow) − loss(wide)) / (bytes(wide) − bytes(narrow)), bytes predicted for trained weights
under the arch's default plan. When that is not positive (a short probe's narrower twin can catch
up), the scaling-law prior 0.076·loss/bytes is used instead (`width_rate_source` = "prior"). The allocator upgrades a part only when its loss saved per
compressed byte beats that rate. One thread, no Python loop over tokens; seconds at minigolf scale.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from golfmodel.model.config import ModelConfig, head_shape
from golfmodel.quant.plan import MATRIX_FAMILIES, QuantPlan, default_plan_name, named_plan
from golfmodel.quant.spec import QuantSpec

PROBED_FAMILIES = ("embed", *MATRIX_FAMILIES)
# Kaplan et al. 2020: L(N) ∝ N^(-0.076), so dL/dN = -0.076·L/N; at a fixed plan bytes ∝ N, so a byte
# buys 0.076·L/B nats. The prior rate when the probe's two twins give none (a short probe's
# narrower twin can match the wider one).
KAPLAN_ALPHA_N = 0.076
# The embedding (a lookup table, tied to the head) is not a QLinear: it is stored by the plan's
# embed rule at export, whose container keeps no per-row τ tensor for it; only int / fp kinds.
EMBED_EXCLUDED_KINDS = ("q2", "ternary")


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    """How long the twin trains, on how many tokens, and which specs are tried per part."""

    steps: int = 60
    batch_seqs: int = 16
    seq_len: int = 128
    lr: float = 3e-3  # 1e-2 trained a d-80 byte260 twin worse at 150 steps (3.062 vs 2.968 nats)
    eval_seqs: int = 32  # held-out training sequences (the last tokens of the training stream)
    seed: int = 0
    # spec labels. Q2BN v1 round-trips q2 and fp16 block matrices only (its loader restores τ for q2
    # records alone), so int8 / int4 / ternary blocks wait for Q2BN v2; the embedding's int8 is fine.
    candidates: tuple[str, ...] = ("q2", "fp16")
    width_frac: float = 0.75  # the narrower twin for the width trade-off (0: skip it)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_seqs", "seq_len", "eval_seqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.candidates:
            raise ValueError("candidates: at least one spec label is needed")
        for label in self.candidates:
            QuantSpec.parse(label)  # raises naming the label
        if not 0 <= self.width_frac < 1:
            raise ValueError(f"width_frac: must be in [0, 1), got {self.width_frac}")


@dataclass(frozen=True, kw_only=True)
class SensitivityRow:
    """One part × spec: Δ loss (nats/token) of quantising that part alone, its payload and numel."""

    family: str
    depth: int | None
    spec: str
    numel: int
    payload_bytes: int  # exact stored bytes of the part at this spec (before compression)
    delta_loss: float


@dataclass(frozen=True, kw_only=True)
class SensitivityTable:
    """The probe's result: base losses, the width trade-off, and one row per part × spec."""

    config: dict[str, Any]  # the probed shape (ModelConfig.to_dict of the fp32 twin's shape)
    probe: dict[str, Any]  # ProbeConfig fields
    base_loss: float  # held-out loss of the fp32 twin
    narrow_loss: float | None
    narrow_d_model: int | None
    width_gain_per_byte: float  # nats/token per compressed byte bought as width
    rows: tuple[SensitivityRow, ...]
    width_rate_source: str = "measured"  # "measured" (the two twins) or "prior" (the scaling law)
    seconds: float
    tokens: dict[str, int] = field(default_factory=dict)  # train / held-out token counts

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["rows"] = [dataclasses.asdict(r) for r in self.rows]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "sensitivity") -> SensitivityTable:
        try:
            rows = tuple(SensitivityRow(**r) for r in data["rows"])
            kw = {k: data[k] for k in ("config", "probe", "base_loss", "narrow_loss", "narrow_d_model",
                                         "width_gain_per_byte", "seconds")}  # fmt: skip
            extra = {"width_rate_source": data.get("width_rate_source", "measured")}
            return cls(rows=rows, tokens=data.get("tokens", {}), **kw, **extra)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: not a sensitivity table ({type(e).__name__}: {e})") from None

    def save(self, path: str | Path) -> None:
        from golfmodel.atomic import atomic_write_json

        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> SensitivityTable:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: cannot read a sensitivity table ({e})") from None
        return cls.from_dict(data.get("sensitivity", data), where=str(p))


def twin_plan(cfg: ModelConfig) -> QuantPlan:
    """The fp32 twin's plan: the arch's default plan with QAT off (plain nn.Linear layers, tagged)."""
    return dataclasses.replace(named_plan(default_plan_name(cfg.arch)), name="fp32-twin", qat=False)


def _twin(cfg: ModelConfig, d_model: int | None = None) -> ModelConfig:
    kw: dict[str, Any] = {"plan": twin_plan(cfg), "arm": cfg.arch}
    if d_model is not None and d_model != cfg.d_model:
        n_heads, n_kv = head_shape(d_model)
        kw.update(d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv)
    return dataclasses.replace(cfg, **kw)


def _batches(tokens: np.ndarray, probe: ProbeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(train windows source, held-out windows (eval_seqs, seq_len+1)) from the training tokens."""
    n = probe.seq_len + 1
    need = n * (probe.eval_seqs + probe.batch_seqs)
    if len(tokens) < need:
        raise ValueError(
            f"train tokens: the probe needs at least {need:,} training tokens, got {len(tokens):,}"
        )
    t = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    held = t[len(t) - n * probe.eval_seqs :].view(probe.eval_seqs, n)  # (E, T+1): the tail, never trained on
    return t[: len(t) - n * probe.eval_seqs], held


@torch.no_grad()
def _loss(model: nn.Module, held: torch.Tensor) -> float:
    total = 0.0
    for chunk in held.split(16):
        logits = model(chunk[:, :-1])  # (b, T, V)
        total += float(F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].reshape(-1), reduction="sum"))
    return total / (held.shape[0] * (held.shape[1] - 1))


def train_twin(
    cfg: ModelConfig, train: torch.Tensor, probe: ProbeConfig, bigram_logprior: Any = None
) -> nn.Module:
    """The fp32 twin of `cfg` after `probe.steps` AdamW steps on random windows of `train`.

    bigram_logprior: the (V, V) table a bigram_prior model adds to its logits (as the trainer sets it).
    """
    from golfmodel.model import build_model

    torch.manual_seed(probe.seed)
    model = build_model(cfg)
    if cfg.bigram_prior and bigram_logprior is not None:
        model.set_bigram_logprior(torch.as_tensor(np.asarray(bigram_logprior), dtype=torch.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=probe.lr, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(probe.seed)
    n = probe.seq_len + 1
    offsets = torch.arange(n)
    for step in range(probe.steps):
        starts = torch.randint(0, len(train) - n, (probe.batch_seqs,), generator=g)
        x = train[starts[:, None] + offsets]  # (B, T+1)
        for group in opt.param_groups:  # linear warm-up over the first 10% of steps
            group["lr"] = probe.lr * min(1.0, (step + 1) / max(1, probe.steps // 10))
        logits = model(x[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


def parts(model: nn.Module) -> dict[tuple[str, int | None], list[nn.Module]]:
    """(family, depth) → the modules whose `.weight` that part holds (block linears and the embedding)."""
    out: dict[tuple[str, int | None], list[nn.Module]] = {}
    for module in model.modules():
        family = getattr(module, "quant_family", None)
        if family in MATRIX_FAMILIES:
            out.setdefault((family, module.quant_depth), []).append(module)
    out[("embed", None)] = [model.tok_emb]
    return out


def spec_text(spec: QuantSpec) -> str:
    """The label QuantSpec.parse reads back as `spec` ("int8:absmax", "q2", "int4g64:learned")."""
    return spec.label if spec.scale == "fit" or not spec.has_scale else f"{spec.label}:{spec.scale}"


def _quantised(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    from golfmodel.quant.kinds import kind_for

    kind = kind_for(spec)
    return kind.dequant(w, kind.fit_scale(w) if spec.has_scale else None)


def _bytes_at(cfg: ModelConfig, ratios: Any) -> int:
    """Predicted trained artifact bytes of the shape under the arch's default plan."""
    from golfmodel.model.budget import predict_bytes
    from golfmodel.model.probe import estimate
    from golfmodel.model.trained_ratio import load_ratios

    base = dataclasses.replace(cfg, arm=cfg.arch, plan=default_plan_name(cfg.arch))
    return predict_bytes(estimate(base), base.quant_plan.export, ratios or load_ratios())


def run_probe(
    cfg: ModelConfig,
    train_tokens: np.ndarray,
    probe: ProbeConfig = ProbeConfig(),
    *,
    bigram_logprior: Any = None,
    ratios: Any = None,
) -> SensitivityTable:
    """Train the fp32 twin of `cfg` briefly and measure Δ loss of every part × candidate spec (see module doc).

    bigram_logprior: the bigram stage's (V, V) table (array or file) when `cfg.bigram_prior`;
    ratios: the trained ratios (`TrainedRatios`) that price the width trade-off (None: the shipped file).
    """
    from golfmodel.quant.kinds import kind_for

    if cfg.bigram_prior and isinstance(bigram_logprior, str | Path):
        from golfmodel.data.bigram import load_logprior

        bigram_logprior = load_logprior(bigram_logprior)

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train, held = _batches(train_tokens, probe)
        twin = _twin(cfg)
        model = train_twin(twin, train, probe, bigram_logprior)
        base = _loss(model, held)
        rows = []
        default = named_plan(default_plan_name(cfg.arch))
        for (family, depth), mods in parts(model).items():
            saved = [m.weight.detach().clone() for m in mods]
            own = spec_text(default.spec_for(family, depth))  # the default plan's spec is always a candidate
            labels = list(dict.fromkeys([*probe.candidates, own]))
            for label, spec in ((lb, QuantSpec.parse(lb)) for lb in labels):
                if family == "embed" and spec.kind in EMBED_EXCLUDED_KINDS:
                    continue
                try:
                    q = [_quantised(w.float(), spec) for w in saved]
                except ValueError:
                    continue  # e.g. a group size that does not divide this part's rows
                with torch.no_grad():
                    for m, wq in zip(mods, q, strict=True):
                        m.weight.copy_(wq)
                    loss = _loss(model, held)
                    for m, w in zip(mods, saved, strict=True):
                        m.weight.copy_(w)
                kind = kind_for(spec)
                rows.append(
                    SensitivityRow(
                        family=family, depth=depth, spec=label, numel=sum(w.numel() for w in saved),
                        payload_bytes=sum(kind.stored_bytes(tuple(w.shape)) for w in saved),
                        delta_loss=loss - base,
                    )
                )  # fmt: skip
        narrow_loss, narrow_d, gain = None, None, 0.0
        source = "measured"
        if probe.width_frac > 0:
            narrow_d = _narrower(cfg.d_model, probe.width_frac)
            if narrow_d is not None:
                narrow = train_twin(_twin(cfg, narrow_d), train, probe, bigram_logprior)
                narrow_loss = _loss(narrow, held)
                db = _bytes_at(cfg, ratios) - _bytes_at(_twin(cfg, narrow_d), ratios)
                gain = max(0.0, narrow_loss - base) / db if db > 0 else 0.0
        if gain <= 0:  # no width measurement, or a short probe where the narrower twin caught up
            gain, source = KAPLAN_ALPHA_N * base / _bytes_at(cfg, ratios), "prior"
        else:
            source = "measured"
    finally:
        torch.set_num_threads(threads)
    return SensitivityTable(
        config=twin.to_dict() | {"plan": None},
        probe=dataclasses.asdict(probe) | {"candidates": list(probe.candidates)},
        base_loss=base,
        narrow_loss=narrow_loss,
        narrow_d_model=narrow_d,
        width_gain_per_byte=gain,
        width_rate_source=source,
        rows=tuple(rows),
        seconds=time.perf_counter() - t0,
        tokens={"train": int(len(train)), "held_out": int(held.numel())},
    )


def _narrower(d_model: int, frac: float) -> int | None:
    """The valid width (head_shape splits it) closest to frac·d_model, below d_model; None if none."""
    from golfmodel.model.budget import valid_widths

    below = [w for w in valid_widths(limit=d_model - 16)]
    if not below:
        return None
    return min(below, key=lambda w: abs(w - frac * d_model))


def format_table(table: SensitivityTable) -> str:
    """The probe's table: one line per part, Δ loss (nats/token) per candidate spec."""
    specs = list(dict.fromkeys(r.spec for r in table.rows))
    by_part: dict[tuple[str, Any], dict[str, SensitivityRow]] = {}
    for r in table.rows:
        by_part.setdefault((r.family, r.depth), {})[r.spec] = r
    head = f"{'part':<16}{'depth':>6}{'numel':>11}" + "".join(f"{'Δ ' + s:>12}" for s in specs)
    lines = [
        f"sensitivity probe: fp32 twin d_model {table.config['d_model']}, depth {table.config['depth']}, "
        f"{table.probe['steps']} steps; held-out TRAINING loss {table.base_loss:.4f} nats/token "
        f"({table.tokens.get('held_out', 0):,} tokens); {table.seconds:.1f} s",
        head,
    ]
    for (family, depth), cells in by_part.items():
        numel = next(iter(cells.values())).numel
        lines.append(
            f"{family:<16}{'all' if depth is None else depth:>6}{numel:>11,}"
            + "".join(f"{cells[s].delta_loss:>12.4f}" if s in cells else f"{'—':>12}" for s in specs)
        )
    if table.narrow_loss is not None:
        lines.append(
            f"width: d_model {table.narrow_d_model} twin loss {table.narrow_loss:.4f} → "
            f"{table.width_gain_per_byte * 1e3:.6f} nats/token per KB bought as width ({table.width_rate_source})"
        )
    return "\n".join(lines)


def load_train_tokens(paths: list[str | Path], vocab_size: int, max_tokens: int) -> np.ndarray:
    """The first `max_tokens` tokens of the training shards, concatenated (validated headers)."""
    from golfmodel.data.shards import read_shard

    out, have = [], 0
    for p in paths:
        arr = np.asarray(read_shard(p, vocab_size=vocab_size))
        out.append(arr[: max_tokens - have])
        have += len(out[-1])
        if have >= max_tokens:
            break
    if not out:
        raise ValueError("train shards: none given to the sensitivity probe")
    return np.concatenate(out)


def probe_tokens_needed(probe: ProbeConfig) -> int:
    """Training tokens the probe reads: its steps' worth of windows plus the held-out slice (capped reuse)."""
    n = probe.seq_len + 1
    return n * probe.eval_seqs + max(
        n * probe.batch_seqs * 2, min(n * probe.batch_seqs * probe.steps, 4 * 10**6)
    )


__all__ = [
    "ProbeConfig",
    "SensitivityRow",
    "SensitivityTable",
    "format_table",
    "load_train_tokens",
    "probe_tokens_needed",
    "run_probe",
]
