"""What each stage reads besides its upstream records, by content: file sha256s and the resolved hub commit.

Pure logic (no Prefect import). SPEC §8 (revision 2): inputs are keyed by content, not by path.
Upstream outputs already reach a key through the upstream record's content hash; this module
covers the rest:

- download from a mirror: every file the download reads there (manifest, SHA256SUMS, the planned
  shards, the tokenizer, the docs when tokenising them) — a fixed mirror file re-runs download,
  and its downstream re-runs when the fetched bytes changed;
- download from the hub: the commit the revision resolves to (a moving `main` re-runs download;
  the stage then fetches exactly that commit);
- tokenise from a local document file (`tokeniser.docs` = a JSONL or Parquet path): its sha256
  (appending documents re-runs tokenise).

Not content-keyed: `tokeniser.docs = fineweb:<config>` (a remote dataset streamed through
`datasets`; the key holds the config name). File hashes go through `FileDigests`, so an
unchanged file is not re-read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from golf.settings import Settings
from golf.settings.convert import hub_config
from golf.tasks.digests import FileDigests

HUB_COMMIT = "hub_commit"


def download_inputs(settings: Settings, digests: FileDigests) -> dict[str, str]:
    """{"mirror/<repo path>": sha256} of the mirror files the download reads, or {"hub_commit": SHA}."""
    from golfmodel.data.hub import mirror_files, resolve_revision

    cfg = hub_config(settings, progress=False)
    if cfg.mirror is None:
        return {HUB_COMMIT: resolve_revision(cfg)}
    return {f"mirror/{rel}": digests.digest(path) for rel, path in mirror_files(cfg).items()}


def tokenise_inputs(settings: Settings, digests: FileDigests) -> dict[str, str]:
    """{"docs/<name>": sha256} of a local document source; {} otherwise (docs come from download)."""
    t = settings.tokeniser
    if t.source != "docs" or t.docs is None or t.docs.startswith("fineweb:"):
        return {}
    path = Path(t.docs).expanduser()
    return {f"docs/{path.name}": digests.digest(path)}


def stage_inputs(stage: str, settings: Settings, digests: FileDigests) -> dict[str, str]:
    """The content hashes of the input files `stage` reads outside its upstream records (may be {})."""
    if stage == "download":
        return download_inputs(settings, digests)
    if stage == "tokenise":
        return tokenise_inputs(settings, digests)
    return {}


def resolved_commit(inputs: Mapping[str, str]) -> str | None:
    """The hub commit a download key was computed for (None for a mirror)."""
    return inputs.get(HUB_COMMIT)
