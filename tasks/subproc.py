"""Run a command in its own process group, stream its output line by line, kill the group on exit.

Pure logic (no Prefect import). Prefect task timeouts do not kill child processes (SPEC §8),
so this does: on timeout, on cancellation (KeyboardInterrupt, SIGTERM from the Prefect
runner) and on any error, the whole group — torchrun and every rank — gets SIGTERM, then
SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

GRACE_SECONDS = 10.0


class SubprocessTimeout(RuntimeError):
    """The command ran past its time limit; its process group was killed."""


class SubprocessFailed(RuntimeError):
    """The command exited non-zero; the message holds its last output lines."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


def kill_group(proc: subprocess.Popen[bytes], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the process group of `proc`, then SIGKILL it if it is still alive after `grace` s."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of a finished leader
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while inside (main thread only), so `finally` runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_streaming(
    cmd: Sequence[str],
    *,
    on_line: Callable[[str], None],
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    tail_lines: int = 20,
    grace: float = GRACE_SECONDS,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> None:
    """Run `cmd` (stdout and stderr merged), call `on_line` per output line; raise on failure.

    Raises `SubprocessTimeout` after `timeout` seconds and `SubprocessFailed` on a non-zero exit
    (with the last `tail_lines` lines); the group is killed on every way out of this function.
    """
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,  # its own process group: killpg reaches torchrun and every rank
    )
    tail: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            del tail[:-tail_lines]
            with contextlib.suppress(Exception):  # a logging fault must not stall the pipe
                on_line(line)

    reader = threading.Thread(target=pump, name="subprocess-output", daemon=True)
    reader.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if on_start is not None:
            on_start(proc)
        with sigterm_as_interrupt():
            while proc.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    kill_group(proc, grace)
                    raise SubprocessTimeout(
                        f"{cmd[0]} ran past its {timeout:g} s limit; its process group was killed"
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)  # short waits keep signals and the deadline responsive
    finally:
        kill_group(proc, grace)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
    if proc.returncode != 0:
        # the headline: the command's own last "error..." line, when it printed one
        said = next((ln.strip() for ln in reversed(tail) if ln.strip().lower().startswith("error")), "")
        name = Path(cmd[0]).name if len(cmd) < 3 else f"{Path(cmd[0]).name} {cmd[1]} {cmd[2]}"
        last = "\n".join(tail[-tail_lines:])
        raise SubprocessFailed(
            f"{name} exited with code {proc.returncode}" + (f": {said}" if said else "") + f"\n{last}",
            proc.returncode,
        )
