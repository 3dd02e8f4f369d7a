"""Content-keyed stage inputs (golf.tasks.inputs, golf.tasks.digests): mirror files, document files, the stat guard."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from golf.tasks import digests as digests_module
from golf.tasks.digests import ABSENT, FileDigests
from golf.tasks.inputs import stage_inputs
from golf.tasks.stages import stage_config

SHARD = "datasets/datasets/fineweb10B_sp1024/fineweb_train_000000.bin"


@pytest.fixture
def mirror(sample_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample mirror."""
    dest = tmp_path / "mirror"
    shutil.copytree(sample_root, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def _settings(*overrides: str):
    from golf.settings import load_settings

    return load_settings("test", overrides=list(overrides))


def test_mirror_inputs_name_every_file_the_download_reads(mirror: Path, tmp_path: Path) -> None:
    """The download's inputs hold the manifest, SHA256SUMS, both shards and the tokenizer, by sha256."""
    inputs = stage_inputs("download", _settings(f"data.mirror={mirror}"), FileDigests(tmp_path / "d.json"))
    names = {k.removeprefix("mirror/") for k in inputs}
    assert {
        "SHA256SUMS",
        "datasets/manifest.json",
        SHARD,
        "datasets/tokenizers/fineweb_1024_bpe.model",
    } <= names
    assert all(len(v) == 64 for v in inputs.values())


def test_fixed_mirror_file_changes_the_download_inputs(mirror: Path, tmp_path: Path) -> None:
    """A shard replaced in the mirror (a fix copied over a bad file) gives new inputs; copying it back restores them."""
    s, digests = _settings(f"data.mirror={mirror}"), FileDigests(tmp_path / "d.json")
    good = stage_inputs("download", s, digests)
    shard = mirror / SHARD
    saved = shard.read_bytes()
    shard.write_bytes(saved[:-2] + b"\x00\x00")
    assert stage_inputs("download", s, digests) != good
    shard.write_bytes(saved)
    assert stage_inputs("download", s, digests) == good


def test_same_content_elsewhere_keeps_the_download_key(
    mirror: Path, sample_root: Path, tmp_path: Path
) -> None:
    """Two mirrors with the same bytes at different paths give the same download inputs and settings subset."""
    a, b = _settings(f"data.mirror={mirror}"), _settings(f"data.mirror={sample_root}")
    digests = FileDigests(tmp_path / "d.json")
    assert stage_inputs("download", a, digests) == stage_inputs("download", b, digests)
    assert stage_config("download", a) == stage_config("download", b)


def test_appended_documents_change_the_tokenise_inputs(docs_jsonl: Path, tmp_path: Path) -> None:
    """tokeniser.docs = a JSONL file: appending documents changes tokenise's inputs (tokenise re-runs)."""
    docs = tmp_path / "docs.jsonl"
    shutil.copyfile(docs_jsonl, docs)
    s = _settings("tokeniser.source=docs", f"tokeniser.docs={docs}")
    digests = FileDigests(tmp_path / "d.json")
    before = stage_inputs("tokenise", s, digests)
    with docs.open("a") as f:
        f.write('{"text": "one more document"}\n')
    assert set(before) == {"docs/docs.jsonl"} and stage_inputs("tokenise", s, digests) != before


def test_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose stat is unchanged is served from the digest store, also by a new FileDigests."""
    monkeypatch.setattr(digests_module, "RACY_NS", 0)  # the file was written just now
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 1000)
    first = FileDigests(tmp_path / "d.json")
    h = first.digest(f)
    first.save()
    second = FileDigests(tmp_path / "d.json")
    assert second.digest(f) == h and second.hashed == []


def test_edit_with_mtime_restored_is_hashed_again(tmp_path: Path) -> None:
    """An in-place same-size edit whose mtime was put back (touch -d, rsync -a) is still re-hashed (ctime moved)."""
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 1000)
    digests = FileDigests(None)
    h = digests.digest(f)
    st = f.stat()
    f.write_bytes(b"y" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digests.digest(f) != h


def test_missing_input_file_is_keyed_as_absent(tmp_path: Path) -> None:
    """A missing file hashes as "absent" (the stage itself then fails naming it)."""
    assert FileDigests(None).digest(tmp_path / "nosuch.bin") == ABSENT


def test_repo_docs_are_a_download_input_when_tokenising_them(mirror: Path, tmp_path: Path) -> None:
    """tokeniser.source=docs without a path reads the mirror's docs_selected.jsonl: appending to it changes
    the download's inputs (download, then tokenise, re-run)."""
    s = _settings(f"data.mirror={mirror}", "tokeniser.source=docs")
    digests = FileDigests(tmp_path / "d.json")
    before = stage_inputs("download", s, digests)
    with (mirror / "datasets" / "docs_selected.jsonl").open("a") as f:
        f.write('{"text": "one more document"}\n')
    after = stage_inputs("download", s, digests)
    assert "mirror/datasets/docs_selected.jsonl" in before and after != before
