"""Fetch the challenge's data (manifest, shards, tokenizer) from the hub or a local mirror, verified.

The source is the dataset repository `willdepueoai/parameter-golf` (folder
`datasets/`, SPEC §2), read through `huggingface_hub`, or a local folder laid
out like that repository's root (a mirror: `<mirror>/datasets/manifest.json`).
The manifest names the shards (`stats.files_train` / `files_val` of dataset
`fineweb10B_<variant>`) and the tokenizer (`model_path`, relative to `datasets/`).

The destination ends up laid out like the repository root too (so it can serve
as a mirror later). The requested revision is resolved once to a commit SHA
(`X-Repo-Commit` of the manifest) and every file is fetched at that commit.
Hashes are checked where one is published: a `SHA256SUMS` file at the
repository root (paths relative to `datasets/`, as in the sample mirror) and the
hub's LFS sha256 (a 64-hex ETag). Network faults (connection errors, timeouts,
408/429/5xx) are retried with exponential backoff; a 404 or a checksum mismatch
is raised at once. The first contact (resolving the revision) gives up within
FIRST_CONTACT_S with `HubUnreachableError`, which says how to work offline (a mirror).
Where every shard of a split is fetched, the headers' token total must equal the
manifest's `stats.tokens_<split>` (another variant's shards in the folder fail).
`mirror_files` lists what a download reads from a mirror, for content-keyed caching.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from golfmodel.atomic import atomic_write
from golfmodel.data.shards import read_header, shard_name

REPO_ID = "willdepueoai/parameter-golf"
REMOTE_ROOT = "datasets"
MANIFEST = "manifest.json"
SUMS_FILE = "SHA256SUMS"
DOCS_FILE = "docs_selected.jsonl"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")

T = TypeVar("T")


class HubError(RuntimeError):
    """Fetching the challenge data failed; the message names the file and the source."""


class ChecksumError(HubError):
    """A fetched file's sha256 differs from the published one."""


class MirrorNotFoundError(HubError, FileNotFoundError):
    """The local mirror folder (or its manifest) does not exist."""


class HubUnreachableError(HubError):
    """The hub did not answer at first contact (resolving the revision): offline, or the wrong endpoint.

    Not a transient fault for the pipeline's task-level retries: the library already retried
    within FIRST_CONTACT_S, and the message says how to work offline (a mirror).
    """


# How to work without the hub; part of every "cannot reach the hub" message.
OFFLINE_HINT = (
    "to work offline use a local mirror of the repository: set data.mirror "
    "(environment GOLF_DATA__MIRROR=<folder>), e.g. ../shared/fineweb-sample, "
    "the sample mirror `make` uses when it exists"
)
FIRST_CONTACT_S = 20.0  # resolving the revision gives up after this long (network faults retried within it)
METADATA_TIMEOUT_S = 10.0  # per HEAD request


DownloadError = HubError  # alias: the name the pipeline's error list also accepts


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    """Where to fetch the data from and how much of it."""

    repo_id: str = REPO_ID
    revision: str = "main"  # branch, tag or commit SHA; the resolved commit is recorded
    variant: str = "sp1024"  # dataset fineweb10B_<variant>
    train_shards: int = 1
    val_shards: int | None = None  # None: every validation shard the manifest lists
    mirror: Path | None = None  # a local folder laid out like the repository root
    endpoint: str | None = None  # hub URL; None: huggingface_hub's default
    cache_dir: Path | None = None  # hf cache; None: download straight into the destination
    remote_root: str = REMOTE_ROOT
    include_docs: bool = False  # also fetch docs_selected.jsonl
    token: str | bool | None = None  # passed to huggingface_hub
    max_attempts: int = 4  # per file, network faults only
    backoff_s: float = 2.0  # first retry delay; doubles each attempt (capped at 60 s)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.train_shards < 0:
            raise ValueError(f"train_shards must be >= 0, got {self.train_shards}")
        if self.val_shards is not None and self.val_shards < 1:
            raise ValueError(f"val_shards must be >= 1 or None, got {self.val_shards}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not self.revision:
            raise ValueError("revision must not be empty")

    @property
    def dataset_name(self) -> str:
        return f"fineweb10B_{self.variant}"


@dataclass(frozen=True, kw_only=True)
class DownloadResult:
    """The fetched files (absolute paths under `root`) and their provenance."""

    root: Path  # destination, laid out like the repository root
    data_dir: Path  # root / remote_root
    train_paths: tuple[Path, ...]
    val_paths: tuple[Path, ...]
    tokenizer_path: Path
    docs_path: Path | None
    manifest: dict[str, Any] = field(hash=False)
    revision: str | None  # resolved commit SHA (hub); None for a mirror
    source: str  # "hub:<endpoint>/datasets/<repo>@<requested revision>" or "mirror:<path>"
    sha256: dict[str, str] = field(hash=False)  # repository path -> sha256, every fetched file
    verified: tuple[str, ...]  # repository paths whose hash matched a published one


# ---------------------------------------------------------------------------
# Retries


def _network_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod in ("httpx2", "httpx"):
        try:
            m = __import__(mod)
            types += [m.TimeoutException, m.NetworkError, m.RemoteProtocolError]
        except (ImportError, AttributeError):
            pass
    try:
        import requests

        types += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    return tuple(types)


def is_network_fault(exc: BaseException) -> bool:
    """True for transient faults worth retrying: connection errors, timeouts, HTTP 408/429/5xx.

    Walks the exception's cause chain (huggingface_hub wraps the original error).
    An HTTP status anywhere in the chain decides (404 → False); offline mode and
    checksum errors are never transient.
    """
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    network = _network_error_types()
    for e in exception_chain(exc):
        if isinstance(e, (OfflineModeIsEnabled, ChecksumError, HubUnreachableError)):
            return False
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(e, HfHubHTTPError) and isinstance(status, int):
            return status in RETRY_STATUS
        if isinstance(e, network):
            return True
    return False


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then every exception behind it (`__cause__`, `__context__`), breadth first, each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    max_attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
    deadline_s: float | None = None,
) -> T:
    """Call `fn`, retrying network faults with exponential backoff; other errors raise at once.

    deadline_s: stop retrying when the next attempt would start later than this many seconds
    after the first one (the first contact with the hub must fail fast when offline).
    """
    t0 = time.monotonic()
    for attempt in range(1, max_attempts + 1):
        try:
            return fn()
        except HubError:
            raise
        except Exception as exc:
            if not is_network_fault(exc):
                raise HubError(f"{what}: {type(exc).__name__}: {exc}") from exc
            delay = min(backoff_s * 2 ** (attempt - 1), 60.0)
            late = deadline_s is not None and time.monotonic() - t0 + delay > deadline_s
            if attempt == max_attempts or late:
                raise HubError(f"{what}: network fault after {attempt} attempts: {exc}") from exc
            sleep(delay)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------
# Hashes


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def parse_sha256sums(text: str, *, name: str) -> dict[str, str]:
    """`sha256sum` output → {path relative to the data folder: hex}; malformed lines raise."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.rstrip())
        if not m:
            raise HubError(f"{name}:{lineno}: not a sha256sum line: {line[:80]!r}")
        path = m.group(2)
        while path.startswith("./"):
            path = path[2:]
        sums[path] = m.group(1).lower()
    return sums


def _check_hashes(
    path: Path, repo_path: str, expected: dict[str, str], *, remove_bad: bool
) -> tuple[str, bool]:
    """sha256 of `path`; raise ChecksumError (removing the file) if it differs from any published hash."""
    actual = sha256_file(path)
    for origin, want in expected.items():
        if actual != want:
            if remove_bad:
                path.unlink(missing_ok=True)
            raise ChecksumError(
                f"{repo_path}: sha256 mismatch for {path}: got {actual}, {origin} says {want}"
                + ("; the file was removed" if remove_bad else "")
            )
    return actual, bool(expected)


def _copy_atomic(src: Path, dst: Path) -> None:
    with src.open("rb") as f_src:
        atomic_write(dst, lambda f: shutil.copyfileobj(f_src, f, 1 << 20))


# ---------------------------------------------------------------------------
# Sources


class _Mirror:
    """A local folder laid out like the repository root."""

    def __init__(self, cfg: HubConfig, dest: Path) -> None:
        self.cfg, self.dest = cfg, dest
        self.root = Path(cfg.mirror).expanduser().resolve()  # type: ignore[arg-type]
        if not self.root.is_dir():
            raise MirrorNotFoundError(f"mirror folder {self.root} does not exist")
        if not (self.root / cfg.remote_root / MANIFEST).is_file():
            raise MirrorNotFoundError(
                f"mirror folder {self.root} has no {cfg.remote_root}/{MANIFEST} "
                "(a mirror is laid out like the repository root)"
            )
        self.revision: str | None = None
        self.source = f"mirror:{self.root}"
        self.in_place = self.root == dest.resolve()

    def sums(self) -> dict[str, str]:
        p = self.root / SUMS_FILE
        return parse_sha256sums(p.read_text(), name=str(p)) if p.is_file() else {}

    def fetch(self, repo_path: str, known: dict[str, str]) -> tuple[Path, str, bool]:
        src = self.root / repo_path
        if not src.is_file():
            raise HubError(f"{repo_path}: not found in mirror {self.root}")
        dst = self.dest / repo_path
        if self.in_place:
            digest, ok = _check_hashes(src, repo_path, known, remove_bad=False)
            return src, digest, ok
        want = next(iter(known.values()), None)
        if not (
            dst.is_file()
            and dst.stat().st_size == src.stat().st_size
            and sha256_file(dst) == (want or sha256_file(src))
        ):
            _copy_atomic(src, dst)
        digest, ok = _check_hashes(dst, repo_path, known, remove_bad=True)
        return dst, digest, ok


class _QuietTqdm(tqdm):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


class _Hub:
    """The dataset repository through huggingface_hub, pinned to one commit."""

    def __init__(self, cfg: HubConfig, dest: Path) -> None:
        from huggingface_hub import constants

        self.cfg, self.dest = cfg, dest
        endpoint = (cfg.endpoint or constants.ENDPOINT).rstrip("/")
        self.source = f"hub:{endpoint}/datasets/{cfg.repo_id}@{cfg.revision}"
        try:
            meta = self._metadata(f"{cfg.remote_root}/{MANIFEST}", cfg.revision, deadline_s=FIRST_CONTACT_S)
        except HubError as exc:
            if exc.__cause__ is not None and is_network_fault(exc.__cause__):
                pin = (
                    "; or pin data.revision to a commit SHA (a run's provenance.json records the resolved "
                    "one) to reuse a cached download without the hub"
                )
                raise HubUnreachableError(
                    f"cannot reach the hub at {endpoint} to resolve {cfg.repo_id}@{cfg.revision} "
                    f"({type(exc.__cause__).__name__}: {exc.__cause__}); {OFFLINE_HINT}{pin}"
                ) from exc
            raise
        if not meta.commit_hash:
            raise HubError(f"{self.source}: no X-Repo-Commit header; cannot pin the revision")
        self.revision: str | None = meta.commit_hash

    def _metadata(self, repo_path: str, revision: str, *, deadline_s: float | None = None) -> Any:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(
            self.cfg.repo_id, repo_path, repo_type="dataset", revision=revision, endpoint=self.cfg.endpoint
        )
        return with_retries(
            lambda: get_hf_file_metadata(
                url, token=self.cfg.token, endpoint=self.cfg.endpoint, timeout=METADATA_TIMEOUT_S
            ),
            what=f"{repo_path} at {self.source}",
            max_attempts=self.cfg.max_attempts,
            backoff_s=self.cfg.backoff_s,
            deadline_s=deadline_s,
        )

    def _download(self, repo_path: str) -> Path:
        from huggingface_hub import hf_hub_download

        kwargs: dict[str, Any] = dict(
            repo_id=self.cfg.repo_id,
            filename=repo_path,
            repo_type="dataset",
            revision=self.revision,
            endpoint=self.cfg.endpoint,
            token=self.cfg.token,
            tqdm_class=None if self.cfg.progress else _QuietTqdm,
        )
        if self.cfg.cache_dir is None:
            kwargs.update(local_dir=self.dest)
        else:
            kwargs.update(cache_dir=self.cfg.cache_dir)
        path = with_retries(
            lambda: Path(hf_hub_download(**kwargs)),
            what=f"{repo_path} at {self.source}",
            max_attempts=self.cfg.max_attempts,
            backoff_s=self.cfg.backoff_s,
        )
        dst = self.dest / repo_path
        if path.resolve() != dst.resolve():  # from the hf cache: hard-link the blob, else copy
            src = path.resolve()
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.unlink(missing_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                _copy_atomic(src, dst)
        return dst

    def sums(self) -> dict[str, str]:
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

        try:
            self._metadata(SUMS_FILE, self.revision)  # type: ignore[arg-type]
        except HubError as exc:
            cause = exc.__cause__
            if isinstance(cause, EntryNotFoundError) or (
                isinstance(cause, HfHubHTTPError) and getattr(cause.response, "status_code", None) == 404
            ):
                return {}  # the repository publishes no SHA256SUMS
            raise
        p = self._download(SUMS_FILE)
        return parse_sha256sums(p.read_text(), name=f"{self.source}/{SUMS_FILE}")

    def fetch(self, repo_path: str, known: dict[str, str]) -> tuple[Path, str, bool]:
        meta = self._metadata(repo_path, self.revision)  # type: ignore[arg-type]
        expected = dict(known)
        if meta.etag and _SHA256_RE.fullmatch(meta.etag):
            expected["the hub's LFS sha256 (ETag)"] = meta.etag
        path = self._download(repo_path)
        digest, ok = _check_hashes(path, repo_path, expected, remove_bad=True)
        return path, digest, ok


# ---------------------------------------------------------------------------
# Entry point


def _manifest_entries(manifest: dict[str, Any], cfg: HubConfig) -> tuple[dict[str, Any], str]:
    """The dataset entry of the variant and its tokenizer's path (relative to the data folder)."""
    datasets = manifest.get("datasets") or []
    entry = next((d for d in datasets if d.get("name") == cfg.dataset_name), None)
    if entry is None:
        names = ", ".join(str(d.get("name")) for d in datasets) or "none"
        raise HubError(f"{MANIFEST}: no dataset {cfg.dataset_name!r} (listed: {names})")
    tok_name = entry.get("tokenizer_name")
    tok = next((t for t in manifest.get("tokenizers") or [] if t.get("name") == tok_name), None)
    if tok is None:
        raise HubError(
            f"{MANIFEST}: dataset {cfg.dataset_name} names tokenizer {tok_name!r}, which is not listed"
        )
    tok_path = tok.get("model_path") or tok.get("path")
    if not tok_path:
        raise HubError(f"{MANIFEST}: tokenizer {tok_name!r} has no model_path")
    return entry, str(tok_path)


def _shard_plan(entry: dict[str, Any], cfg: HubConfig) -> list[tuple[str, str]]:
    """[(split, shard path relative to the data folder)]: every requested val shard, then train shards."""
    stats = entry.get("stats") or {}
    files_train, files_val = int(stats.get("files_train", 0)), int(stats.get("files_val", 0))
    if cfg.train_shards > files_train:
        raise HubError(f"{cfg.dataset_name} has {files_train} train shards; {cfg.train_shards} requested")
    if files_val < 1:
        raise HubError(f"{MANIFEST}: {cfg.dataset_name} lists no validation shards")
    n_val = files_val if cfg.val_shards is None else min(cfg.val_shards, files_val)
    shard_dir = f"datasets/{cfg.dataset_name}"
    return [("val", f"{shard_dir}/{shard_name('val', i)}") for i in range(n_val)] + [
        ("train", f"{shard_dir}/{shard_name('train', i)}") for i in range(cfg.train_shards)
    ]


def _check_token_counts(
    entry: dict[str, Any], cfg: HubConfig, counts: dict[str, int], *, data_dir: Path
) -> None:
    """Where every shard of a split was fetched, its header token total must match the manifest's stats.

    Catches well-formed shards of another variant in this variant's folder (byte260 shards hold
    about four times as many tokens as sp1024 ones), which no header check can see.
    """
    stats = entry.get("stats") or {}
    for split in ("val", "train"):
        want, files = stats.get(f"tokens_{split}"), int(stats.get(f"files_{split}", 0))
        fetched = cfg.val_shards if split == "val" else cfg.train_shards
        complete = files > 0 and (fetched is None or fetched >= files)
        if want is None or not complete or int(want) == counts[split]:
            continue
        raise HubError(
            f"{data_dir / 'datasets' / cfg.dataset_name}: the {split} shards hold {counts[split]:,} tokens "
            f"but {MANIFEST} says {int(want):,} (stats.tokens_{split} of {cfg.dataset_name}); these are "
            f"not the manifest's {cfg.variant} shards (another variant's files in this folder?)"
        )


def mirror_files(cfg: HubConfig) -> dict[str, Path]:
    """{repository path: local file} of everything `download` reads from the mirror `cfg.mirror`.

    For content-keyed caching: the manifest, SHA256SUMS, the planned shards, the tokenizer and
    (with include_docs) the docs. Files that are missing are listed too (the download then fails
    naming them); an unreadable manifest yields just the manifest and SHA256SUMS.
    """
    if cfg.mirror is None:
        raise ValueError("mirror_files needs cfg.mirror")
    root = Path(cfg.mirror).expanduser().resolve()
    data = f"{cfg.remote_root}/"
    files = {SUMS_FILE: root / SUMS_FILE, data + MANIFEST: root / cfg.remote_root / MANIFEST}
    try:
        manifest = json.loads(files[data + MANIFEST].read_text())
        entry, tok_rel = _manifest_entries(manifest, cfg)
        plan = _shard_plan(entry, cfg)
    except (OSError, ValueError, HubError, AttributeError, TypeError):
        return files
    rels = [rel for _, rel in plan] + [tok_rel] + ([DOCS_FILE] if cfg.include_docs else [])
    files.update({data + rel: root / cfg.remote_root / rel for rel in rels})
    return files


def resolve_revision(cfg: HubConfig) -> str:
    """The commit SHA that `cfg.revision` names on the hub (a 40-hex revision is taken as it is).

    Raises HubUnreachableError (with the offline hint) when the hub does not answer within
    FIRST_CONTACT_S, HubError on other failures.
    """
    if is_commit_sha(cfg.revision):
        return cfg.revision
    hub = _Hub(cfg, Path("."))
    assert hub.revision is not None
    return hub.revision


def download(cfg: HubConfig, dest: str | Path) -> DownloadResult:
    """Fetch manifest, validation shards, `cfg.train_shards` train shards and the tokenizer into `dest`."""
    dest = Path(dest).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    src: _Mirror | _Hub = _Mirror(cfg, dest) if cfg.mirror is not None else _Hub(cfg, dest)
    root = cfg.remote_root
    sums = src.sums()
    hashes: dict[str, str] = {}
    verified: list[str] = []

    def fetch(rel: str) -> Path:  # `rel` is relative to the data folder, as in the manifest
        repo_path = f"{root}/{rel}"
        known = {SUMS_FILE: sums[rel]} if rel in sums else {}
        path, digest, ok = src.fetch(repo_path, known)
        hashes[repo_path] = digest
        if ok:
            verified.append(repo_path)
        return path

    manifest_path = fetch(MANIFEST)
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise HubError(f"{manifest_path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    entry, tok_rel = _manifest_entries(manifest, cfg)
    plan = _shard_plan(entry, cfg)
    paths: dict[str, list[Path]] = {"val": [], "train": []}
    counts = {"val": 0, "train": 0}
    bar = tqdm(total=len(plan) + 1 + cfg.include_docs, unit="file", desc="download", file=sys.stderr,
               disable=not cfg.progress)  # fmt: skip
    with bar:
        for split, rel in plan:
            p = fetch(rel)
            counts[split] += read_header(
                p
            )  # a truncated or foreign file fails here even when no hash is published
            paths[split].append(p)
            bar.update()
        _check_token_counts(entry, cfg, counts, data_dir=dest / root)
        tok_path = fetch(tok_rel)
        bar.update()
        docs_path = fetch(DOCS_FILE) if cfg.include_docs else None
        bar.update(int(cfg.include_docs))
    return DownloadResult(
        root=dest,
        data_dir=dest / root,
        train_paths=tuple(paths["train"]),
        val_paths=tuple(paths["val"]),
        tokenizer_path=tok_path,
        docs_path=docs_path,
        manifest=manifest,
        revision=src.revision,
        source=src.source,
        sha256=hashes,
        verified=tuple(verified),
    )


def is_commit_sha(revision: str) -> bool:
    """Whether `revision` is a full 40-hex commit SHA (a pinned revision)."""
    return bool(_COMMIT_RE.fullmatch(revision))
