"""τ recalibration stage (SPEC §4): re-fit every Q2Linear row's τ on the final weights, keep it if it helps.

    res = recalibrate("out/final.pt", job, mode="act", calib_batches=4, val_tokens_max=65_536)

mode "mse": τ minimises each row's plain squared error on the final weights (the trainer already
does this after weight averaging, so this mostly re-confirms it). mode "act": the error of
column j is weighted by E[x_j²] of the layer's input, gathered with forward hooks on a few
*training* batches run through the quantised model. Validation bpb is computed before and
after on the model as it will be packed (Q2 layers quantised; through the packer's export view
when `golfmodel.q2bn` provides one), and the better τ are written (atomically) to `out_path`
in final.pt's format, with the result under "recalibration".
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from golfmodel.train.checkpoint import load_final, q2_layers, save_final
from golfmodel.train.config import TrainJob
from golfmodel.train.data import TokenLoader
from golfmodel.train.validation import evaluate_bpb, load_table, load_val_tokens


@dataclass(frozen=True, kw_only=True)
class RecalResult:
    """Outcome of one recalibration: bpb before/after on the packed-equivalent model and which τ were kept."""

    mode: str
    bpb_before: float
    bpb_after: float
    kept: bool  # True = the recalibrated τ were kept (they scored strictly better)
    layers: int  # Q2Linear layers re-fitted
    calib_batches: int  # training batches behind the activation weights (0 for mode "mse")
    val_tokens: int
    out_path: str
    seconds: float

    @property
    def bpb_written(self) -> float:
        """bpb of the model written to `out_path` (bpb_after if kept, else bpb_before)."""
        return self.bpb_after if self.kept else self.bpb_before

    @property
    def delta_bpb(self) -> float:
        """bpb change of the written model against the input (<= 0)."""
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


def recalibrate(
    final_pt: str | Path,
    job: TrainJob,
    *,
    mode: Literal["mse", "act"] = "mse",
    calib_batches: int = 4,
    val_tokens_max: int | None = None,
    out_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> RecalResult:
    """Re-fit τ of every Q2Linear on `final_pt`'s weights; score val bpb before/after; write the better.

    val_tokens_max: score the first N validation tokens (None = job.train.val_tokens, 0 = all).
    out_path: default `<final_pt folder>/recalibrated.pt`. Runs with `job.train.threads` torch threads
    (when set), restored afterwards.
    """
    if mode not in ("mse", "act"):
        raise ValueError(f"recalibrate: mode must be 'mse' or 'act', got {mode!r}")
    if not job.val_shards:
        raise ValueError("recalibrate: the job lists no validation shards to score on")
    threads = torch.get_num_threads()
    if job.train.threads:
        torch.set_num_threads(job.train.threads)
    try:
        return _recalibrate(
            final_pt, job, mode, calib_batches, val_tokens_max, out_path, torch.device(device), batch_size
        )
    finally:
        torch.set_num_threads(threads)


def _recalibrate(
    final_pt: str | Path,
    job: TrainJob,
    mode: str,
    calib_batches: int,
    val_tokens_max: int | None,
    out_path: str | Path | None,
    device: torch.device,
    batch_size: int,
) -> RecalResult:
    t0 = time.perf_counter()
    final_pt = Path(final_pt)
    out_path = Path(out_path) if out_path is not None else final_pt.parent / "recalibrated.pt"
    model, blob = load_final(final_pt, device=device)
    layers = q2_layers(model)
    n_val = job.train.val_tokens if val_tokens_max is None else val_tokens_max
    tokens = load_val_tokens(job.val_shards, n_val, job.model.vocab_size)
    table = load_table(job.tokenizer)
    seq_len = job.train.seq_len

    def packed_bpb() -> float:
        return evaluate_bpb(
            _packed_equivalent(model), tokens, table, seq_len=seq_len, batch_size=batch_size, device=device
        )

    before = packed_bpb()
    n_batches = 0
    if layers:
        old_tau = {n: m.tau.detach().clone() for n, m in layers.items()}
        act: dict[str, torch.Tensor] = {}
        if mode == "act":
            batches = _calibration_batches(job, calib_batches)
            n_batches = len(batches)
            act = activation_weights(model, batches, layers, device)
        for name, m in layers.items():
            m.refresh_tau(act.get(name))
        after = packed_bpb()
        kept = after < before
        if not kept:
            for name, m in layers.items():
                m.tau.copy_(old_tau[name])
    else:  # nothing to recalibrate (gpt-int8): the model is written unchanged
        after, kept = before, False
    result = RecalResult(
        mode=mode,
        bpb_before=before,
        bpb_after=after,
        kept=kept,
        layers=len(layers),
        calib_batches=n_batches,
        val_tokens=int(len(tokens)),
        out_path=str(out_path),
        seconds=time.perf_counter() - t0,
    )
    extra = {k: v for k, v in blob.items() if k not in ("format", "model_config", "state_dict", "qat")}
    save_final(out_path, model, extra={**extra, "recalibration": result.to_dict()})
    return result


def _calibration_batches(job: TrainJob, n: int) -> list[torch.Tensor]:
    """`n` micro-batches of *training* tokens (inputs only), in the trainer's data order from the start."""
    t = job.train
    loader = TokenLoader(
        job.train_shards,
        seq_len=t.seq_len,
        batch_seqs=t.micro_batch_seqs,
        micro_batch_seqs=t.micro_batch_seqs,
        seed=t.seed,
        vocab_size=job.model.vocab_size,
    )
    return [loader.next_step()[0][0] for _ in range(n)]


def _packed_equivalent(model: nn.Module) -> nn.Module:
    """The model with the weights the artifact will hold: the packer's export view when available,
    else the model itself (its Q2 layers already run quantised with the current τ)."""
    try:
        from golfmodel.q2bn.artifact import export_view
    except ImportError:
        return model
    layers = q2_layers(model)
    kind = "q2" if any(m.qat for m in layers.values()) else "fp32"
    import copy

    twin = copy.deepcopy(model)
    twin.load_state_dict(export_view(model, kind), strict=True)
    for m in q2_layers(twin).values():
        m.set_qat(False)  # the exported weights are already dequantised
    return twin
