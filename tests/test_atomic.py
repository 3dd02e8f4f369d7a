"""Atomic writes (golfmodel.atomic) and the streaming shard writer: team-readable files, errors that name the path."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from golfmodel.atomic import atomic_write, atomic_write_bytes
from golfmodel.data.shards import ShardWriter


@pytest.fixture
def umask002() -> Iterator[None]:
    """A group-sharing umask (002) inside the test."""
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


def test_atomic_write_respects_the_umask(tmp_path: Path, umask002: None) -> None:
    """Under umask 002 an atomically written file is 0664 (not mkstemp's 0600)."""
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o664


def test_shard_writer_respects_the_umask(tmp_path: Path, umask002: None) -> None:
    """Streamed shards are 0664 under umask 002, so a teammate can read the tokenise stage's shards."""
    with ShardWriter(tmp_path, "fineweb_train", shard_tokens=4) as w:
        w.write(np.arange(10, dtype=np.uint16))
    modes = {p.stat().st_mode & 0o777 for p in w.paths}
    assert len(w.paths) == 3 and modes == {0o664}


def test_disk_full_names_the_path_and_the_reason(tmp_path: Path) -> None:
    """A write that hits ENOSPC raises naming the target file and "No space left on device"; no temp file stays."""

    def full(f: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match=r"cannot write .*counts\.npz: No space left on device") as info:
        atomic_write(tmp_path / "counts.npz", full)
    assert info.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_short_write_on_a_full_disk_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's errno-less "N requested and M written" on a full filesystem becomes ENOSPC with the path."""
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))  # type: ignore[attr-defined]

    def short(f: object) -> None:
        raise OSError("1048576 requested and 166880 written")

    with pytest.raises(OSError, match=r"logprob\.npy: No space left on device \(1048576 requested"):
        atomic_write(tmp_path / "logprob.npy", short)


def test_unwritable_destination_names_the_path(tmp_path: Path) -> None:
    """A destination under a regular file (not a folder) fails naming the path and the OS reason."""
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=r"cannot write .*file/sub/a\.bin: "):
        atomic_write_bytes(tmp_path / "file" / "sub" / "a.bin", b"x")
