"""Interrupts end cleanly: Ctrl-C (SIGINT to the process group) during training, with `golf run`'s own
temporary Prefect server; the signal handler's contract; which server `golf run` uses."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from golf.flows import cli, server
from golf.tasks.subproc import InterruptSignals, interrupt_signal


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by parent pid, recursively; new sessions included)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _terminal_signals() -> None:
    """Preexec: SIGINT/SIGHUP/SIGTERM at their defaults, as in a terminal's foreground job — whatever
    the suite inherited (`make test &` ignores SIGINT, `nohup` SIGHUP, and children inherit that)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def interrupted(
    sample_root: Path, shared_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """`golf run --preset test` (a long step budget, its own temporary server) Ctrl-C'd mid-training."""
    state_home = tmp_path_factory.mktemp("state")  # no `golf ui` record of the caller's is found
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"GOLF_DATA__MIRROR": str(sample_root), "GOLF_PIPELINE__ARTIFACTS_DIR": str(shared_artifacts),
                "GOLF_TOKENISER__WORKERS": "1", "XDG_STATE_HOME": str(state_home)})  # fmt: skip
    cmd = [sys.executable, "-m", "golf.flows.cli", "run", "--preset", "test",
           "--set", "train.max_steps=100000", "--set", "train.checkpoint_every=5", "--set", "train.val_tokens=4096"]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_terminal_signals,
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    deadline = time.monotonic() + 180
    work = shared_artifacts / "cache" / "train"
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size for p in work.glob(".work-*/ckpt/*")) and any("step=" in ln for ln in err):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "".join(err)[-3000:]
    started = _descendants(proc.pid)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    try:
        # not communicate(): it would read stderr too, racing the reader thread for the last lines
        proc.wait(timeout=60)
        out = proc.stdout.read()  # type: ignore[union-attr]  # a few summary lines
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        reader.join(timeout=15)
        pytest.fail(f"`golf run` still running 60 s after SIGINT; its stderr ends:\n{''.join(err)[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seconds = time.monotonic() - t0
    reader.join(timeout=15)
    time.sleep(0.5)
    run_dir = Path(out.strip().splitlines()[-1].removeprefix("report: ")) if out.strip() else None
    return {"code": proc.returncode, "seconds": seconds, "started": started, "stderr": "".join(err),
            "run_dir": run_dir, "work": work}  # fmt: skip


def test_ctrl_c_exits_130_within_15_seconds(interrupted: dict[str, Any]) -> None:
    """SIGINT to `golf run`'s process group mid-training: exit code 130 in under 15 s."""
    assert interrupted["code"] == 130, interrupted["stderr"][-3000:]
    assert interrupted["seconds"] < 15


def test_ctrl_c_leaves_no_process_behind(interrupted: dict[str, Any]) -> None:
    """The trainer, its process group and the temporary Prefect server are all gone."""
    assert len(interrupted["started"]) >= 2  # at least the trainer and the server were running
    assert [p for p in interrupted["started"] if _alive(p)] == []


def test_ctrl_c_marks_the_run_cancelled_without_connection_errors(interrupted: dict[str, Any]) -> None:
    """The flow run ends Cancelled (its state written while the server still ran), no httpx errors."""
    err = interrupted["stderr"]
    assert "Finished in state Cancelled" in err and "ConnectError" not in err and "Traceback" not in err
    status = json.loads((interrupted["run_dir"] / "status.json").read_text())
    assert status["state"] == "cancelled" and status["stages"]["train"]["status"] == "cancelled"


def test_interrupted_training_keeps_its_checkpoint(interrupted: dict[str, Any]) -> None:
    """The train stage's work folder (with its checkpoint) is kept, so the next run resumes from it."""
    assert any(p.is_file() for p in interrupted["work"].glob(".work-*/ckpt/*"))


def test_first_signal_interrupts_later_ones_are_ignored() -> None:
    """SIGHUP or SIGTERM becomes one KeyboardInterrupt naming the signal; a second one is only recorded."""
    saved = {
        sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGHUP, signal.SIGTERM)
    }  # not inherited ignores
    try:
        _first_signal_contract()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _first_signal_contract() -> None:
    with InterruptSignals() as signals:
        with pytest.raises(KeyboardInterrupt) as info:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)  # during cleanup: must not raise
        time.sleep(0.05)
    assert interrupt_signal(info.value) == signal.SIGHUP and signals.received == signal.SIGHUP


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def health_server() -> Iterator[str]:
    """Something answering /api/health on 127.0.0.1:4200 (the default UI port), if the port is free."""
    try:
        httpd = http.server.HTTPServer(("127.0.0.1", cli.DEFAULT_UI_PORT), _Health)
    except OSError:  # taken: a server already answers there, which is the case under test anyway
        yield f"http://127.0.0.1:{cli.DEFAULT_UI_PORT}/api"
        return
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{cli.DEFAULT_UI_PORT}/api"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return tmp_path


def test_run_ignores_a_server_nobody_told_it_about(health_server: str, state_home: Path) -> None:
    """A server answering on 127.0.0.1:4200 that no `golf ui` of this checkout recorded is not used."""
    assert cli._prepare_prefect() is None and "PREFECT_API_URL" not in os.environ


def test_run_uses_the_server_golf_ui_recorded(health_server: str, state_home: Path) -> None:
    """The server `golf ui` recorded for this user and checkout (its process alive) is used."""
    path = server.record_ui(health_server, os.getpid())
    assert path.is_relative_to(state_home) and cli._prepare_prefect() == health_server
    assert os.environ.pop("PREFECT_API_URL") == health_server


def test_a_stale_ui_record_is_ignored(health_server: str, state_home: Path) -> None:
    """A record whose `golf ui` process is gone is not used."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    server.record_ui(health_server, dead.pid)
    assert cli._prepare_prefect() is None
