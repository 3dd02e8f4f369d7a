"""The tokenise stage: the token shards the model trains on, from the downloaded data.

Three ways (tokeniser settings): `sp<V>` from shards passes the downloaded shards through
(hard links: no copy, no extra disk); `byte260` from shards decodes the sp shards back to UTF-8
bytes; `source=docs` tokenises a document source (the repo's docs_selected.jsonl, a JSONL or
Parquet file, or `fineweb:<config>` streamed with `datasets`) with the hub's tokenizer, a freshly
trained one (the official recipe), or bytes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from golf.settings import Settings
from golf.settings.convert import tokenise_config
from golf.tasks.cache import StageRecord, StageResult
from golf.tasks.common import cached_stage
from golf.tasks.retries import TRANSIENT_RETRIES


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same filesystem), else copy it (a failed copy names `dst` and the reason)."""
    from golfmodel.atomic import write_error

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        try:
            shutil.copyfile(src, dst)
        except OSError as e:
            raise write_error(dst, e) from e


def docs_spec(settings: Settings, download: StageRecord) -> str:
    """The document source: the repo's docs_selected.jsonl, a path, or `fineweb:<config>` → `hf:HuggingFaceFW/fineweb:<config>`."""
    docs = settings.tokeniser.docs
    if docs is None:
        if not download.values.get("docs"):
            raise ValueError(
                "tokeniser.source=docs needs docs_selected.jsonl, which the download stage did not fetch"
            )
        return str(download.path(download.values["docs"]))
    if docs.startswith("fineweb:"):
        return "hf:HuggingFaceFW/fineweb:" + docs.removeprefix("fineweb:")
    return docs


def make_shards(settings: Settings, download: StageRecord, work: Path) -> StageResult:
    """Write (or link) the train/val shards and the tokenizer model into `work`."""
    from golfmodel.data.tokenise import convert_sp_to_byte260, open_source, tokenise

    t = settings.tokeniser
    hub_tok = download.path(download.values["tokenizer"])
    workers = t.workers or None
    if t.source == "shards" and t.variant != "byte260":  # the hub's own shards, as they are
        for split in ("train", "val"):
            for rel in download.values[f"{split}_shards"]:
                link_or_copy(download.path(rel), work / Path(rel).name)
        link_or_copy(hub_tok, work / hub_tok.name)
        files = {s: [Path(r).name for r in download.values[f"{s}_shards"]] for s in ("train", "val")}
        return _result(t.variant, t.vocab_size, files["train"], files["val"], hub_tok.name, {})
    if t.source == "shards":  # byte260 from the sp shards, by decoding each document
        res = convert_sp_to_byte260(
            download.paths("val_shards"), download.paths("train_shards"), hub_tok, work,
            shard_tokens=t.shard_tokens, workers=workers,
        )  # fmt: skip
    else:
        source = open_source(docs_spec(settings, download), text_field=t.text_field)
        res = tokenise(source, work, tokenise_config(settings, hub_tok if t.tokenizer == "hub" else None))
    tok = None if res.tokenizer_path is None else res.tokenizer_path
    if tok is not None and tok.parent.resolve() != work.resolve():
        link_or_copy(tok, work / tok.name)
    counts = {"docs_val": res.docs_val, "docs_train": res.docs_train, "tokens_val": res.tokens_val,
              "tokens_train": res.tokens_train, "docs_mb_per_s": res.docs_mb_per_s, "tokens_per_s": res.tokens_per_s}  # fmt: skip
    return _result(
        res.variant, res.vocab_size, [p.name for p in res.train_paths], [p.name for p in res.val_paths],
        None if tok is None else tok.name, counts,
    )  # fmt: skip


def _result(
    variant: str, vocab: int, train: list[str], val: list[str], tok: str | None, counts: dict[str, Any]
) -> StageResult:
    return StageResult(
        values={
            "variant": variant,
            "vocab_size": vocab,
            "train_shards": train,
            "val_shards": val,
            "tokenizer": tok,
        },
        metrics=counts,
    )


@task(name="tokenise", cache_policy=NO_CACHE, persist_result=False, **TRANSIENT_RETRIES)
def tokenise(settings: Settings, download: StageRecord, force: bool = False) -> Any:
    """Produce the training token shards: hub sp shards as they are, byte260 conversion, or tokenised docs."""
    return cached_stage(
        "tokenise",
        settings,
        {"download": download},
        lambda work: make_shards(settings, download, work),
        force=force,
    )
