"""Run log of the trainer (rank 0 only): `events.jsonl`, `metrics.jsonl`, console lines and a tqdm bar.

events.jsonl: one object per event, `{"event": kind, "step", "p", "time", ...}` — phase changes,
QAT switches, τ refreshes, averaging start, checkpoints, validation, resume, divergence, the end.
metrics.jsonl: `{"kind": "train", step, phase, p, lr, loss, grad_norm, tokens, tokens_per_s,
elapsed, data_epoch, data_cursor}` every `log_every` steps and `{"kind": "val", step, p, val_bpb,
elapsed}` at every validation.

Steps are numbered from 1: a metrics row describes the `step`-th optimiser step (run at
progress `p`); an event's `step` is the number of steps completed when it happened (a phase
change with step=40 takes effect from the 41st step on).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from golfmodel.train.files import append_jsonl, atomic_write_text, read_jsonl


class RunLog:
    """Writes the run's JSONL logs and console lines; every method is a no-op off rank 0."""

    def __init__(self, out_dir: Path, *, enabled: bool, progress_bar: bool) -> None:
        self.enabled = enabled
        self.events_path = out_dir / "events.jsonl"
        self.metrics_path = out_dir / "metrics.jsonl"
        self._bar = None
        if enabled and progress_bar and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=1000, desc="train", unit="‰", file=sys.stderr, dynamic_ncols=True)

    def console(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def event(self, kind: str, /, **fields: Any) -> None:
        """Append an event and print it."""
        if not self.enabled:
            return
        row = {"event": kind, "time": round(time.time(), 3), **fields}
        append_jsonl(self.events_path, row)
        detail = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        self.console(f"[event] {kind} {detail}")

    def metrics(self, row: dict[str, Any], *, echo: bool) -> None:
        if not self.enabled:
            return
        append_jsonl(self.metrics_path, row)
        if echo and self._bar is None:
            self.console(" ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "kind"))

    def progress(self, p: float, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.n = int(min(max(p, 0.0), 1.0) * 1000)
            self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=True)

    def truncate_metrics(self, step: int) -> None:
        """Drop metric rows of steps after `step` (a run resumed from the checkpoint of step `step` repeats them)."""
        if not self.enabled or not self.metrics_path.exists():
            return
        import json

        rows = [r for r in read_jsonl(self.metrics_path) if int(r.get("step", -1)) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
