"""Atomic file writes for every golfmodel output: a temporary file next to the target, fsync, os.replace.

A reader (or a later pipeline run) sees either the old file or the whole new one, never a partial
file, even if the writer is killed. Every writer in golfmodel goes through `atomic_write`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def umask_mode(mode: int = 0o666) -> int:
    """`mode` as a plain open() would apply it under the current umask (0o644 / 0o664 for files)."""
    return mode & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it (Linux /proc); else the set-and-restore idiom."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # briefly: a thread creating a file now gets a private one, never a public one
    os.umask(umask)
    return umask


def open_temp(folder: str | os.PathLike[str], prefix: str) -> tuple[int, Path]:
    """A new temporary file in `folder` (fd, path) with umask permissions (mkstemp's own are 0600)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    except OSError as exc:
        raise write_error(Path(folder) / f"{prefix}….tmp", exc) from exc
    os.fchmod(fd, umask_mode())  # teammates sharing a cache can read what we write
    return fd, Path(tmp)


def write_error(path: str | os.PathLike[str], exc: OSError) -> OSError:
    """An OSError of the same kind naming `path` and the OS reason ("No space left on device").

    numpy's `tofile` (under np.save) reports a short write as "N requested and M written" with
    no errno; when the filesystem is then (nearly) full, that is a full disk and is said so.
    """
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code is None:
        try:
            full = shutil.disk_usage(Path(path).parent).free < 1 << 20
        except OSError:
            full = False
        if full:
            code, reason = errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({exc})"
    other = exc.filename is not None and Path(exc.filename).name != Path(path).name
    if other and not Path(exc.filename).name.startswith(f".{Path(path).name}."):  # not our temporary file
        reason += f" ({exc.filename})"
    message = f"cannot write {path}: {reason}"
    if code is None:
        return OSError(message)
    return (type(exc) if type(exc) is not OSError else OSError)(code, message)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file next to `path`, fsync it, then rename it onto `path`.

    The file gets the permissions a plain open() would give (umask). A failed write (a full
    disk, a read-only or foreign folder) raises an OSError naming `path` and the OS reason.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from exc
    fd, tmp = open_temp(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if f"cannot write {path}:" in str(exc):  # already says so (a nested atomic write)
            raise
        raise write_error(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """`torch.save` through a temporary file; a killed writer leaves no partial `path`."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))
