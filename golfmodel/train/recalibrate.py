"""τ recalibration stage (SPEC §4): activation-weighted τ on the final weights, decided on held-out *training* tokens.

    res = recalibrate("out/final.pt", job, mode="act", calib_batches=4, holdout_tokens=32_768)

The stage never reads validation tokens (issue 11 item 7: choosing τ on the scored set is a peek).
Both its data come from the tail of the last training shard, in two disjoint slices:

    [ ... trained on ... | calibration: calib_batches × micro_batch_seqs × seq_len | held-out: holdout_tokens ]

mode "act": τ of every fitted quantised layer is re-solved with column j weighted by E[x_j²] of
the layer's input on the calibration slice (forward pre-hooks, quantised model); the new τ are
kept only if the bpb of the held-out slice, on the model as it will be packed (the packer's
export view), strictly improves. The trainer cycles a small sample many times, so these tokens
may have been trained on; they are disjoint from the calibration slice and never validation.

mode "mse": folded into training. The trainer's final refit after weight averaging *is* the
plain squared-error fit of the final weights, so a second one changes nothing (measured: Δ 0,
docs/decisions/train.md); the stage passes the weights through and records the held-out bpb.

The job's settings are honoured: `qat.tau_method = "std"` layers keep their statistic (an
activation weighting of the std rule does not exist: those layers are left alone and counted
in `skipped`), learned scales (`scale = "learned"`) are the optimiser's and are never refit,
and each layer refits with its plan's kind (q2: the exact weighted solve; others: weighted Lloyd).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from golfmodel.train.checkpoint import load_final, q2_layers, save_final
from golfmodel.train.config import TrainJob
from golfmodel.train.scales import has_scale, is_learned
from golfmodel.train.validation import evaluate_bpb, load_table

HOLDOUT_TOKENS = 32_768  # held-out training tokens the decision is made on


@dataclass(frozen=True, kw_only=True)
class RecalResult:
    """Outcome of one recalibration: held-out training bpb before/after and which τ were kept."""

    mode: str
    bpb_before: float  # held-out *training* tokens, packed-equivalent model, before
    bpb_after: float  # the same after the refit (== before for "mse": nothing is refitted)
    kept: bool  # True = the recalibrated τ were kept (they scored strictly better)
    layers: int  # layers re-fitted
    skipped: int  # scaled layers left alone: learned τ, tau_method "std"
    calib_batches: int  # micro-batches behind the activation weights (0 for mode "mse")
    holdout_tokens: int
    decided_on: str  # where the decision's tokens came from (never validation)
    out_path: str
    seconds: float

    @property
    def bpb_written(self) -> float:
        """Held-out bpb of the model written to `out_path` (bpb_after if kept, else bpb_before)."""
        return self.bpb_after if self.kept else self.bpb_before

    @property
    def delta_bpb(self) -> float:
        """Held-out bpb change of the written model against the input (<= 0)."""
        return self.bpb_written - self.bpb_before

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bpb_written": self.bpb_written, "delta_bpb": self.delta_bpb}


@torch.no_grad()
def activation_weights(
    model: nn.Module, batches: list[torch.Tensor], layers: dict[str, nn.Module], device: torch.device
) -> dict[str, torch.Tensor]:
    """E[x_j²] of each layer's input column j over all tokens of `batches` (forward pre-hooks)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str):  # noqa: ANN202 - a torch hook closure
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])  # (tokens, in)
            sums[name] = sums.get(name, 0) + x.pow(2).sum(0)  # (in,)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: sums[n] / counts[n] for n in sums}


def training_slices(
    job: TrainJob, *, calib_seqs: int, holdout_tokens: int
) -> tuple[torch.Tensor, np.ndarray]:
    """(calibration inputs (calib_seqs, T), held-out tokens (holdout_tokens,)) from the last training shard's tail."""
    from golfmodel.data.shards import read_shard

    shard = job.train_shards[-1]
    tokens = read_shard(shard, vocab_size=job.model.vocab_size)
    T = job.train.seq_len
    need = calib_seqs * T + holdout_tokens
    if holdout_tokens < T + 1 or len(tokens) < need:
        raise ValueError(
            f"recalibrate: {shard} has {len(tokens):,} tokens; the calibration ({calib_seqs} × {T}) and "
            f"held-out ({holdout_tokens:,}, at least seq_len + 1) slices need {need:,}"
        )
    tail = np.asarray(tokens[len(tokens) - need :], dtype=np.int64)
    calib = torch.from_numpy(tail[: calib_seqs * T].copy()).reshape(calib_seqs, T)
    return calib, tail[calib_seqs * T :]


def recalibrate(
    final_pt: str | Path,
    job: TrainJob,
    *,
    mode: Literal["mse", "act"] = "act",
    calib_batches: int = 4,
    holdout_tokens: int = HOLDOUT_TOKENS,
    out_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> RecalResult:
    """Recalibrate τ of `final_pt` (see the module doc); writes the result (atomically) to `out_path`.

    out_path: default `<final_pt folder>/recalibrated.pt`, final.pt's format with the result under
    "recalibration". Runs with `job.train.threads` torch threads (when set), restored afterwards.
    """
    if mode not in ("mse", "act"):
        raise ValueError(f"recalibrate: mode must be 'mse' or 'act', got {mode!r}")
    if calib_batches < 1:
        raise ValueError(f"recalibrate: calib_batches must be >= 1, got {calib_batches}")
    threads = torch.get_num_threads()
    if job.train.threads:
        torch.set_num_threads(job.train.threads)
    try:
        return _recalibrate(
            Path(final_pt),
            job,
            mode,
            calib_batches,
            holdout_tokens,
            out_path,
            torch.device(device),
            batch_size,
        )
    finally:
        torch.set_num_threads(threads)


def _recalibrate(
    final_pt: Path,
    job: TrainJob,
    mode: str,
    calib_batches: int,
    holdout_tokens: int,
    out_path: str | Path | None,
    device: torch.device,
    batch_size: int,
) -> RecalResult:
    t0 = time.perf_counter()
    out = Path(out_path) if out_path is not None else final_pt.parent / "recalibrated.pt"
    model, blob = load_final(final_pt, device=device)
    scaled = {n: m for n, m in q2_layers(model).items() if has_scale(m)}
    for m in scaled.values():  # the run's τ rule, not the layer's default (the "std" ablation stays std)
        m.tau_method, m.tau_std_mult = job.qat.tau_method, job.qat.tau_std_mult
    refit = {n: m for n, m in scaled.items() if not is_learned(m) and m.tau_method != "std"}
    calib_seqs = calib_batches * job.train.micro_batch_seqs
    calib, held = training_slices(job, calib_seqs=calib_seqs, holdout_tokens=holdout_tokens)
    table = load_table(job.tokenizer)

    def packed_bpb() -> float:
        return evaluate_bpb(
            _packed_equivalent(model),
            held,
            table,
            seq_len=job.train.seq_len,
            batch_size=batch_size,
            device=device,
        )

    before = after = packed_bpb()
    kept, n_batches = False, 0
    if mode == "act" and refit:
        old_tau = {n: m.tau.detach().clone() for n, m in refit.items()}
        batches = list(calib.split(job.train.micro_batch_seqs))
        n_batches = len(batches)
        act = activation_weights(model, batches, refit, device)
        for name, m in refit.items():
            m.refresh_tau(act[name])
        after = packed_bpb()
        kept = after < before
        if not kept:
            with torch.no_grad():
                for name, m in refit.items():
                    m.tau.copy_(old_tau[name])
    result = RecalResult(
        mode=mode,
        bpb_before=before,
        bpb_after=after,
        kept=kept,
        layers=len(refit) if mode == "act" else 0,
        skipped=len(scaled) - len(refit),
        calib_batches=n_batches,
        holdout_tokens=int(len(held)),
        decided_on=f"train-holdout:{Path(job.train_shards[-1]).name}",
        out_path=str(out),
        seconds=time.perf_counter() - t0,
    )
    extra = {k: v for k, v in blob.items() if k not in ("format", "model_config", "state_dict", "qat")}
    save_final(out, model, extra={**extra, "recalibration": result.to_dict()})
    return result


def _packed_equivalent(model: nn.Module) -> nn.Module:
    """The model with the weights the artifact will hold (the packer's export view), QAT off."""
    from golfmodel.q2bn.artifact import export_view

    kind = "q2" if any(m.qat for m in q2_layers(model).values()) else "fp32"
    twin = copy.deepcopy(model)
    twin.load_state_dict(export_view(model, kind), strict=True)
    for m in q2_layers(twin).values():
        m.set_qat(False)  # the exported weights are already dequantised
    return twin
