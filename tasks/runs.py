"""Run folders (`artifacts/runs/<timestamp>-<preset>-<hash>/`), provenance, and `golf gc`.

Pure logic (no Prefect import). A run folder holds what is particular to one run: the resolved
`settings.json`, `provenance.json`, `records/<stage>.json` (the record of every stage it used,
pointing into the cache), `run.log`, and the report (`report.md`, `report.json`, `loss.png`).
Stage outputs stay in the content-addressed cache and are referenced, never copied: a model
or a shard set exists once however many runs used it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golf.settings import Settings, settings_hash
from golf.tasks.cache import RECORD_NAME, StageRecord, file_lock, package_versions, write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def git_info(repo: Path = REPO) -> dict[str, Any]:
    """Git SHA and dirty flag of the source tree (None when not a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None and (repo / "GIT_SHA").exists():  # a Docker image: the SHA was written at build time
        return {"sha": (repo / "GIT_SHA").read_text().strip(), "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def device_info() -> dict[str, Any]:
    """CPU count and the NVIDIA GPUs `nvidia-smi` lists (no torch import: a cached run stays fast)."""
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "gpus": []}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            info["gpus"] = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired) as e:
            info["gpu_error"] = repr(e)
    return info


@dataclass(frozen=True)
class RunDir:
    """One run's folder under `<artifacts>/runs/`."""

    path: Path

    @classmethod
    def create(cls, settings: Settings, *, now: float | None = None) -> RunDir:
        """A new, unique folder `<UTC timestamp>-<preset>-<settings hash[:8]>[-N]` (mkdir is atomic)."""
        root = Path(settings.pipeline.artifacts_dir).resolve() / "runs"
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        base = f"{stamp}-{settings.preset}-{settings_hash(settings)[:8]}"
        for n in range(1000):
            path = root / (base if n == 0 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / "records").mkdir()
            return cls(path)
        raise RuntimeError(f"cannot create a run folder under {root}")

    @property
    def log_path(self) -> Path:
        return self.path / "run.log"

    def write_settings(self, settings: Settings) -> None:
        write_json_atomic(self.path / "settings.json", settings.model_dump(mode="json"))

    def write_provenance(self, settings: Settings, extra: dict[str, Any] | None = None) -> None:
        prov = {
            "settings_hash": settings_hash(settings),
            "preset": settings.preset,
            "git": git_info(),
            "versions": package_versions(
                ("torch", "numpy", "sentencepiece", "zstandard", "prefect", "pydantic")
            ),
            "device": device_info(),
            "started": time.time(),
            **(extra or {}),
        }
        write_json_atomic(self.path / "provenance.json", prov)

    def update_provenance(self, **fields: Any) -> None:
        path = self.path / "provenance.json"
        prov = json.loads(path.read_text()) if path.exists() else {}
        prov.update(fields)
        write_json_atomic(path, prov)

    def write_record(self, record: StageRecord, status: dict[str, Any]) -> None:
        write_json_atomic(self.path / "records" / f"{record.stage}.json", {**record.to_dict(), "run": status})

    def write_status(self, stages: dict[str, dict[str, Any]], state: str, message: str | None = None) -> None:
        write_json_atomic(self.path / "status.json", {"state": state, "message": message, "stages": stages})


def referenced_entries(run: Path) -> set[Path]:
    """Cache folders a run's records point at."""
    out: set[Path] = set()
    for rec in (run / "records").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            out.add(Path(json.loads(rec.read_text())["dir"]).resolve())
    return out


@dataclass(frozen=True, kw_only=True)
class GcReport:
    """What `gc` removed (or would remove with dry_run) and what it kept because it is referenced."""

    removed_runs: list[Path]
    removed_entries: list[Path]
    kept_referenced: int
    freed_bytes: int


def _age_days(path: Path, now: float) -> float:
    try:
        return (now - path.stat().st_mtime) / 86400
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _entry_key(name: str) -> str:
    """The cache key of an entry folder: `<key>`, `.work-<key>` or `.trash-<key>-<suffix>`."""
    if name.startswith(".work-"):
        return name.removeprefix(".work-")
    if name.startswith(".trash-"):
        return name.removeprefix(".trash-").split("-")[0]
    return name


def gc(
    artifacts_dir: str | Path, older_than_days: float, *, dry_run: bool = False, now: float | None = None
) -> GcReport:
    """Remove run folders and cache entries older than `older_than_days` that nothing kept points at.

    Kept: run folders younger than the limit, the newest run folder always, and every cache
    entry that a kept run's records reference (so the latest cached stage chain survives).
    A cache entry's age is its last use (a cache hit touches its record.json). Work and trash
    folders older than the limit go too, unless a run holds their key's lock.
    """
    root = Path(artifacts_dir).resolve()
    now = time.time() if now is None else now
    runs = sorted((p for p in (root / "runs").glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    old_runs = [r for r in runs[:-1] if _age_days(r, now) > older_than_days]  # never the newest
    kept_runs = [r for r in runs if r not in old_runs]
    keep: set[Path] = set().union(*(referenced_entries(r) for r in kept_runs)) if kept_runs else set()
    removed_entries: list[Path] = []
    kept_referenced = 0
    freed = 0
    for stage_dir in sorted(p for p in (root / "cache").glob("*") if p.is_dir()):
        for entry in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
            if entry.resolve() in keep:
                kept_referenced += 1
                continue
            age_ref = entry / RECORD_NAME if (entry / RECORD_NAME).exists() else entry
            if _age_days(age_ref, now) <= older_than_days:
                continue
            key = _entry_key(entry.name)
            with file_lock(stage_dir / f".{key}.lock", blocking=False) as free:
                if not free:
                    continue  # a run is computing this key right now
                freed += _size(entry)
                removed_entries.append(entry)
                if not dry_run:
                    shutil.rmtree(entry, ignore_errors=True)
    for run in old_runs:
        freed += _size(run)
        if not dry_run:
            shutil.rmtree(run, ignore_errors=True)
    return GcReport(
        removed_runs=old_runs,
        removed_entries=removed_entries,
        kept_referenced=kept_referenced,
        freed_bytes=freed,
    )


def stage_table(stages: dict[str, dict[str, Any]]) -> str:
    """Markdown table of per-stage status, seconds in this run, compute seconds and cache use."""
    lines = ["| stage | status | seconds (this run) | compute seconds | cached |", "|---|---|---:|---:|---|"]
    for name, s in stages.items():
        compute = s.get("compute_seconds")
        lines.append(
            f"| {name} | {s.get('status')} | {s.get('seconds', 0):.2f} | "
            f"{'—' if compute is None else f'{compute:.2f}'} | {'yes' if s.get('cached') else 'no'} |"
        )
    return "\n".join(lines)


def finish_report(
    run: RunDir, report: StageRecord | None, stages: dict[str, dict[str, Any]], summary: dict[str, Any]
) -> dict[str, Any]:
    """Write the run's report.md / report.json / loss.png from the report stage plus this run's stage table.

    Without a report stage (a partial run) the report holds the headline numbers of the stages run.
    """
    data: dict[str, Any] = dict(summary)
    body = "# golf run (partial)\n\n" + "\n".join(f"- {k}: {v}" for k, v in summary.items())
    if report is not None:
        data.update(json.loads(report.path("report.json").read_text()))
        body = report.path("report.md").read_text()
        if report.path("loss.png").exists():
            shutil.copyfile(report.path("loss.png"), run.path / "loss.png")
    data["stages"] = stages
    data["run_dir"] = str(run.path)
    write_json_atomic(run.path / "report.json", data)
    md = f"{body.rstrip()}\n\n## Stages of this run\n\n{stage_table(stages)}\n\nRun folder: `{run.path}`\n"
    tmp = run.path / ".report.md.tmp"
    tmp.write_text(md)
    os.replace(tmp, run.path / "report.md")
    return data


def iter_runs(artifacts_dir: str | Path) -> Iterable[Path]:
    """Run folders, oldest first."""
    root = Path(artifacts_dir).resolve() / "runs"
    return sorted(p for p in root.glob("*") if p.is_dir())
