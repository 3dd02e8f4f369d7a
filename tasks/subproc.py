"""Run a command in its own process group, stream its output line by line, kill the group on exit.

Pure logic (no Prefect import). Prefect task timeouts do not kill child processes (SPEC §8),
so this does: on timeout, on cancellation (KeyboardInterrupt, SIGTERM from the Prefect
runner) and on any error, the whole group — torchrun and every rank — gets SIGTERM, then
SIGKILL after a grace period. The group also gets SIGTERM if this process dies without a
chance to clean up (SIGKILL): `PR_SET_PDEATHSIG` on Linux.

`InterruptSignals` is the entry point's side: SIGINT, SIGTERM and SIGHUP become one
KeyboardInterrupt in the main thread (so every `finally` runs), and `interrupt_signal` reads
which signal it was (for the exit code 128 + N).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

GRACE_SECONDS = 10.0
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


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


def interrupt_signal(exc: BaseException) -> int:
    """The signal behind an interrupt: Prefect's TerminationSignal(.signal), a message naming "signal N"
    ("received signal 15", a Cancelled stage's "interrupted by signal 15"), else SIGINT."""
    sig = getattr(exc, "signal", None)
    if isinstance(sig, int):
        return sig
    found = re.search(r"signal (\d+)", str(exc))
    return int(found.group(1)) if found else int(signal.SIGINT)


class InterruptSignals:
    """While inside (main thread): the first SIGINT/SIGTERM/SIGHUP raises KeyboardInterrupt("received
    signal N"); later ones are recorded and ignored, so cleanup (killing the trainer, writing the
    run's final state) is not interrupted in turn. A signal that was ignored on entry (`nohup`, a
    background job's SIGINT) stays ignored. `shield()` ignores every signal from then on."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._shielded = False

    def _handler(self, signum: int, frame: object) -> None:
        if self.received is None and not self._shielded:
            self.received = signum
            raise KeyboardInterrupt(f"received signal {signum}")
        self.received = self.received or signum

    def shield(self) -> None:
        """From now on every handled signal is only recorded (cleanup under way)."""
        self._shielded = True

    def __enter__(self) -> InterruptSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in INTERRUPT_SIGNALS:
                previous = signal.getsignal(sig)
                if previous is signal.SIG_IGN:
                    continue
                self._previous[sig] = previous
                signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()


def die_with_parent() -> Callable[[], None] | None:
    """Preexec function: the child gets SIGTERM when the thread that forked it dies (Linux), else None.

    The libc lookup happens in the parent; the child runs only the prctl call before exec.
    """
    if not os.uname().sysname == "Linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


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
        # SIGTERM to the leader if this thread dies first (SIGKILL); only set when called from the
        # main thread, whose death is this process's (a worker thread's end would fire it early).
        preexec_fn=die_with_parent() if threading.current_thread() is threading.main_thread() else None,  # noqa: PLW1509
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
