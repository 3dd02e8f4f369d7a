"""Content hashes of input files with a cheap stat guard: sha256 once, then (size, mtime, ctime, inode).

Pure logic (no Prefect import). A stage's key holds the sha256 of every input file it reads
(SPEC §8, revision 2: keyed by content, not by path). Hashing gigabytes of mirror shards on
every run would make a cached run slow, so a digest is remembered with the file's stat
(device, inode, size, mtime_ns, ctime_ns) in `<cache root>/.digests.json`, and reused only
while all five are unchanged. A file copied back over a bad one (new inode or mtime), edited
in place with its mtime restored (`touch -d`, `rsync -a`: ctime still moves) or replaced by a
rename (new inode) is hashed again. Only a change that leaves ctime alone — bit rot under the
filesystem — escapes the guard; downloaded files are checked against the published SHA256SUMS
anyway, and stage outputs are re-verified by their own rules (`golf.tasks.cache`).

As in git's "racy" rule, a file changed less than RACY_NS before it was hashed is not remembered
(filesystem timestamps are coarse: two writes within one clock tick can share a ctime), so it
is hashed again next time. The store is a small JSON map written atomically; concurrent runs may drop each other's
entries (last writer wins), which only costs a re-hash.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from golf.tasks.cache import sha256_file, write_json_atomic

STORE_NAME = ".digests.json"
RACY_NS = 2 * 10**9  # a file modified this recently is hashed but its digest not remembered
ABSENT = "absent"  # the digest of a file that does not exist (the stage itself then fails, naming it)


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class FileDigests:
    """sha256 of files, re-hashed only when their stat changed since the last hash."""

    def __init__(self, store: Path | None) -> None:
        self.store = store
        self._entries: dict[str, Any] = {}
        self._dirty = False
        self.hashed: list[Path] = []  # files actually read this time (for tests and logs)
        if store is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(store.read_text())
                if isinstance(loaded, dict):
                    self._entries = loaded

    def digest(self, path: str | os.PathLike[str]) -> str:
        """sha256 of `path` (hex), or "absent" when there is no such file."""
        p = Path(path).expanduser().resolve()
        try:
            st = p.stat()
        except FileNotFoundError:
            return ABSENT
        if not p.is_file():
            raise IsADirectoryError(f"{p}: an input file was expected, found a folder")
        key = str(p)
        guard = _stat_key(st)
        entry = self._entries.get(key)
        if isinstance(entry, dict) and entry.get("stat") == guard and isinstance(entry.get("sha256"), str):
            return str(entry["sha256"])
        value = sha256_file(p)
        self.hashed.append(p)
        settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS
        if settled and _stat_key(p.stat()) == guard:  # unchanged while hashing and not racy: remember
            self._entries[key] = {"stat": guard, "sha256": value}
            self._dirty = True
        return value

    def save(self) -> None:
        """Write the store back (atomically) if any digest was added."""
        if self.store is None or not self._dirty:
            return
        self.store.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # a read-only cache still works, it only re-hashes
            write_json_atomic(self.store, self._entries)
        self._dirty = False
