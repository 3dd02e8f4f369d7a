"""Document sources for tokenisation, read in source order and streamed, never whole.

JSONL with a text field (the challenge's `docs_selected.jsonl`; lines are parsed in
the worker, errors name `file:line`), Parquet with a text column (pyarrow record
batches of that column only), a `datasets` streaming source (`HuggingFaceFW/fineweb`
configs, e.g. `sample-10BT`) and any iterable of records. Every source yields
`DocBatch`es; `tokenise` splits them into validation (the first `num_val_docs`
documents) and train.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class DocumentError(ValueError):
    """A document source is malformed; the message names the file and the line or row."""


@dataclass(frozen=True, kw_only=True)
class DocBatch:
    """Documents in source order: decoded `texts`, or raw JSONL `lines` that the worker parses."""

    texts: list[str] | None = None
    lines: list[bytes] | None = None
    line_numbers: list[int] | None = None  # 1-based, parallel to `lines`
    source: str = "<texts>"
    text_field: str = "text"

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.lines or [])

    def slice(self, a: int, b: int) -> DocBatch:
        if self.texts is not None:
            return DocBatch(texts=self.texts[a:b], source=self.source, text_field=self.text_field)
        assert self.lines is not None and self.line_numbers is not None
        return DocBatch(
            lines=self.lines[a:b],
            line_numbers=self.line_numbers[a:b],
            source=self.source,
            text_field=self.text_field,
        )

    def resolve_texts(self) -> list[str]:
        """The documents' texts (parsing JSONL lines here, so the work lands in a worker)."""
        if self.texts is not None:
            return self.texts
        assert self.lines is not None and self.line_numbers is not None
        return [
            parse_jsonl_line(line, source=self.source, lineno=n, text_field=self.text_field)
            for line, n in zip(self.lines, self.line_numbers, strict=True)
        ]


class DocumentSource(Protocol):
    """Anything that yields documents in a fixed order, in batches."""

    name: str

    def batches(self, batch_docs: int) -> Iterator[DocBatch]: ...


def parse_jsonl_line(line: bytes, *, source: str, lineno: int, text_field: str) -> str:
    """The text of one JSONL record; DocumentError names the file and line."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise DocumentError(f"{source}:{lineno}: invalid JSON ({why})") from None
    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        raise DocumentError(f"{source}:{lineno}: record has no string field {text_field!r}")
    return record[text_field]


@dataclass(frozen=True, kw_only=True)
class JsonlSource:
    """One JSON object per line with a string field `text_field`; blank lines are skipped."""

    path: Path
    text_field: str = "text"

    @property
    def name(self) -> str:
        return str(self.path)

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        lines: list[bytes] = []
        numbers: list[int] = []
        try:
            f = Path(self.path).open("rb")
        except OSError as exc:
            raise DocumentError(f"{self.path}: cannot open ({exc.strerror or exc})") from exc
        with f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                lines.append(line)
                numbers.append(lineno)
                if len(lines) == batch_docs:
                    yield DocBatch(
                        lines=lines, line_numbers=numbers, source=self.name, text_field=self.text_field
                    )
                    lines, numbers = [], []
        if lines:
            yield DocBatch(lines=lines, line_numbers=numbers, source=self.name, text_field=self.text_field)


@dataclass(frozen=True, kw_only=True)
class ParquetSource:
    """A Parquet file with a string column `text_column`, read in record batches (never whole)."""

    path: Path
    text_column: str = "text"

    @property
    def name(self) -> str:
        return str(self.path)

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except (OSError, ValueError) as exc:
            raise DocumentError(f"{self.path}: cannot read Parquet ({exc})") from exc
        if self.text_column not in pf.schema_arrow.names:
            raise DocumentError(
                f"{self.path}: no column {self.text_column!r} (columns: {', '.join(pf.schema_arrow.names)})"
            )
        row = 0
        for rb in pf.iter_batches(batch_size=batch_docs, columns=[self.text_column]):
            texts = rb.column(0).to_pylist()
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise DocumentError(
                        f"{self.path}: row {row + i} column {self.text_column!r} is not a string"
                    )
            row += len(texts)
            yield DocBatch(texts=texts, source=self.name)


@dataclass(frozen=True, kw_only=True)
class IterableSource:
    """Adapts any iterable of records (dicts with `text_field`) or strings; used by DatasetsSource."""

    records: Iterable[Any]
    name: str = "<iterable>"
    text_field: str = "text"

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        texts: list[str] = []
        for i, rec in enumerate(self.records):
            text = (
                rec if isinstance(rec, str) else rec.get(self.text_field) if isinstance(rec, dict) else None
            )
            if not isinstance(text, str):
                raise DocumentError(f"{self.name}: document {i} has no string field {self.text_field!r}")
            texts.append(text)
            if len(texts) == batch_docs:
                yield DocBatch(texts=texts, source=self.name)
                texts = []
        if texts:
            yield DocBatch(texts=texts, source=self.name)


@dataclass(frozen=True, kw_only=True)
class DatasetsSource:
    """A `datasets` streaming dataset, e.g. `HuggingFaceFW/fineweb` config `sample-10BT` (needs the hub).

    `path="parquet", data_files=...` streams local files through the same loader.
    """

    path: str = "HuggingFaceFW/fineweb"
    config: str | None = "sample-10BT"
    split: str = "train"
    data_files: str | list[str] | None = None
    text_field: str = "text"

    @property
    def name(self) -> str:
        return f"datasets:{self.path}" + (f"/{self.config}" if self.config else "")

    def batches(self, batch_docs: int) -> Iterator[DocBatch]:
        import datasets

        ds = datasets.load_dataset(
            self.path, name=self.config, split=self.split, streaming=True, data_files=self.data_files
        )
        source = IterableSource(records=ds, name=self.name, text_field=self.text_field)
        yield from source.batches(batch_docs)


def open_source(spec: str | Path, *, text_field: str = "text") -> DocumentSource:
    """A source from a path (`.jsonl`/`.json` → JSONL, `.parquet` → Parquet) or `hf:PATH[:CONFIG]`."""
    s = str(spec)
    if s.startswith("hf:"):
        path, _, config = s[3:].partition(":")
        return DatasetsSource(path=path, config=config or None, text_field=text_field)
    p = Path(s)
    if p.suffix == ".parquet":
        return ParquetSource(path=p, text_column=text_field)
    if p.suffix in (".jsonl", ".json", ".ndjson"):
        return JsonlSource(path=p, text_field=text_field)
    raise DocumentError(f"{p}: unknown document source type (expected .jsonl, .parquet or hf:NAME[:CONFIG])")


def iter_texts(
    source: DocumentSource, *, skip: int = 0, limit: int | None = None, batch_docs: int = 512
) -> Iterator[str]:
    """Texts of documents skip..skip+limit of a source, parsed in this process."""
    seen = 0
    for batch in source.batches(batch_docs):
        for text in batch.resolve_texts():
            if seen >= skip:
                if limit is not None and seen - skip >= limit:
                    return
                yield text
            seen += 1
