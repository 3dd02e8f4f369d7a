"""The three-phase, wall-clock-budgeted trainer (SPEC §7). Entry point: `python -m golfmodel.train`.

    train(job, DistEnv(rank, world_size, local_rank), resume=None) -> summary dict (rank 0)

Every step: p = max(step / max_steps, elapsed / max_wallclock_seconds), the clock share taken
as the max over ranks and read one step late (an async all-reduce: no step drains the queue);
from p the LR multiplier, the phase (1 full precision, 2 progressive QAT, 3 all quantised +
averaging) and the QAT switch of each Geode group (deepest first) follow. The same all-reduce
carries a non-finite-loss flag with its step, so all ranks stop together on a NaN. τ: an exact
refit at each switch, at phase 3 and at the end, one Lloyd step per row in between
(`scales.ScaleKeeper`); learned τ are AdamW's. QAT switches fill tensor flags, so a compiled
model is compiled once. Validation and checkpoints pause the training clock. At the end the
averaged weights are loaded, fitted τ are re-fitted on them, and `final.pt` +
`train_summary.json` are written (atomically, rank 0).

The process group (if any) is created by the caller (`__main__`); this module never reads
the environment.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from golfmodel.model.cfc import scan_in_use
from golfmodel.train import schedule as sched
from golfmodel.train.averaging import WeightAverager
from golfmodel.train.checkpoint import (
    apply_qat_flags,
    cpu_state_dict,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_state,
    q2_layers,
    qat_flags,
    save_checkpoint,
    save_final,
)
from golfmodel.train.config import TrainJob
from golfmodel.train.data import TokenLoader
from golfmodel.train.files import atomic_write_json
from golfmodel.train.muon import build_optimizers, set_lr
from golfmodel.train.runlog import RunLog
from golfmodel.train.runtime import DistEnv, all_finite, autocast, resolve_device, state_sha256
from golfmodel.train.scales import ScaleKeeper, move_to_scale_group
from golfmodel.train.validation import evaluate_bpb, load_bigram_logprior, load_table, load_val_tokens

FINAL_LLOYD_STEPS = 12  # qat.final_refit="lloyd": Lloyd steps from the tracked τ on the final weights


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became non-finite; the message names the step and the last good checkpoint."""


def _resume_key(job: TrainJob) -> str:
    """What a checkpoint must agree with to be resumed: model shape and everything that fixes the data order."""
    t = job.train
    return json.dumps(
        {
            "model": job.model.to_dict(),
            "seed": t.seed,
            "seq_len": t.seq_len,
            "global_batch_tokens": t.global_batch_tokens,
            "train_shards": list(job.train_shards),
        },
        sort_keys=True,
    )


class Trainer:
    """One training run on one rank; `run()` trains to the budget and writes the outputs."""

    def __init__(self, job: TrainJob, env: DistEnv, *, resume: bool | None = None) -> None:
        from golfmodel.model import build_model

        self.job, self.env, self.cfg = job, env, job.train
        self.out = Path(job.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(self.cfg, env.local_rank)
        self.distributed = env.world_size > 1
        if self.distributed and not dist.is_initialized():
            raise RuntimeError(
                "world_size > 1 but no process group: launch through `python -m golfmodel.train`"
            )
        self.log = RunLog(self.out, enabled=env.is_main, progress_bar=self.cfg.progress_bar)

        # determinism: same init on every rank, deterministic kernels on CPU
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            torch.cuda.manual_seed_all(self.cfg.seed)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        self.model = build_model(job.model)
        if job.model.bigram_prior:
            if not job.bigram_logprior:
                raise ValueError(
                    "model.bigram_prior is on but job.bigram_logprior (the table's path) is not set"
                )
            self.model.set_bigram_logprior(load_bigram_logprior(job.bigram_logprior, job.model.vocab_size))
        self.model.to(self.device)
        self.layers = q2_layers(self.model)
        for layer in self.layers.values():
            _configure_q2(layer, job)
        # Geode groups deepest first (qat_groups() is shallowest first); the schedule indexes i = 0 deepest
        groups = self.model.qat_groups() if (job.qat.enabled and hasattr(self.model, "qat_groups")) else []
        self.groups: list[list[nn.Module]] = list(reversed([list(g) for g in groups if g]))
        s = job.schedule
        self.switch_p = sched.qat_switch_points(
            len(self.groups), f1=s.f1, f2=s.f2, progressive=job.qat.progressive, start_frac=job.qat.start_frac
        )
        self.group_on = [False] * len(self.groups)
        on_cuda_compiled = self.cfg.compile and self.device.type == "cuda"
        self.scales = ScaleKeeper(self.layers, tau_update=job.qat.tau_update, compile=on_cuda_compiled)
        self.optimizers = build_optimizers(
            self.model, job.optim, rank=env.rank, world_size=env.world_size
        )  # Muon splits Newton–Schulz across ranks
        move_to_scale_group(self.optimizers, self.scales.learned_params(), lr=job.optim.scale_lr)
        self.averager = (
            WeightAverager(job.averaging.kind, ema_decay=job.averaging.ema_decay)
            if job.averaging.kind != "none"
            else None
        )
        self.avg_start = sched.averaging_start(f1=s.f1, f2=s.f2, start_frac=job.averaging.start_frac)
        self.loader = TokenLoader(
            job.train_shards,
            seq_len=self.cfg.seq_len,
            batch_seqs=self.cfg.batch_seqs,
            micro_batch_seqs=self.cfg.micro_batch_seqs,
            rank=env.rank,
            world_size=env.world_size,
            seed=self.cfg.seed,
            vocab_size=job.model.vocab_size,
        )
        self.accum = self.cfg.grad_accum(env.world_size)

        # the forward used for training: optionally compiled, DDP-wrapped when distributed
        fwd: nn.Module = self.model
        if on_cuda_compiled:  # one graph for every QAT state: the switches are tensor flags (qat_on)
            fwd = torch.compile(fwd)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # buffers (τ, RoPE tables) are deterministic functions of identical weights: no per-forward sync
            no_buffer_sync = (
                {"forward_sync_buffers": False}
                if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
                else {"broadcast_buffers": False}
            )
            fwd = DDP(
                fwd,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=False,
                gradient_as_bucket_view=True,
                **no_buffer_sync,
            )
        self.fwd = fwd

        self.val_tokens: np.ndarray | None = None
        self.table: Any = None
        if env.is_main and job.val_shards and (self.cfg.val_every or self.cfg.final_val):
            self.val_tokens = load_val_tokens(job.val_shards, self.cfg.val_tokens, job.model.vocab_size)
            self.table = load_table(job.tokenizer)

        # run state
        self.step = 0  # optimiser steps completed = index of the next step
        self.base_elapsed = 0.0  # training-clock seconds of earlier (resumed-from) processes
        self.cur_phase = 0
        self.last_ckpt: Path | None = None
        self.last_loss = float("nan")
        self._resume(resume)

    # --- resume --------------------------------------------------------------------------------

    def _resume(self, resume: bool | None) -> None:
        path = latest_checkpoint(self.out) if resume is not False else None
        if path is None:
            if resume:
                raise FileNotFoundError(f"--resume: no checkpoint in {self.out / 'ckpt'}")
            if self.env.is_main:  # a fresh start: nothing of an earlier run may be mistaken for this one's
                for old in list_checkpoints(self.out):
                    old.unlink()
                for name in ("metrics.jsonl", "events.jsonl", "final.pt", "train_summary.json"):
                    (self.out / name).unlink(missing_ok=True)
            self._barrier()
            return
        st = load_checkpoint(path)
        if st["resume_key"] != _resume_key(self.job):
            raise ValueError(
                f"{path}: checkpoint was written by a different job (model, seed, seq_len, batch or shards "
                f"changed); use a fresh out_dir or delete {self.out / 'ckpt'}"
            )
        load_model_state(self.model, st["model"], source=str(path))
        apply_qat_flags(self.model, st["qat"])
        for opt, sd in zip(self.optimizers, st["optim"], strict=True):
            opt.load_state_dict(sd)
        if self.averager is not None and st["averager"] is not None:
            self.averager.load_state_dict(st["averager"], device=self.device)
        self.loader.load_state_dict(st["data"])
        torch.set_rng_state(st["rng"]["torch"])
        if self.device.type == "cuda" and st["rng"]["cuda"]:
            torch.cuda.set_rng_state(st["rng"]["cuda"][0], self.device)
        self.step, self.base_elapsed = int(st["step"]), float(st["elapsed"])
        self.cur_phase, self.last_loss = int(st["phase"]), float(st["last_loss"])
        self.group_on = [all(bool(layer.qat) for layer in g) for g in self.groups]
        self.last_ckpt = path
        self.log.truncate_metrics(self.step)
        self.log.event(
            "resume", step=self.step, checkpoint=str(path), elapsed=self.base_elapsed, data=st["data"]
        )

    def _checkpoint(self, elapsed: float) -> None:
        if not all_finite(self.model):
            raise TrainingDiverged(
                f"training diverged: non-finite weights after step {self.step}; "
                f"last good checkpoint: {self.last_ckpt or 'none (no checkpoint written yet)'}"
            )
        path = None
        if self.env.is_main:
            state = {
                "step": self.step,
                "elapsed": elapsed,
                "phase": self.cur_phase,
                "last_loss": self.last_loss,
                "resume_key": _resume_key(self.job),
                "model": cpu_state_dict(self.model),
                "qat": qat_flags(self.model),
                "optim": [opt.state_dict() for opt in self.optimizers],
                "averager": self.averager.state_dict() if self.averager is not None else None,
                "data": self.loader.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": [torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else [],
                },
            }
            path = save_checkpoint(self.out, state, keep=self.cfg.keep_checkpoints)
            self.log.event("checkpoint", step=self.step, path=str(path))
        self.last_ckpt = path or self.out / "ckpt" / f"step_{self.step:06d}.pt"

    # --- schedule ----------------------------------------------------------------------------

    def _apply_schedule(self, p: float) -> float:
        """Phase, QAT switches, averaging start and LR for progress p; returns the LR multiplier."""
        s = self.job.schedule
        ph = sched.phase(p, f1=s.f1, f2=s.f2)
        for i, due in enumerate(sched.qat_due(p, self.switch_p)):
            if due and not self.group_on[i]:
                self._switch_group(i, p)
        if ph != self.cur_phase:
            # phase 3 opens with an exact refit of every fitted τ (between refits: the cheap update)
            refit = self.scales.refit_active() if ph == 3 else 0
            self.log.event(
                "phase", step=self.step, p=round(p, 6), phase=ph, previous=self.cur_phase, tau_refit=refit
            )
            self.cur_phase = ph
        mult = sched.lr_multiplier(p, warmup_frac=s.warmup_frac, warmdown_frac=s.warmdown_frac)
        set_lr(self.optimizers, mult)
        return mult

    def _switch_group(self, i: int, p: float) -> None:
        # τ fitted to the current shadow weights before the first quantised forward (learned τ: their init)
        self.scales.refit(self.groups[i], learned=True)
        for layer in self.groups[i]:
            layer.set_qat(True)
        self.group_on[i] = True
        self.log.event(
            "qat_on",
            step=self.step,
            p=round(p, 6),
            group=i,
            depth_index=len(self.groups) - 1 - i,
            layers=len(self.groups[i]),
            scheduled_p=round(self.switch_p[i], 6),
        )

    def _refresh_tau(self, p: float, *, log: bool = True) -> None:
        n = self.scales.refit_active()  # exact refit of the QAT-on fitted τ (learned ones are AdamW's)
        if n and log:
            self.log.event("tau_refresh", step=self.step, p=round(p, 6), layers=n)

    # --- one optimiser step --------------------------------------------------------------------

    def _train_step(
        self, batches: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward/backward over this rank's micro-batches, then the optimiser step; returns (loss, grad_norm)."""
        V = self.job.model.vocab_size
        loss_sum = torch.zeros((), device=self.device)
        for k, (x, y) in enumerate(batches):
            if self.device.type == "cuda":  # pinned host memory lets the copy overlap compute
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=True)  # (B, T)
            y = y.to(self.device, non_blocking=True)  # (B, T)
            last = k == len(batches) - 1
            sync = self.fwd.no_sync() if (self.distributed and not last) else contextlib.nullcontext()
            with sync:
                with autocast(self.device, self.cfg.dtype):
                    logits = self.fwd(x)  # (B, T, V)
                loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
                if self.cfg.debug_nan_at_step is not None and self.step + 1 == self.cfg.debug_nan_at_step:
                    loss = loss * float("nan")  # TEST HOOK
                (loss / self.accum).backward()
            loss_sum += loss.detach()
        if self.job.optim.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.job.optim.grad_clip)
        else:
            gnorm = torch.zeros((), device=self.device)
        for opt in self.optimizers:
            opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return loss_sum / len(batches), gnorm

    def _sync_max(self, values: list[float | torch.Tensor]) -> list[float]:
        """Element-wise max over ranks (one all-reduce, one host sync); float64 so p = step/max_steps is exact."""
        t = torch.stack(
            [torch.as_tensor(v, dtype=torch.float64, device=self.device).reshape(()) for v in values]
        )
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def _mean(self, value: torch.Tensor) -> float:
        t = value.detach().float().reshape(1).clone()
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t /= self.env.world_size
        return float(t.item())

    def _barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        cfg, job = self.cfg, self.job
        if self.step == 0:
            self.log.event(
                "start",
                step=0,
                world_size=self.env.world_size,
                device=str(self.device),
                grad_accum=self.accum,
                params=sum(p.numel() for p in self.model.parameters()),
                qat_groups=len(self.groups),
                switch_p=[round(x, 6) for x in self.switch_p],
                cfc_scan=scan_in_use(self.model, self.device),  # which CfC scan runs (never silent)
            )
            if self.device.type == "cpu" and cfg.dtype == "bf16":
                self.log.event(
                    "note", step=0, message="dtype=bf16 applies on CUDA only; this CPU run is fp32"
                )
        if self.cfg.compile and self.device.type == "cuda":
            self._compile_warmup()

        t0 = time.perf_counter()
        paused = 0.0
        start_step, start_elapsed = self.step, self.base_elapsed

        def elapsed() -> float:
            return self.base_elapsed + (time.perf_counter() - t0) - paused

        budget = dict(max_steps=cfg.max_steps, max_wallclock_seconds=cfg.max_wallclock_seconds)
        (p,) = self._sync_max([sched.progress(self.step, elapsed(), **budget)])
        self._p_clock = self._clock_progress(elapsed())  # the clock's share of p, as last all-reduced
        self._pending = None
        loss_t = gnorm_t = torch.zeros(())
        while p < 1.0:
            p_step = p  # the progress this step runs at (schedule, phase, logs)
            mult = self._apply_schedule(p_step)
            batches = self.loader.next_step()
            data_pos = (self.loader.epoch, self.loader.cursor - cfg.batch_seqs)
            loss_t, gnorm_t = self._train_step(batches)
            self.step += 1  # steps are numbered from 1: `self.step` is the one just run
            now = elapsed()
            # p one step late: this step's clock + NaN flag go into an async all-reduce, the previous
            # step's (long finished on the device) is read; the step count's share of p is exact here
            self._post_progress(now, loss_t)
            p = max(self._step_progress(), self._p_clock)

            if (
                self.averager is not None
                and sched.reached(p_step, self.avg_start)
                and self.step % job.averaging.every == 0
            ):  # average the weights that steps run at p >= avg_start produced
                if self.averager.n == 0:
                    self.log.event(
                        "averaging_start", step=self.step, p=round(p_step, 6), kind=self.averager.kind
                    )
                self.averager.update(self.model)
            if job.qat.tau_refresh_steps and self.step % job.qat.tau_refresh_steps == 0:
                # every-step refreshes are logged at the log cadence only (one event per step is noise)
                self._refresh_tau(p, log=job.qat.tau_refresh_steps > 1 or self.step % cfg.log_every == 0)
            elif any(self.group_on):
                self.scales.update()  # one Lloyd step per QAT-on row: no sort, no host sync

            if self.step % cfg.log_every == 0 or self.step == start_step + 1 or p >= 1.0:
                self._drain_progress()  # the log reads the loss back (a sync) anyway: check NaN first
                p = max(self._step_progress(), self._p_clock)
                loss = self._mean(loss_t)
                self.last_loss = loss
                tokens = self.step * cfg.global_batch_tokens
                run_s = max(now - start_elapsed, 1e-9)
                row = {
                    "kind": "train",
                    "step": self.step,
                    "phase": self.cur_phase,
                    "p": round(p_step, 6),
                    "lr": mult * job.optim.muon_lr,
                    "lr_mult": mult,
                    "loss": loss,
                    "grad_norm": float(gnorm_t.item()),
                    "tokens": tokens,
                    "tokens_per_s": (self.step - start_step) * cfg.global_batch_tokens / run_s,
                    "elapsed": round(now, 4),
                    "data_epoch": data_pos[0],
                    "data_cursor": data_pos[1],
                }
                self.log.metrics(row, echo=True)
                self.log.progress(p, step=self.step, loss=loss)  # the bar shows progress after the step

            due_val = cfg.val_every and self.step % cfg.val_every == 0 and p < 1.0
            due_ckpt = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and p < 1.0
            if due_val or due_ckpt:  # the training clock stops for validation and checkpoints
                tp = time.perf_counter()
                self._drain_progress()  # a NaN is reported before any checkpoint is written
                p = max(self._step_progress(), self._p_clock)
                if due_val:
                    self._validate(p, now)
                if due_ckpt:
                    self._checkpoint(now)
                self._barrier()
                paused += time.perf_counter() - tp

        self._drain_progress()  # the last step's NaN flag
        total_elapsed = elapsed()
        return self._finish(total_elapsed, start_step, start_elapsed)

    # --- progress, one step late -----------------------------------------------------------------

    def _step_progress(self) -> float:
        """The step budget's share of p: the same on every rank without communication."""
        return self.step / self.cfg.max_steps if self.cfg.max_steps else 0.0

    def _clock_progress(self, now: float) -> float:
        w = self.cfg.max_wallclock_seconds
        return now / w if w else 0.0

    def _post_progress(self, now: float, loss: torch.Tensor) -> None:
        """Queue [clock progress, −(step if loss non-finite)] for an async MAX all-reduce; read the previous one."""
        dev = self.device
        bad = torch.where(
            torch.isfinite(loss.detach()).reshape(()),
            torch.full((), -math.inf, dtype=torch.float64, device=dev),
            torch.full((), -float(self.step), dtype=torch.float64, device=dev),
        )
        t = torch.stack([torch.full((), self._clock_progress(now), dtype=torch.float64, device=dev), bad])
        work = dist.all_reduce(t, op=dist.ReduceOp.MAX, async_op=True) if self.distributed else None
        done = None
        if dev.type == "cuda":  # reading t later on the compute stream would wait for step s+1 too:
            if work is not None:  # NCCL: the stream (not the host) waits for the collective
                work.wait()
                work = None
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t, non_blocking=True)  # device → pinned host, queued behind this step only
            done = torch.cuda.Event()
            done.record()
            t = host
        previous, self._pending = self._pending, (t, work, done)
        if previous is not None:
            self._read_progress(previous)

    def _drain_progress(self) -> None:
        """Read the all-reduce in flight now (a host sync: only off the per-step path)."""
        if self._pending is not None:
            previous, self._pending = self._pending, None
            self._read_progress(previous)

    def _read_progress(self, pending: tuple[torch.Tensor, Any, Any]) -> None:
        t, work, done = pending
        if work is not None:  # gloo (CPU): the collective ran beside the next step's compute
            work.wait()
        if done is not None:  # CUDA: wait for that step's copy only, not for the queue behind it
            done.synchronize()
        clock, bad = t.tolist()
        self._p_clock = max(self._p_clock, clock)
        if bad > -math.inf:  # −bad = the earliest step whose loss was non-finite on some rank
            bad_step = int(-bad)
            msg = (
                f"training diverged: non-finite loss at step {bad_step}; last good checkpoint: "
                f"{self.last_ckpt or 'none (no checkpoint written yet)'}"
            )
            self.log.event(
                "diverged", step=bad_step, last_checkpoint=str(self.last_ckpt) if self.last_ckpt else None
            )
            raise TrainingDiverged(msg)

    def _val_bpb(self) -> float:
        """Validation bpb of the current weights on the val slice (the periodic and the final check)."""
        return evaluate_bpb(
            self.model,
            self.val_tokens,
            self.table,
            seq_len=self.cfg.seq_len,
            batch_size=self.cfg.val_batch_seqs,
            device=self.device,
            dtype=self.cfg.dtype,
        )

    def _validate(self, p: float, now: float) -> float | None:
        if not self.env.is_main or self.val_tokens is None:
            return None
        bpb = self._val_bpb()
        self.log.metrics(
            {"kind": "val", "step": self.step, "p": round(p, 6), "val_bpb": bpb, "elapsed": now}, echo=True
        )
        self.log.event("val", step=self.step, p=round(p, 6), val_bpb=bpb)
        return bpb

    def _compile_warmup(self) -> None:
        """Compile the training graph and the scale update before the clock starts (one fwd/bwd, no step).

        One graph serves every QAT state (the switches fill `qat_on` buffers), so one pass compiles
        it; the run's first QAT switch must not add a graph (tests/train/test_compile.py).
        """
        position = self.loader.state_dict()
        x, y = self.loader.next_step()[0]
        self.loader.load_state_dict(position)  # give the batch back: training starts at the same data
        with autocast(self.device, self.cfg.dtype):
            logits = self.fwd(x.to(self.device))
        F.cross_entropy(logits.float().flatten(0, 1), y.to(self.device).reshape(-1)).backward()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        taus = [m.tau.detach().clone() for m in self.scales.updatable]
        self.scales.update()  # compiles the Lloyd step; τ restored so warm-up leaves no trace
        with torch.no_grad():
            for m, t in zip(self.scales.updatable, taus, strict=True):
                m.tau.copy_(t)
        self.log.event("compile_warmup", step=self.step, configs=1)

    def _finish(self, total_elapsed: float, start_step: int, start_elapsed: float) -> dict[str, Any] | None:
        """Averaged weights → re-quantise → final val → final.pt + train_summary.json (rank 0)."""
        job = self.job
        if self.averager is not None and self.averager.n > 0:
            self.averager.copy_to(self.model)
            self.log.event(
                "averaged_weights_loaded", step=self.step, kind=self.averager.kind, samples=self.averager.n
            )
        if job.qat.enabled:
            for i, on in enumerate(self.group_on):
                if not on:  # the budget ran out before this group's switch point: quantise it now
                    self._switch_group(i, 1.0)
        # re-quantise: fitted τ on the final (averaged) weights
        if job.qat.final_refit == "lloyd" and self.scales.updatable:
            self.scales.settle(FINAL_LLOYD_STEPS)
            settled = {id(m) for m in self.scales.updatable}
            self.scales.refit([m for m in self.layers.values() if id(m) not in settled])
        else:
            self.scales.refit(self.layers.values())
        if self.layers:
            self.log.event("final_requantise", step=self.step, layers=len(self.layers))
        if not all_finite(self.model):
            raise TrainingDiverged(
                f"training diverged: non-finite final weights after step {self.step}; "
                f"last good checkpoint: {self.last_ckpt or 'none (no checkpoint written yet)'}"
            )
        if self.cfg.debug_rank_state:
            atomic_write_json(
                self.out / "debug" / f"rank_{self.env.rank}.json",
                {"rank": self.env.rank, "step": self.step, "sha256": state_sha256(self.model)},
            )
        summary = None
        if self.env.is_main:
            val_bpb = None
            if self.cfg.final_val and self.val_tokens is not None:
                val_bpb = self._val_bpb()
            run_s = max(total_elapsed - start_elapsed, 1e-9)
            summary = {
                "steps": self.step,
                "tokens": self.step * self.cfg.global_batch_tokens,
                "seconds": round(total_elapsed, 4),
                "tokens_per_s": (self.step - start_step) * self.cfg.global_batch_tokens / run_s,
                "final_train_loss": self.last_loss if math.isfinite(self.last_loss) else None,
                "prequant_val_bpb": val_bpb,
                "val_tokens": int(len(self.val_tokens)) if self.val_tokens is not None else 0,
                "world_size": self.env.world_size,
                "arm": job.model.arm,
                "qat": job.qat.enabled and bool(self.groups),
                "averaging": self.averager.kind if self.averager is not None else "none",
                "averaged_samples": self.averager.n if self.averager is not None else 0,
                "device": str(self.device),
            }
            save_final(
                self.out / "final.pt",
                self.model,
                extra={"step": self.step, "summary_json": json.dumps(summary)},
            )
            atomic_write_json(self.out / "train_summary.json", summary)
            self.log.event("final", step=self.step, **{k: v for k, v in summary.items() if k != "device"})
        self._barrier()
        self.log.close()
        return summary


def _configure_q2(layer: nn.Module, job: TrainJob) -> None:
    """Pass the QAT options a Q2Linear understands (masked STE, τ method)."""
    if hasattr(layer, "ste_masked"):
        layer.ste_masked = job.qat.ste_masked
    if hasattr(layer, "tau_method"):
        layer.tau_method = job.qat.tau_method
    if hasattr(layer, "tau_std_mult"):
        layer.tau_std_mult = job.qat.tau_std_mult


def train(job: TrainJob, env: DistEnv | None = None, *, resume: bool | None = None) -> dict[str, Any] | None:
    """Train `job` on this rank; returns the summary on rank 0 (None elsewhere).

    resume: None = continue from the newest checkpoint in out_dir if there is one; True = require
    one; False = start fresh (existing checkpoints are overwritten as the run goes).
    """
    env = env or DistEnv()
    os.makedirs(job.out_dir, exist_ok=True)
    # process-wide torch settings the Trainer changes are restored, so an in-process run leaves no trace
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        return Trainer(job, env, resume=resume).run()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
