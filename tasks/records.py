"""Stage records: a stage's outputs (size, sha256, mtime), values and metrics, and how they are checked.

Pure logic (no Prefect import). A record is what a stage hands downstream and what a run folder
keeps; its `content_hash` (outputs' sha256 + values) is what downstream keys depend on.
`explain_key` says what a key was made of (the log line of a cached stage); `verify_outputs`
re-hashes outputs against the record (the size check and anything that ships an output).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HASH_CHUNK = 1 << 22
MAX_SHOWN = 5  # input files named one by one in a key's explanation


class CacheError(RuntimeError):
    """The cache cannot serve or store a stage (missing upstream, unreadable record, ...)."""


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """sha256 of a JSON value in canonical form (sorted keys, no spaces; paths as strings)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class OutputFile:
    """One output file of a stage: size, sha256 and mtime (a different mtime triggers a re-hash)."""

    sha256: str
    bytes: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> OutputFile:
        st = path.stat()
        return cls(sha256=sha256_file(path), bytes=st.st_size, mtime_ns=st.st_mtime_ns)


@dataclass(frozen=True, kw_only=True)
class StageRecord:
    """A stage's small record: its folder, outputs (relative paths), values and metrics.

    `values` are small results that downstream stages consume (they enter the content hash);
    `metrics` are measurements (bpb, seconds, ...) kept for the report and not hashed, so a
    re-run that reproduces the same files leaves downstream keys unchanged.
    """

    stage: str
    key: str
    dir: str
    outputs: dict[str, OutputFile]
    values: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # input file -> sha256 (or "hub_commit" -> SHA)
    env: str = ""  # the code fingerprint that entered the key
    created: float = 0.0
    seconds: float = 0.0
    content_hash: str = ""

    def path(self, rel: str) -> Path:
        """Absolute path of an output (or any file) inside the stage folder."""
        return Path(self.dir) / rel

    def paths(self, key: str) -> list[Path]:
        """Absolute paths of a list-valued entry of `values` (e.g. the train shards)."""
        return [self.path(p) for p in self.values[key]]

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["outputs"] = {k: vars(v) for k, v in self.outputs.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageRecord:
        d = dict(d)
        d["outputs"] = {k: OutputFile(**v) for k, v in d.get("outputs", {}).items()}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def explain_key(record: StageRecord) -> str:
    """One line saying what a record's key was made of (why a cached stage hit): key, settings, inputs, code."""
    ups = ", ".join(f"{s} {h[:10]}" for s, h in sorted(record.upstream.items())) or "none"
    items = sorted(record.inputs.items())
    ins = ", ".join(f"{Path(k).name} {v[:10]}" for k, v in items[:MAX_SHOWN]) or "none"
    if len(items) > MAX_SHOWN:  # e.g. 80 mirror shards: a count and the hash over all of them
        ins += f", +{len(items) - MAX_SHOWN} more (all {sha256_json(dict(items))[:10]})"
    return (
        f"key {record.key[:12]} = settings {sha256_json(record.config)[:10]}; upstream {ups}; "
        f"inputs {ins}; code {record.env[:10]}"
    )


def verify_outputs(record: StageRecord, names: Sequence[str] | None = None) -> None:
    """Re-hash a record's outputs (or `names` of them); CacheError naming the first file that differs."""
    for rel in sorted(record.outputs) if names is None else names:
        out = record.outputs.get(rel)
        if out is None:
            raise CacheError(
                f"{record.path(rel)}: not an output of the {record.stage} record {record.key[:12]}"
            )
        path = record.path(rel)
        try:
            actual = sha256_file(path)
        except OSError as e:
            raise CacheError(f"{path}: cannot read the {record.stage} output ({e.strerror or e})") from e
        if actual != out.sha256:
            raise CacheError(
                f"{path}: sha256 {actual[:16]}… does not match the {out.sha256[:16]}… recorded by the "
                f"{record.stage} stage (the file changed after it was written); re-run it: --from {record.stage}"
            )


def content_hash(outputs: Mapping[str, OutputFile], values: Mapping[str, Any]) -> str:
    """What downstream keys depend on: the outputs' bytes and the consumed values."""
    return sha256_json({"outputs": {k: v.sha256 for k, v in sorted(outputs.items())}, "values": values})


@dataclass(frozen=True, kw_only=True)
class StageResult:
    """What a stage's compute function returns.

    `outputs`: relative paths (files, or folders = every file below) that make up the result;
    None = every file in the work folder. `prune`: relative paths deleted before the folder
    is committed (e.g. training checkpoints that only served resumption).
    """

    values: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: Sequence[str] | None = None
    prune: Sequence[str] = ()
