"""Download: the real huggingface_hub client against a loopback hub, a local mirror, retries and checksums."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx2
import numpy as np
import pytest
from huggingface_hub.errors import HfHubHTTPError

from golfmodel.data.hub import (
    FIRST_CONTACT_S,
    ChecksumError,
    HubConfig,
    HubError,
    HubUnreachableError,
    MirrorNotFoundError,
    download,
    is_network_fault,
    resolve_revision,
    with_retries,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VAL = "datasets/datasets/fineweb10B_sp1024/fineweb_val_000000.bin"
TRAIN = "datasets/datasets/fineweb10B_sp1024/fineweb_train_000000.bin"
TOKENIZER = "datasets/tokenizers/fineweb_1024_bpe.model"


def _hub_cfg(url: str, **kw) -> HubConfig:
    return HubConfig(endpoint=url, progress=False, backoff_s=0.01, **kw)


def _copy_sample(sample_root: Path, dest: Path, *, skip: str | None = None) -> Path:
    shutil.copytree(
        sample_root, dest, ignore=lambda d, names: [n for n in names if skip and n == Path(skip).name]
    )
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def test_hub_download_matches_sample_and_records_commit(
    hub_server, sample_root: Path, tmp_path: Path
) -> None:
    """The hub client fetches manifest, shards, tokenizer and docs byte-identical, pinned to X-Repo-Commit."""
    res = download(_hub_cfg(hub_server.url, include_docs=True), tmp_path / "dl")
    assert res.revision == COMMIT
    for got, rel in [(res.val_paths[0], VAL), (res.train_paths[0], TRAIN), (res.tokenizer_path, TOKENIZER),
                     (res.docs_path, "datasets/docs_selected.jsonl")]:  # fmt: skip
        assert got == tmp_path / "dl" / rel and got.read_bytes() == (sample_root / rel).read_bytes()
    assert set(res.verified) == set(res.sha256) and len(res.sha256) == 5
    assert res.manifest["datasets"][0]["name"] == "fineweb10B_sp1024"


def test_hub_files_fetched_at_resolved_commit(hub_server, tmp_path: Path) -> None:
    """After resolving `main` once (the manifest's HEAD), every request names the commit SHA."""
    download(_hub_cfg(hub_server.url), tmp_path / "dl")
    first, *rest = hub_server.requests
    assert first[:2] == ("HEAD", "datasets/manifest.json") and first[3] == "main"
    assert rest and {r[3] for r in rest} == {COMMIT}


def test_hub_second_run_downloads_nothing(hub_server, tmp_path: Path) -> None:
    """A repeated download finds every file in place and issues no GET."""
    download(_hub_cfg(hub_server.url), tmp_path / "dl")
    hub_server.requests.clear()
    download(_hub_cfg(hub_server.url), tmp_path / "dl")
    assert [r for r in hub_server.requests if r[0] == "GET"] == []


def test_hub_via_cache_dir_gives_real_files(hub_server, sample_root: Path, tmp_path: Path) -> None:
    """With an hf cache folder, the destination still gets plain files with the sample's bytes."""
    res = download(_hub_cfg(hub_server.url, cache_dir=tmp_path / "cache"), tmp_path / "dl")
    assert not res.val_paths[0].is_symlink()
    assert res.val_paths[0].read_bytes() == (sample_root / VAL).read_bytes()


def test_hub_404_is_not_retried(hub_server, sample_root: Path, tmp_path: Path) -> None:
    """A file missing on the server fails at once (one request), naming the file."""
    hub_server.root = _copy_sample(sample_root, tmp_path / "repo", skip=TRAIN)
    with pytest.raises(HubError, match="fineweb_train_000000.bin") as info:
        download(_hub_cfg(hub_server.url, max_attempts=4), tmp_path / "dl")
    assert not is_network_fault(info.value)
    assert [r[2] for r in hub_server.hits(TRAIN)] == [404]


def test_hub_unknown_revision_fails(hub_server, tmp_path: Path) -> None:
    """A revision the server does not know is an error, not retried."""
    with pytest.raises(HubError, match="manifest.json"):
        download(_hub_cfg(hub_server.url, revision="f" * 40), tmp_path / "dl")
    assert len(hub_server.requests) == 1


def test_hub_503_is_retried(hub_server, sample_root: Path, tmp_path: Path) -> None:
    """Two 503 answers on a shard are retried with backoff and the download succeeds."""
    hub_server.fail_503[VAL] = 2
    res = download(_hub_cfg(hub_server.url, max_attempts=4), tmp_path / "dl")
    assert [r[2] for r in hub_server.hits(VAL)][:3] == [503, 503, 200]
    assert res.val_paths[0].read_bytes() == (sample_root / VAL).read_bytes()


def test_hub_corrupt_body_is_checksum_error(hub_server, sample_root: Path, tmp_path: Path) -> None:
    """A body that does not match the published sha256 raises, is removed, and is not retried."""
    data = bytearray((sample_root / VAL).read_bytes())
    data[5000] ^= 0xFF
    hub_server.corrupt[VAL] = bytes(data)
    with pytest.raises(ChecksumError, match="sha256 mismatch") as info:
        download(_hub_cfg(hub_server.url), tmp_path / "dl")
    assert "fineweb_val_000000.bin" in str(info.value)
    assert not (tmp_path / "dl" / VAL).exists()
    assert len([r for r in hub_server.hits(VAL) if r[0] == "GET"]) == 1


def test_mirror_download_matches_sample(sample_root: Path, tmp_path: Path) -> None:
    """A local mirror is copied into the destination with every file verified."""
    res = download(HubConfig(mirror=sample_root, progress=False), tmp_path / "dl")
    assert res.revision is None and res.source == f"mirror:{sample_root}"
    assert res.val_paths[0].read_bytes() == (sample_root / VAL).read_bytes()
    assert res.tokenizer_path.read_bytes() == (sample_root / TOKENIZER).read_bytes()
    assert len(res.verified) == 4


def test_missing_mirror_names_the_path(tmp_path: Path) -> None:
    """A mirror folder that does not exist raises MirrorNotFoundError naming it."""
    missing = tmp_path / "no-such-mirror"
    with pytest.raises(MirrorNotFoundError, match=str(missing)):
        download(HubConfig(mirror=missing, progress=False), tmp_path / "dl")


def test_mirror_corrupt_file_is_checksum_error(sample_root: Path, tmp_path: Path) -> None:
    """A mirror file that differs from SHA256SUMS raises ChecksumError naming it."""
    mirror = _copy_sample(sample_root, tmp_path / "mirror")
    data = bytearray((mirror / TRAIN).read_bytes())
    data[-1] ^= 0x01
    (mirror / TRAIN).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="fineweb_train_000000.bin"):
        download(HubConfig(mirror=mirror, progress=False), tmp_path / "dl")


def test_too_many_train_shards_requested(sample_root: Path, tmp_path: Path) -> None:
    """Asking for more train shards than the manifest lists is an error naming the count."""
    with pytest.raises(HubError, match="has 1 train shards; 2 requested"):
        download(HubConfig(mirror=sample_root, train_shards=2, progress=False), tmp_path / "dl")


def test_with_retries_backs_off_on_network_faults() -> None:
    """Connection errors are retried with doubling delays until the call succeeds."""
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise httpx2.ConnectError("refused")
        return "ok"

    assert with_retries(flaky, what="x", max_attempts=5, backoff_s=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]


def _http_error(status: int) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("GET", "http://127.0.0.1/x"))
    return HfHubHTTPError(f"{status}", response=response)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (httpx2.ConnectError("refused"), True),
        (httpx2.ReadTimeout("slow"), True),
        (_http_error(503), True),
        (_http_error(429), True),
        (_http_error(404), False),
        (_http_error(401), False),
        (ChecksumError("bad"), False),
        (ValueError("bug"), False),
    ],
    ids=["connect", "timeout", "503", "429", "404", "401", "checksum", "other"],
)
def test_network_fault_classification(exc: BaseException, transient: bool) -> None:
    """Only connection errors, timeouts and 408/429/5xx count as transient."""
    assert is_network_fault(exc) is transient


def test_wrapped_network_fault_is_found_in_the_cause_chain() -> None:
    """A network fault wrapped by another error is still recognised (for task-level retries)."""
    try:
        try:
            raise httpx2.ConnectError("refused")
        except httpx2.ConnectError as inner:
            raise HubError("fetch failed") from inner
    except HubError as outer:
        assert is_network_fault(outer)


def test_stage_key_holds_the_resolved_commit_not_the_branch(
    hub_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download stage's inputs for revision=main are the commit the hub resolves it to."""
    from golf.settings import load_settings
    from golf.tasks.digests import FileDigests
    from golf.tasks.inputs import stage_inputs

    monkeypatch.delenv("GOLF_DATA__MIRROR", raising=False)  # `make test` exports the sample mirror
    s = load_settings("test", overrides=[f"data.endpoint={hub_server.url}", "data.revision=main"])
    assert stage_inputs("download", s, FileDigests(None)) == {"hub_commit": COMMIT}
    assert resolve_revision(_hub_cfg(hub_server.url, revision=COMMIT)) == COMMIT  # pinned: no request needed


def test_unreachable_hub_fails_fast_with_the_offline_way(tmp_path: Path) -> None:
    """No mirror and no hub answering: HubUnreachableError within FIRST_CONTACT_S, naming the mirror setting
    and the sample folder, and not a transient fault (the pipeline does not retry it for minutes)."""
    import socket
    import time

    with socket.socket() as sock:  # a loopback port with nothing listening: connection refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    t0 = time.monotonic()
    with pytest.raises(HubUnreachableError) as info:
        download(HubConfig(endpoint=url, progress=False, backoff_s=0.2), tmp_path / "dl")
    assert time.monotonic() - t0 < FIRST_CONTACT_S
    assert "GOLF_DATA__MIRROR" in str(info.value) and "../shared/fineweb-sample" in str(info.value)
    assert not is_network_fault(info.value)


def test_shards_of_another_variant_are_rejected(sample_root: Path, tmp_path: Path) -> None:
    """A well-formed val shard whose token count disagrees with the manifest (another variant's file) fails."""
    from golfmodel.data.shards import read_shard, write_shard

    mirror = _copy_sample(sample_root, tmp_path / "mirror")
    (mirror / "SHA256SUMS").unlink()
    val = mirror / VAL
    tokens = np.asarray(read_shard(val))
    write_shard(val, np.concatenate([tokens, tokens]) % 260)  # like byte260 bytes: more tokens, valid header
    with pytest.raises(HubError, match=r"val shards hold 186,374 tokens but manifest\.json says 93,187"):
        download(HubConfig(mirror=mirror, progress=False), tmp_path / "dl")
