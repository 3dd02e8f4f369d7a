"""Tokenise: sources, the val/train split, sp and byte260 encoders, the parallel pipeline, sp → byte260."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from golfmodel.data.shards import BOS_ID, iter_documents, read_shard, write_shard
from golfmodel.data.tokenise import (
    DatasetsSource,
    DocumentError,
    IterableSource,
    JsonlSource,
    ParquetSource,
    TokeniseConfig,
    convert_sp_to_byte260,
    iter_texts,
    load_sentencepiece,
    tokenise,
    train_sentencepiece,
)

TEXTS = ["héllo wörld", "", "naïve café 123", "日本語のテキスト", "emoji 🙂 ok", "tab\tand\nnewline"]


def _write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


def _byte260(docs: list[str]) -> np.ndarray:
    return np.concatenate(
        [np.r_[BOS_ID, np.frombuffer(t.encode(), np.uint8).astype(np.int64) + 4] for t in docs]
    )


def _all_tokens(paths) -> np.ndarray:
    return np.concatenate([np.asarray(read_shard(p)) for p in paths]) if paths else np.empty(0, np.uint16)


def test_retokenising_sample_reproduces_official_train_shard(tokenised_sample, train_shard: Path) -> None:
    """The official model on docs_selected.jsonl gives fineweb_train_000000.bin byte for byte."""
    res = tokenised_sample
    assert [p.name for p in res.train_paths] == ["fineweb_train_000000.bin"] and res.val_paths == ()
    assert filecmp.cmp(res.train_paths[0], train_shard, shallow=False)
    assert (res.docs_train, res.tokens_train, res.text_bytes) == (200, 628457, 1_489_515)


def test_byte260_round_trip(tmp_path: Path) -> None:
    """byte260 shards decode back to each document's UTF-8 text (id − 4), one BOS per document."""
    cfg = TokeniseConfig(variant="byte260", num_val_docs=0, workers=0, progress=False)
    res = tokenise(JsonlSource(path=_write_jsonl(tmp_path / "d.jsonl", TEXTS)), tmp_path / "out", cfg)
    docs = list(iter_documents(_all_tokens(res.train_paths)))
    assert [bytes((d[1:] - 4).astype(np.uint8)).decode() for d in docs] == TEXTS
    assert all(int(d[0]) == BOS_ID for d in docs) and res.vocab_size == 260


def test_first_docs_are_validation(tmp_path: Path) -> None:
    """The first num_val_docs documents go to fineweb_val_*, the rest to fineweb_train_*, in order."""
    cfg = TokeniseConfig(variant="byte260", num_val_docs=4, workers=0, batch_docs=3, progress=False)
    res = tokenise(JsonlSource(path=_write_jsonl(tmp_path / "d.jsonl", TEXTS)), tmp_path / "out", cfg)
    assert (res.docs_val, res.docs_train) == (4, 2)
    np.testing.assert_array_equal(_all_tokens(res.val_paths), _byte260(TEXTS[:4]))
    np.testing.assert_array_equal(_all_tokens(res.train_paths), _byte260(TEXTS[4:]))


def test_parallel_workers_keep_source_order(tmp_path: Path, docs_jsonl: Path) -> None:
    """Two workers over many small batches write the same shards as the in-process path."""
    outs = []
    for workers in (0, 2):
        cfg = TokeniseConfig(variant="byte260", num_val_docs=7, workers=workers, batch_docs=8, shard_tokens=150_000,
                             max_docs=60, progress=False)  # fmt: skip
        outs.append(tokenise(JsonlSource(path=docs_jsonl), tmp_path / f"w{workers}", cfg))
    a, b = outs
    assert [p.name for p in a.train_paths] == [p.name for p in b.train_paths] and len(a.train_paths) > 1
    for p, q in zip(a.val_paths + a.train_paths, b.val_paths + b.train_paths, strict=True):
        assert filecmp.cmp(p, q, shallow=False)


def test_parquet_source_matches_jsonl(tmp_path: Path, docs_jsonl: Path) -> None:
    """A Parquet text column, read in record batches, yields the same documents as the JSONL."""
    texts = list(iter_texts(JsonlSource(path=docs_jsonl), limit=40))
    pq.write_table(pa.table({"text": texts, "n": list(range(40))}), tmp_path / "d.parquet", row_group_size=7)
    batches = list(ParquetSource(path=tmp_path / "d.parquet").batches(5))
    assert [len(b) for b in batches][:3] == [5, 5, 5]
    assert [t for b in batches for t in b.resolve_texts()] == texts


def test_parquet_missing_column_names_file(tmp_path: Path) -> None:
    """A Parquet file without the text column is refused, naming the file and the columns."""
    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "d.parquet")
    with pytest.raises(DocumentError, match=r"d\.parquet: no column 'text' \(columns: body\)"):
        list(ParquetSource(path=tmp_path / "d.parquet").batches(4))


def test_datasets_streaming_source_reads_local_parquet(tmp_path: Path) -> None:
    """The `datasets` streaming adapter yields the documents of a local Parquet file in order."""
    pq.write_table(pa.table({"text": TEXTS}), tmp_path / "d.parquet")
    src = DatasetsSource(path="parquet", config=None, data_files=str(tmp_path / "d.parquet"))
    assert list(iter_texts(src, batch_docs=4)) == TEXTS


def test_iterable_source_adapter_batches_records() -> None:
    """Records (dicts or strings) from any iterable are batched in order; a record without text names its index."""
    src = IterableSource(records=iter([{"text": "a"}, "b", {"text": "c"}]), name="fake")
    assert [b.texts for b in src.batches(2)] == [["a", "b"], ["c"]]
    with pytest.raises(DocumentError, match="fake: document 1 has no string field 'text'"):
        list(IterableSource(records=[{"text": "a"}, {"body": "b"}], name="fake").batches(2))


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    """A malformed line stops tokenising with an error naming the file and the line (raised in a worker)."""
    path = _write_jsonl(tmp_path / "d.jsonl", TEXTS[:2])
    with path.open("a") as f:
        f.write("\n{not json}\n")  # line 3 blank (skipped), line 4 bad
    cfg = TokeniseConfig(variant="byte260", num_val_docs=0, workers=1, progress=False)
    with pytest.raises(DocumentError, match=r"d\.jsonl:4: invalid JSON"):
        tokenise(JsonlSource(path=path), tmp_path / "out", cfg)
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob(".*"))


def test_jsonl_record_without_text_field(tmp_path: Path) -> None:
    """A record lacking the text field is refused with its line number."""
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(DocumentError, match=r"d\.jsonl:2: record has no string field 'text'"):
        list(iter_texts(JsonlSource(path=tmp_path / "d.jsonl")))


def test_fewer_docs_than_validation_split(tmp_path: Path) -> None:
    """A source shorter than num_val_docs is an error (the split would silently be wrong)."""
    cfg = TokeniseConfig(variant="byte260", num_val_docs=50, workers=0, progress=False)
    with pytest.raises(DocumentError, match="fewer than num_val_docs=50"):
        tokenise(JsonlSource(path=_write_jsonl(tmp_path / "d.jsonl", TEXTS)), tmp_path / "out", cfg)


def test_train_tiny_sentencepiece_with_official_recipe(tmp_path: Path, docs_jsonl: Path) -> None:
    """An sp400 tokenizer trained on sample docs has BOS 1, byte fallback, and tokenises the train docs."""
    cfg = TokeniseConfig(variant="sp400", num_val_docs=5, max_docs=40, workers=0, progress=False)
    res = tokenise(JsonlSource(path=docs_jsonl), tmp_path / "out", cfg)
    assert res.tokenizer_path == tmp_path / "out" / "fineweb_400_bpe.model"
    sp = load_sentencepiece(res.tokenizer_path)
    assert sp.get_piece_size() == 400 and (sp.pad_id(), sp.eos_id(), sp.unk_id()) == (0, 2, 3)
    assert sp.is_byte(4) and sp.encode("12") == [sp.piece_to_id("1"), sp.piece_to_id("2")]  # split_digits
    assert (res.docs_val, res.docs_train) == (5, 35) and int(_all_tokens(res.train_paths).max()) < 400


def test_vocab_too_small_for_sentencepiece_is_value_error(tmp_path: Path) -> None:
    """A vocabulary below the required characters fails with a ValueError naming the size."""
    with pytest.raises(ValueError, match="vocab_size=200"):
        train_sentencepiece(["abc déf ghî " * 50], tmp_path / "t.model", vocab_size=200)
    assert not (tmp_path / "t.model").exists()


def test_sp_to_byte260_matches_decoded_text(tmp_path: Path, val_shard: Path, sp_model_path: Path) -> None:
    """Converting sp shards gives BOS + UTF-8 bytes of each decoded document (221,983 bytes on the sample)."""
    res = convert_sp_to_byte260([val_shard], [], sp_model_path, tmp_path / "b", workers=0, progress=False)
    tokens = _all_tokens(res.val_paths)
    assert res.docs_val == 76 and int((tokens >= 4).sum()) == 221_983
    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    first = next(iter_documents(np.asarray(read_shard(val_shard))))
    want = sp.decode(first[1:].tolist()).encode()
    assert bytes((next(iter_documents(tokens))[1:] - 4).astype(np.uint8)) == want


def test_sp_to_byte260_rejoins_documents_cut_between_shards(
    tmp_path: Path, val_shard: Path, sp_model_path: Path
) -> None:
    """A document split across two shards converts exactly as if it were whole."""
    tokens = np.asarray(read_shard(val_shard))[:6000]
    cut = 3001
    assert tokens[cut] != BOS_ID
    write_shard(tmp_path / "a.bin", tokens[:cut])
    write_shard(tmp_path / "b.bin", tokens[cut:])
    write_shard(tmp_path / "whole.bin", tokens)
    split = convert_sp_to_byte260([], [tmp_path / "a.bin", tmp_path / "b.bin"], sp_model_path, tmp_path / "s",
                                  workers=0, progress=False)  # fmt: skip
    whole = convert_sp_to_byte260([], [tmp_path / "whole.bin"], sp_model_path, tmp_path / "w", workers=0,
                                  progress=False)  # fmt: skip
    np.testing.assert_array_equal(_all_tokens(split.train_paths), _all_tokens(whole.train_paths))
