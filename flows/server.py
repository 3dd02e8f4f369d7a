"""Which Prefect server `golf run` talks to, and the temporary one it starts when told of none.

    PREFECT_API_URL set            → that server
    else a `golf ui` of this user   → the server that `golf ui` recorded for this checkout
         and checkout still answers   ($XDG_STATE_HOME/golf/ui-<checkout hash>.json)
    else                           → a temporary server of this `golf run` only

A server that merely answers on 127.0.0.1:4200 is never used: on a shared machine it may be
another user's, and their UI would receive this run. The temporary server is Prefect's own
uvicorn app (as Prefect's ephemeral server starts it) with three differences, each for a clean
interrupt: it runs in its own session (a terminal's Ctrl-C reaches `golf`, not the server, so
the flow's final state can still be written), it gets SIGTERM when `golf` dies however it dies
(`PR_SET_PDEATHSIG`, Linux; no orphan after SIGKILL), and `golf` stops it only after draining
Prefect's log and event queues (no minutes-long drain against a dead server at exit).

No Prefect import at module level: the server starts while the pipeline modules import.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from golf.tasks.subproc import die_with_parent

CHECKOUT = Path(__file__).resolve().parent.parent
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def healthy(api_url: str, timeout: float = 0.5) -> bool:
    """True when `<api_url>/health` answers 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


# ---------------------------------------------------------------------------
# The `golf ui` record


def ui_record_path(checkout: Path = CHECKOUT) -> Path:
    """Where `golf ui` records its server for this user (home folder) and this checkout (path hash)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:16]
    return state / "golf" / f"ui-{digest}.json"


def record_ui(api_url: str, pid: int, checkout: Path = CHECKOUT) -> Path:
    """Record the `golf ui` server (its API URL and the pid of the `golf ui` process); atomic."""
    path = ui_record_path(checkout)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"api_url": api_url, "pid": pid, "checkout": str(checkout.resolve())}) + "\n")
    os.replace(tmp, path)
    return path


def forget_ui(pid: int, checkout: Path = CHECKOUT) -> None:
    """Remove the record if it is still the one `pid` wrote."""
    path = ui_record_path(checkout)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recorded_ui_url(checkout: Path = CHECKOUT) -> str | None:
    """The API URL `golf ui` recorded for this checkout, if its process lives and the server answers."""
    try:
        rec = json.loads(ui_record_path(checkout).read_text())
        url, pid = str(rec["api_url"]), int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _alive(pid) and healthy(url) else None


def choose_api_url(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The server `golf run` was told to use (PREFECT_API_URL, or this checkout's `golf ui`), else None."""
    return environ.get("PREFECT_API_URL") or recorded_ui_url()


# ---------------------------------------------------------------------------
# The temporary server


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TemporaryServer:
    """Prefect's API app under uvicorn on a free loopback port, owned by this process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Spawn the server (returns at once; `wait_ready` waits for it). Call from the main thread."""
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None, "prefect is not installed"
        app_dir = str(Path(spec.origin).parent)
        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "error", "--lifespan", "on"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        self.proc = subprocess.Popen(
            cmd,
            env={**env, **SERVER_ENV},
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal's process group does not reach it
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only a prctl call runs before exec
        )

    def wait_ready(self, timeout: float) -> None:
        """Block until the server answers; RuntimeError naming the port if it exits or times out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (code := self.proc.poll()) is not None:
                raise RuntimeError(
                    f"the temporary Prefect server on port {self.port} exited with code {code}"
                )
            if healthy(self.api_url, timeout=1.0):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"the temporary Prefect server on port {self.port} did not answer within {timeout:g} s"
        )

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the server, SIGKILL it after `grace` seconds; reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def drain_prefect(timeout: float = 5.0) -> None:
    """Flush Prefect's queued logs and events to the server (at most `timeout` s each), if Prefect is loaded."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


def describe(api_url: str | None, server: Any) -> str:
    """One line for stderr saying which server this run reports to."""
    if server is not None:
        return f"prefect: temporary server {server.api_url} (stops with this run; `golf ui` keeps runs)"
    return f"prefect: {api_url}"
