"""Fixtures for the data-plane tests: a loopback hub server and the sample tokenised once.

`hub_server` serves a folder (the sample mirror) as the root of a hub dataset
repository, answering HEAD and GET on `/datasets/<owner>/<name>/resolve/<rev>/<path>`
with the headers `huggingface_hub` needs (Content-Length, ETag, X-Repo-Commit)
and byte ranges. It records every request, and can corrupt a file's body or
answer 503 a given number of times.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from golfmodel.data.tokenise import TokeniseResult

REPO_ID = "willdepueoai/parameter-golf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubServer:
    """State of the loopback hub: what it serves and what it was asked."""

    root: Path
    repo_id: str = REPO_ID
    commit: str = COMMIT
    url: str = ""
    requests: list[tuple[str, str, int, str]] = field(default_factory=list)  # (method, path, status, rev)
    corrupt: dict[str, bytes] = field(default_factory=dict)  # repo path -> body served instead
    fail_503: dict[str, int] = field(default_factory=dict)  # repo path -> 503s left to send

    def hits(self, repo_path: str) -> list[tuple[str, str, int, str]]:
        return [r for r in self.requests if r[1] == repo_path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _reply(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _serve(self, body: bool) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        path = unquote(urlsplit(self.path).path)
        m = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not m or m.group(1) != hub.repo_id:
            hub.requests.append((self.command, path, 404, ""))
            return self._reply(404, {"X-Error-Code": "RepoNotFound"}, b"not found", body)
        rev, repo_path = m.group(2), m.group(3)
        if rev not in ("main", hub.commit):
            hub.requests.append((self.command, repo_path, 404, rev))
            return self._reply(404, {"X-Error-Code": "RevisionNotFound"}, b"no such revision", body)
        if hub.fail_503.get(repo_path, 0) > 0:
            hub.fail_503[repo_path] -= 1
            hub.requests.append((self.command, repo_path, 503, rev))
            return self._reply(503, {}, b"busy", body)
        file = (hub.root / repo_path).resolve()
        if hub.root.resolve() not in file.parents or not file.is_file():
            hub.requests.append((self.command, repo_path, 404, rev))
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": hub.commit}
            return self._reply(404, headers, b"entry not found", body)
        data = file.read_bytes()
        etag = hashlib.sha256(data).hexdigest()  # as the hub's LFS ETag; a corrupted body keeps the true hash
        data = hub.corrupt.get(repo_path, data)
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": hub.commit,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status = 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = int(rng.group(2)) if rng.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        hub.requests.append((self.command, repo_path, status, rev))
        self._reply(status, headers, data, body)


@pytest.fixture
def hub_server(sample_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A loopback hub serving the sample mirror as the repository root; yields its state (`.url`)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    hub = HubServer(root=sample_root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.hub = hub  # type: ignore[attr-defined]
    hub.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def tokenised_sample(
    tmp_path_factory: pytest.TempPathFactory, docs_jsonl: Path, sp_model_path: Path
) -> TokeniseResult:
    """The sample's 200 documents tokenised once with the official model (all train, one shard)."""
    from golfmodel.data.tokenise import JsonlSource, TokeniseConfig, tokenise

    out = tmp_path_factory.mktemp("tok_sp1024")
    cfg = TokeniseConfig(
        variant="sp1024", tokenizer_path=sp_model_path, num_val_docs=0, workers=2, progress=False
    )
    return tokenise(JsonlSource(path=docs_jsonl), out, cfg)


@pytest.fixture(scope="session")
def byte260_sample(
    tmp_path_factory: pytest.TempPathFactory, val_shard: Path, train_shard: Path, sp_model_path: Path
) -> TokeniseResult:
    """The sample's sp1024 val and train shards converted to byte260 once."""
    from golfmodel.data.tokenise import convert_sp_to_byte260

    out = tmp_path_factory.mktemp("byte260")
    return convert_sp_to_byte260([val_shard], [train_shard], sp_model_path, out, workers=2, progress=False)
