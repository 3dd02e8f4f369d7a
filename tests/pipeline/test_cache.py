"""The stage cache's rules (SPEC §8) as pure logic: no Prefect server, no library stages."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from golf.tasks.cache import (
    RECORD_NAME,
    CacheError,
    StageCache,
    StageRecord,
    StageResult,
    explain_key,
    file_lock,
    verify_outputs,
)

ENV = "env-fingerprint-for-tests"


class Counter:
    """A compute function that writes `payload` to out.txt and counts its calls."""

    def __init__(self, payload: str = "hello") -> None:
        self.calls = 0
        self.payload = payload

    def __call__(self, work: Path) -> StageResult:
        self.calls += 1
        (work / "out.txt").write_text(self.payload)
        return StageResult(values={"out": "out.txt"}, metrics={"calls": self.calls})


@pytest.fixture
def cache(tmp_path: Path) -> StageCache:
    return StageCache(tmp_path / "cache", environment=ENV)


def test_unchanged_inputs_are_a_hit(cache: StageCache) -> None:
    """The same stage, settings and upstream: computed once, then served from the cache."""
    fn = Counter()
    rec1, hit1 = cache.run("a", {"x": 1}, {}, fn)
    rec2, hit2 = cache.run("a", {"x": 1}, {}, fn)
    assert (hit1, hit2, fn.calls) == (False, True, 1)
    assert rec2.content_hash == rec1.content_hash and rec2.path("out.txt").read_text() == "hello"


def test_changed_setting_recomputes(cache: StageCache) -> None:
    """A different settings subset is a different key."""
    fn = Counter()
    cache.run("a", {"x": 1}, {}, fn)
    _, hit = cache.run("a", {"x": 2}, {}, fn)
    assert not hit and fn.calls == 2


def test_changed_upstream_content_recomputes_downstream(cache: StageCache) -> None:
    """Downstream keys hold the upstream content hash: new upstream bytes re-run downstream."""
    up1, _ = cache.run("up", {"v": 1}, {}, Counter("one"))
    up2, _ = cache.run("up", {"v": 2}, {}, Counter("two"))
    down = Counter()
    cache.run("down", {}, {"up": up1}, down)
    _, hit = cache.run("down", {}, {"up": up2}, down)
    assert not hit and down.calls == 2


def test_identical_upstream_content_keeps_downstream_cached(cache: StageCache) -> None:
    """An upstream re-run that reproduces the same bytes leaves downstream a hit (early cut-off)."""
    up1, _ = cache.run("up", {"v": 1}, {}, Counter("same"))
    up2, _ = cache.run("up", {"v": 2}, {}, Counter("same"))
    down = Counter()
    cache.run("down", {}, {"up": up1}, down)
    _, hit = cache.run("down", {}, {"up": up2}, down)
    assert up1.key != up2.key and hit and down.calls == 1


def test_deleted_output_recomputes(cache: StageCache) -> None:
    """A deleted output invalidates the entry; the stage runs again and restores it."""
    fn = Counter()
    rec, _ = cache.run("a", {}, {}, fn)
    rec.path("out.txt").unlink()
    rec2, hit = cache.run("a", {}, {}, fn)
    assert not hit and fn.calls == 2 and rec2.path("out.txt").read_text() == "hello"


def test_resized_output_recomputes(cache: StageCache) -> None:
    """An output whose size no longer matches the record is not served."""
    fn = Counter()
    rec, _ = cache.run("a", {}, {}, fn)
    rec.path("out.txt").write_text("truncat")
    _, hit = cache.run("a", {}, {}, fn)
    assert not hit


def test_modified_output_same_size_recomputes(cache: StageCache) -> None:
    """A same-size edit (newer mtime) is caught by re-hashing that file."""
    fn = Counter()
    rec, _ = cache.run("a", {}, {}, fn)
    path = rec.path("out.txt")
    path.write_text("HELLO")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _, hit = cache.run("a", {}, {}, fn)
    assert not hit


def test_environment_change_recomputes(tmp_path: Path) -> None:
    """A new library source hash or package version (the environment fingerprint) misses."""
    fn = Counter()
    StageCache(tmp_path, environment="v1").run("a", {}, {}, fn)
    _, hit = StageCache(tmp_path, environment="v2").run("a", {}, {}, fn)
    assert not hit and fn.calls == 2


def test_failed_compute_leaves_no_entry(cache: StageCache) -> None:
    """A compute that raises publishes nothing under the key (record.json is written last)."""

    def boom(work: Path) -> StageResult:
        (work / "partial.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.run("a", {}, {}, boom)
    assert cache.lookup("a", {}, {}) is None
    assert not cache.folder("a", cache.key("a", {}, {})).exists()


def test_resume_keeps_the_work_folder(cache: StageCache) -> None:
    """With resume, a retried stage finds what the failed attempt left (a checkpoint)."""
    seen: list[bool] = []

    def attempt(work: Path) -> StageResult:
        seen.append((work / "ckpt.pt").exists())
        (work / "ckpt.pt").write_bytes(b"state")
        if len(seen) == 1:
            raise RuntimeError("killed")
        (work / "final.pt").write_bytes(b"final")
        return StageResult(outputs=["final.pt"], prune=["ckpt.pt"])

    with pytest.raises(RuntimeError):
        cache.run("train", {}, {}, attempt, resume=True)
    rec, _ = cache.run("train", {}, {}, attempt, resume=True)
    assert seen == [False, True]
    assert list(rec.outputs) == ["final.pt"] and not rec.path("ckpt.pt").exists()


def test_without_resume_the_work_folder_is_cleared(cache: StageCache) -> None:
    """Stages that cannot resume start from an empty work folder."""
    seen: list[bool] = []

    def attempt(work: Path) -> StageResult:
        seen.append((work / "partial").exists())
        (work / "partial").write_text("x")
        if len(seen) == 1:
            raise RuntimeError("failed")
        return StageResult()

    with pytest.raises(RuntimeError):
        cache.run("a", {}, {}, attempt)
    cache.run("a", {}, {}, attempt)
    assert seen == [False, False]


def test_missing_declared_output_is_an_error(cache: StageCache) -> None:
    """A compute that declares an output it did not write fails with the file's name."""
    with pytest.raises(CacheError, match="nothere"):
        cache.run("a", {}, {}, lambda work: StageResult(outputs=["nothere"]))


def test_force_recomputes_a_valid_entry(cache: StageCache) -> None:
    """force=True reruns a stage even when its entry is valid."""
    fn = Counter()
    cache.run("a", {}, {}, fn)
    _, hit = cache.run("a", {}, {}, fn, force=True)
    assert not hit and fn.calls == 2


def test_same_key_concurrently_computes_once(cache: StageCache) -> None:
    """Two runs computing the same key: the lock lets one compute, the other gets its entry."""
    gate = threading.Barrier(2)
    fn = Counter()
    results: list[bool] = []

    def run() -> None:
        gate.wait()
        results.append(cache.run("a", {}, {}, fn)[1])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fn.calls == 1 and sorted(results) == [False, True]


def test_different_settings_use_separate_folders(cache: StageCache) -> None:
    """Concurrent runs with different settings never share a folder."""
    r1, _ = cache.run("a", {"x": 1}, {}, Counter("one"))
    r2, _ = cache.run("a", {"x": 2}, {}, Counter("two"))
    assert (
        r1.dir != r2.dir
        and r1.path("out.txt").read_text() == "one"
        and r2.path("out.txt").read_text() == "two"
    )


def test_record_round_trips(cache: StageCache) -> None:
    """record.json holds the record the run returned."""
    rec, _ = cache.run("a", {"x": 1}, {}, Counter())
    import json

    assert StageRecord.from_dict(json.loads((Path(rec.dir) / RECORD_NAME).read_text())) == rec


def test_moved_cache_still_serves(tmp_path: Path) -> None:
    """A cache folder moved elsewhere (e.g. a copied artifacts dir) serves records pointing at the new place."""
    StageCache(tmp_path / "one", environment=ENV).run("a", {}, {}, Counter())
    (tmp_path / "one").rename(tmp_path / "two")
    rec = StageCache(tmp_path / "two", environment=ENV).lookup("a", {}, {})
    assert rec is not None and rec.path("out.txt").read_text() == "hello"


def _flip_keep_mtime(path: Path) -> None:
    """Flip one bit of `path` in place and restore its mtime (what rsync -a or disk rot leave)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_bit_flip_with_mtime_kept_is_caught_by_verify(cache: StageCache) -> None:
    """A verified stage re-hashes every output: a flipped bit with the mtime kept recomputes it."""
    fn = Counter()
    rec, _ = cache.run("pack", {}, {}, fn)
    _flip_keep_mtime(rec.path("out.txt"))
    again, hit = cache.run("pack", {}, {}, fn, verify=True)
    assert not hit and fn.calls == 2 and again.path("out.txt").read_text() == "hello"
    assert "does not match its recorded sha256" in cache.invalid["pack"]


def test_older_mtime_rehashes(cache: StageCache) -> None:
    """A same-size change whose mtime moved back (a restore from backup) is re-hashed, not only newer ones."""
    fn = Counter()
    rec, _ = cache.run("a", {}, {}, fn)
    path = rec.path("out.txt")
    st = path.stat()
    path.write_text("HELLO")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    _, hit = cache.run("a", {}, {}, fn)
    assert not hit and fn.calls == 2


def test_input_hashes_enter_the_key(cache: StageCache) -> None:
    """The same settings with a changed input file hash recompute; the unchanged hash is a hit."""
    fn = Counter()
    cache.run("download", {}, {}, fn, inputs={"mirror/a.bin": "1" * 64})
    _, same = cache.run("download", {}, {}, fn, inputs={"mirror/a.bin": "1" * 64})
    _, changed = cache.run("download", {}, {}, fn, inputs={"mirror/a.bin": "2" * 64})
    assert same and not changed and fn.calls == 2


def test_verify_outputs_names_the_changed_file(cache: StageCache) -> None:
    """verify_outputs raises CacheError naming the file whose bytes differ from the record."""
    rec, _ = cache.run("pack", {}, {}, Counter())
    _flip_keep_mtime(rec.path("out.txt"))
    with pytest.raises(CacheError, match=r"out\.txt: sha256 .* does not match .* --from pack"):
        verify_outputs(rec)


def test_explain_key_says_what_the_key_holds(cache: StageCache) -> None:
    """A record's key explanation names the key, the upstream hashes, the input files and the code."""
    up, _ = cache.run("up", {}, {}, Counter())
    rec, _ = cache.run(
        "down", {"x": 1}, {"up": up}, Counter(), inputs={"mirror/fineweb_val_000000.bin": "ab" * 32}
    )
    text = explain_key(rec)
    assert rec.key[:12] in text and f"up {up.content_hash[:10]}" in text
    assert "fineweb_val_000000.bin abababab" in text and f"code {ENV[:10]}" in text


def test_lock_file_respects_the_umask(tmp_path: Path) -> None:
    """Under umask 002 a lock file is group-writable (0664), so a teammate can lock a shared cache."""
    old = os.umask(0o002)
    try:
        with file_lock(tmp_path / ".k.lock"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / ".k.lock").stat().st_mode & 0o777 == 0o664
