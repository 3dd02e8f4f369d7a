"""Minigolf bench data: the training and validation shards (decoded to byte260 when asked) and the bigram table."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golfmodel.atomic import atomic_write_json
from golfmodel.bench.minigolf_arm import (
    sha256_file,
    sha256_json,
)
from golfmodel.bench.minigolf_config import Log

# --- data --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BenchData:
    """The bench's shards (already in `variant`), the byte table source and their content hash."""

    variant: str
    vocab_size: int
    train_shards: tuple[str, ...]
    val_shards: tuple[str, ...]
    tokenizer: str  # "byte260" or the sentencepiece model path
    hash: str
    bigram_logprior: str | None = None  # (V, V) table for the `bigram` ablation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shard_variant(path: str | Path) -> str:
    """The variant (byte260, sp<V>) named by the official folder `fineweb10B_<variant>`; sp1024 if none."""
    for part in reversed(Path(path).parts[:-1]):
        if part.startswith("fineweb10B_"):
            return part.removeprefix("fineweb10B_")
    return "sp1024"


def _hash_files(paths: Sequence[str | Path]) -> list[str]:
    return [sha256_file(p) for p in paths]


def prepare_data(
    train_shards: Sequence[str | Path],
    val_shards: Sequence[str | Path],
    *,
    variant: str,
    sp_model: str | Path | None,
    out_dir: str | Path,
    input_variant: str | None = None,
    log: Log = print,
) -> BenchData:
    """The bench's shards in `variant`; sp shards are decoded to byte260 once (cached by content hash)."""
    from golfmodel.data.tokenise import convert_sp_to_byte260

    if variant not in ("byte260", "sp1024"):
        raise ValueError(f"variant must be byte260 or sp1024, got {variant!r}")
    train = [Path(p) for p in train_shards]
    val = [Path(p) for p in val_shards]
    if not train or not val:
        raise ValueError(
            f"the bench needs training and validation shards (got {len(train)} train, {len(val)} val)"
        )
    src = input_variant or shard_variant(val[0])
    sp_hash = sha256_file(sp_model) if sp_model is not None and Path(sp_model).exists() else None
    if src == "byte260":
        if variant != "byte260":
            raise ValueError(
                "byte260 shards cannot be scored as sp1024: pass sp1024 shards for --variant sp1024"
            )
        out_train, out_val = train, val
    elif variant == "byte260":
        if sp_hash is None:
            raise ValueError(
                f"decoding {src} shards to byte260 needs the sentencepiece model (got {sp_model})"
            )
        key = sha256_json({"train": _hash_files(train), "val": _hash_files(val), "sp": sp_hash})[:16]
        dest = Path(out_dir) / f"byte260-{key}"
        done = dest / "done.json"
        if done.exists():
            info = json.loads(done.read_text())
            out_train = [dest / p for p in info["train"]]
            out_val = [dest / p for p in info["val"]]
        else:
            log(f"decoding {len(val)} val + {len(train)} train {src} shards to byte260 in {dest}")
            small = sum(p.stat().st_size for p in train + val) < (64 << 20)  # in-process: no pool start-up
            res = convert_sp_to_byte260(
                val, train, sp_model, dest, workers=0 if small else None, progress=False
            )  # type: ignore[arg-type]
            out_train, out_val = list(res.train_paths), list(res.val_paths)
            info = {"train": [p.name for p in out_train], "val": [p.name for p in out_val]}
            atomic_write_json(done, info)
    else:
        if src != variant:
            raise ValueError(f"the shards are {src}, the bench variant is {variant}")
        if sp_hash is None:
            raise ValueError(f"scoring {variant} needs the sentencepiece model (got {sp_model})")
        out_train, out_val = train, val
    vocab = 260 if variant == "byte260" else int(variant.removeprefix("sp"))
    tokenizer = "byte260" if variant == "byte260" else str(Path(sp_model).resolve())  # type: ignore[arg-type]
    digest = sha256_json(
        {"variant": variant, "train": _hash_files(out_train), "val": _hash_files(out_val), "sp": sp_hash}
    )
    return BenchData(
        variant=variant,
        vocab_size=vocab,
        train_shards=tuple(str(Path(p).resolve()) for p in out_train),
        val_shards=tuple(str(Path(p).resolve()) for p in out_val),
        tokenizer=tokenizer,
        hash=digest,
    )


def ensure_bigram(data: BenchData, out_dir: Path, log: Log = print) -> BenchData:
    """`data` with a bigram log-prior table built from its training shards (for the `bigram` ablation)."""
    if data.bigram_logprior is not None:
        return data
    from golfmodel.data import bigram

    path = out_dir / f"bigram-{data.hash[:16]}.npz"
    if not path.exists():
        log(f"counting bigrams of the training shards into {path}")
        bigram.build_bigram([Path(p) for p in data.train_shards], data.vocab_size, path)
    return dataclasses.replace(data, bigram_logprior=str(path))
