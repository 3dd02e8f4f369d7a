"""The content-addressed stage cache: `artifacts/cache/<stage>/<key>/` folders and their records.

Pure logic (no Prefect import), so every caching rule of SPEC §8 is tested without a server.

A stage's key is the sha256 of: the stage name, the stage's own settings subset, the content
hashes of its upstream records, the content hashes of the other files it reads (mirror files,
a document source; the resolved hub commit — `golf.tasks.inputs`), and its code fingerprint (the
sources of the modules the stage runs plus the versions of the packages they import —
`golf.tasks.fingerprint`). Consequences:

- nothing changed → every key is the same → every stage is a cache hit;
- a changed setting or input file changes that stage's key → it re-runs; its downstream re-runs
  when its outputs' content changed (their keys hold its content hash; byte-identical outputs
  are a legitimate hit, like Bazel's early cut-off);
- a deleted or resized output, or one whose bytes no longer match the recorded sha256, makes
  the entry invalid → the stage re-runs (the reason is kept in `StageCache.invalid`).

A stage computes into `.work-<key>/` (kept across failures, so a retried training run finds
its checkpoint), writes `record.json` last, and renames the folder into place atomically.
One `fcntl.flock` per key serialises two runs that compute the same key; runs with different
settings have different keys and never share a folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.metadata
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from golf.tasks.records import (
    CacheError,
    OutputFile,
    StageRecord,
    StageResult,
    content_hash,
    explain_key,
    sha256_file,
    sha256_json,
    verify_outputs,
)

__all__ = [  # the records' names stay importable from here (golf.tasks.cache was their home)
    "CacheError", "OutputFile", "StageCache", "StageRecord", "StageResult", "content_hash", "explain_key",
    "file_lock", "sha256_file", "sha256_json", "stage_key", "verify_outputs", "write_json_atomic",
]  # fmt: skip

RECORD_NAME = "record.json"
FORMAT_VERSION = 2  # bump to invalidate every cached record (a change of this module's rules)
VERSIONED_PACKAGES = ("torch", "numpy", "sentencepiece", "zstandard", "prefect")


# ---------------------------------------------------------------------------
# Keys


def package_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of `names` ("absent" when not installed) plus the Python version."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def stage_environment(stage: str) -> str:
    """The code fingerprint of `stage` (its modules' sources + package versions) and the cache format."""
    from golf.tasks.fingerprint import stage_fingerprint

    return sha256_json({"format": FORMAT_VERSION, "code": stage_fingerprint(stage).digest})


def stage_key(
    stage: str,
    config: Mapping[str, Any],
    upstream: Mapping[str, str],
    environment: str,
    inputs: Mapping[str, str] | None = None,
) -> str:
    """Cache key of a stage: its name, settings subset, upstream content hashes, input file hashes, code."""
    return sha256_json(
        {"stage": stage, "config": config, "upstream": dict(sorted(upstream.items())), "env": environment,
         "inputs": dict(sorted((inputs or {}).items()))}
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Records


# ---------------------------------------------------------------------------
# The cache


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Exclusive `flock` on `path` (created if needed); yields False if non-blocking and busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # 0o666 & ~umask: a group-shared cache (umask 002) gives teammates a lock they can open
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
    except PermissionError:  # someone else's lock file without group write: flock works on a read-only fd
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise CacheError(f"cannot open the lock file {path}: {e.strerror}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                yield False
                return
            raise
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON through a unique tmp file in the same folder and `os.replace` it into place.

    A failed write (a full disk, a read-only folder) raises an OSError naming `path` and the reason.
    """
    from golfmodel.atomic import write_error

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from e


class StageCache:
    """`<root>/<stage>/<key>/` folders holding a stage's outputs and `record.json`.

    environment: the code fingerprint entering every key — a fixed string (tests), a function of
    the stage name, or None for `stage_environment` (the stage's own modules and versions).
    """

    def __init__(self, root: str | Path, *, environment: str | Callable[[str], str] | None = None) -> None:
        self.root = Path(root).resolve()
        self._environment = stage_environment if environment is None else environment
        self.invalid: dict[str, str] = {}  # stage -> why its entry for the last key looked up was invalid

    def environment(self, stage: str) -> str:
        env = self._environment
        return env if isinstance(env, str) else env(stage)

    def key(
        self,
        stage: str,
        config: Mapping[str, Any],
        upstream: Mapping[str, StageRecord],
        inputs: Mapping[str, str] | None = None,
    ) -> str:
        ups = {s: r.content_hash for s, r in upstream.items()}
        return stage_key(stage, config, ups, self.environment(stage), inputs)

    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def work_folder(self, stage: str, key: str) -> Path:
        return self.root / stage / f".work-{key}"

    def lock_path(self, stage: str, key: str) -> Path:
        return self.root / stage / f".{key}.lock"

    def inspect(self, stage: str, key: str, *, verify: bool = False) -> tuple[StageRecord | None, str]:
        """(the valid record at `<stage>/<key>` or None, why not: "" for a hit, "absent", or the fault).

        Validity: `record.json` parses and every listed output exists with its recorded size; a
        file whose mtime differs from the recorded one (either way: `cp`, an edit, a restore) — or
        every file, with `verify` — is re-hashed and must match its recorded sha256.
        """
        folder = self.folder(stage, key)
        try:
            raw = json.loads((folder / RECORD_NAME).read_text())
            record = StageRecord.from_dict(raw)
        except FileNotFoundError:
            return None, "absent"
        except (OSError, ValueError, TypeError) as e:
            return None, f"{folder / RECORD_NAME} is unreadable ({e})"
        if record.key != key or record.stage != stage:
            return None, f"{folder / RECORD_NAME} belongs to {record.stage}/{record.key[:12]}"
        for rel, out in record.outputs.items():
            path = folder / rel
            try:
                st = path.stat()
            except OSError:
                return None, f"output {path} is missing"
            if st.st_size != out.bytes:
                return None, f"output {path} has {st.st_size} bytes, {out.bytes} recorded"
            if (verify or st.st_mtime_ns != out.mtime_ns) and sha256_file(path) != out.sha256:
                return None, f"output {path} does not match its recorded sha256 {out.sha256[:16]}…"
        # The folder may have moved (a copied artifacts dir): point the record at where it is now.
        if record.dir != str(folder):
            record = StageRecord.from_dict({**raw, "dir": str(folder)})
        return record, ""

    def load(self, stage: str, key: str, *, verify: bool = False) -> StageRecord | None:
        """The valid record at `<stage>/<key>`, or None (see `inspect`; the reason goes to `invalid`)."""
        record, why = self.inspect(stage, key, verify=verify)
        if why and why != "absent":
            self.invalid[stage] = why
        else:
            self.invalid.pop(stage, None)
        return record

    def lookup(
        self,
        stage: str,
        config: Mapping[str, Any],
        upstream: Mapping[str, StageRecord],
        *,
        inputs: Mapping[str, str] | None = None,
        verify: bool = False,
    ) -> StageRecord | None:
        """The cached record for these inputs, or None."""
        return self.load(stage, self.key(stage, config, upstream, inputs), verify=verify)

    def run(
        self,
        stage: str,
        config: Mapping[str, Any],
        upstream: Mapping[str, StageRecord],
        compute: Callable[[Path], StageResult],
        *,
        resume: bool = False,
        force: bool = False,
        inputs: Mapping[str, str] | None = None,
        verify: bool = False,
    ) -> tuple[StageRecord, bool]:
        """Serve the stage from the cache or compute it; returns (record, was_cached).

        `compute(work_dir)` writes the outputs into `work_dir`. With `resume`, a work folder left
        by a failed attempt is kept (the trainer resumes from its checkpoint); otherwise it is
        cleared first. `force` recomputes even when a valid entry exists. `inputs`: content
        hashes of the stage's other input files (part of the key). `verify`: re-hash every
        output of a cached entry before serving it (a mismatch recomputes the stage).
        """
        inputs = dict(sorted((inputs or {}).items()))
        key = self.key(stage, config, upstream, inputs)
        if not force and (hit := self.load(stage, key, verify=verify)) is not None:
            _touch(self.folder(stage, key) / RECORD_NAME)
            return hit, True
        with file_lock(self.lock_path(stage, key)):
            # Another run may have finished the same key while this one waited for the lock.
            if not force and (hit := self.load(stage, key, verify=verify)) is not None:
                _touch(self.folder(stage, key) / RECORD_NAME)
                return hit, True
            work = self.work_folder(stage, key)
            if work.exists() and not resume:
                shutil.rmtree(work)
            work.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            result = compute(work)
            seconds = time.time() - t0
            for rel in result.prune:
                target = work / rel
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            outputs = {rel: OutputFile.of(work / rel) for rel in _output_files(work, result.outputs)}
            final = self.folder(stage, key)
            record = StageRecord(
                stage=stage,
                key=key,
                dir=str(final),
                outputs=outputs,
                values=_jsonable(result.values),
                metrics=_jsonable(result.metrics),
                upstream={s: r.content_hash for s, r in upstream.items()},
                config=_jsonable(dict(config)),
                inputs=inputs,
                env=self.environment(stage),
                created=time.time(),
                seconds=seconds,
                content_hash=content_hash(outputs, _jsonable(result.values)),
            )
            write_json_atomic(work / RECORD_NAME, record.to_dict())  # last: marks the folder complete
            if final.exists():  # an invalid entry (an output was deleted): move it aside, then drop it
                trash = final.with_name(f".trash-{key}-{uuid.uuid4().hex[:8]}")
                os.rename(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.rename(work, final)
            return record, False


def _output_files(work: Path, outputs: Sequence[str] | None) -> list[str]:
    """Relative paths of the output files (folders expand to the files below them), sorted."""
    roots = [work] if outputs is None else [work / o for o in outputs]
    files: set[str] = set()
    for root in roots:
        if root.is_dir():
            files.update(p.relative_to(work).as_posix() for p in root.rglob("*") if p.is_file())
        elif root.is_file():
            files.add(root.relative_to(work).as_posix())
        else:
            raise CacheError(f"stage output {root.relative_to(work)} was not written in {work}")
    files.discard(RECORD_NAME)
    return sorted(files)


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so records hold only plain values (paths become strings)."""
    return json.loads(json.dumps(obj, default=str))


def _touch(path: Path) -> None:
    """Mark a cache entry as used now (golf gc measures age from the last use)."""
    with contextlib.suppress(OSError):
        os.utime(path)
