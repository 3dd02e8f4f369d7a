"""Subprocess control of the train stage: streaming, process-group kill on timeout, failure headline."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from golf.tasks.subproc import SubprocessFailed, SubprocessTimeout, run_streaming


def _gone(pid: int) -> bool:
    """True once `pid` no longer runs (absent, or a zombie awaiting its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def test_output_is_streamed_line_by_line() -> None:
    """Every output line (stdout and stderr) reaches the callback in order."""
    lines: list[str] = []
    code = "import sys; print('one', flush=True); print('two', file=sys.stderr, flush=True); print('three')"
    run_streaming([sys.executable, "-c", code], on_line=lines.append)
    assert lines == ["one", "two", "three"]


def test_timeout_kills_the_whole_process_group() -> None:
    """On timeout the child and its own children (like torchrun's ranks) are all killed."""
    lines: list[str] = []
    code = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print(p.pid, flush=True); time.sleep(120)"
    )
    with pytest.raises(SubprocessTimeout):
        run_streaming([sys.executable, "-c", code], on_line=lines.append, timeout=3, grace=1)
    grandchild = int(lines[0])
    deadline = time.monotonic() + 10
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)


def test_nonzero_exit_raises_with_the_error_line() -> None:
    """A failing command's own `error:` line becomes the headline of the exception."""
    code = "import sys; print('step 1'); print('error: training diverged at step 3', file=sys.stderr); sys.exit(3)"
    with pytest.raises(SubprocessFailed, match="code 3: error: training diverged at step 3") as info:
        run_streaming([sys.executable, "-c", code], on_line=lambda _: None)
    assert info.value.returncode == 3


def test_environment_is_passed() -> None:
    """The child sees the environment it was given."""
    lines: list[str] = []
    env = {**os.environ, "GOLF_SUBPROC_PROBE": "42"}
    run_streaming(
        [sys.executable, "-c", "import os; print(os.environ['GOLF_SUBPROC_PROBE'])"],
        on_line=lines.append,
        env=env,
    )
    assert lines == ["42"]


def test_sigterm_to_the_parent_kills_the_group(tmp_path: Path) -> None:
    """A cancelled run (SIGTERM to the process running the task) still takes the trainer's group down."""
    import signal
    import subprocess

    pid_file = tmp_path / "grandchild.pid"
    inner = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print(p.pid, flush=True); time.sleep(120)"
    )
    outer = (
        "import sys; from pathlib import Path; from golf.tasks.subproc import run_streaming; "
        f"run_streaming([sys.executable, '-c', {inner!r}], on_line=lambda l: Path({str(pid_file)!r}).write_text(l), grace=1)"
    )
    parent = subprocess.Popen([sys.executable, "-c", outer], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)
