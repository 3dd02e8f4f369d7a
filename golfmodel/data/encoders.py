"""Tokenizers of the two variants: `sp<V>` (sentencepiece, official training recipe) and `byte260`.

`sp<V>`: a sentencepiece BPE model (the hub's, or trained with `SP_RECIPE`, the
challenge's recipe); `byte260`: UTF-8 bytes, id = byte + 4, pad/bos/eos/unk =
0/1/2/3, no normalisation. Encoders turn a batch of texts into one uint16 array
of BOS (= 1) + tokens per document, no EOS (SPEC §2).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from golfmodel.atomic import atomic_write
from golfmodel.data.shards import BOS_ID

PAD_ID, EOS_ID, UNK_ID = 0, 2, 3
BYTE_OFFSET = 4
BYTE260_VOCAB = 260

# The challenge's sentencepiece recipe (openai/parameter-golf data/download_hf_docs_and_tokenize.py).
SP_RECIPE: dict[str, Any] = {
    "model_type": "bpe",
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": PAD_ID,
    "bos_id": BOS_ID,
    "eos_id": EOS_ID,
    "unk_id": UNK_ID,
    "hard_vocab_limit": False,
}


def parse_variant(variant: str) -> int | None:
    """Vocabulary size of `sp<V>`, or None for `byte260`; raises on anything else."""
    if variant == "byte260":
        return None
    m = re.fullmatch(r"sp(\d+)", variant)
    if not m or not 0 < int(m.group(1)) <= 65536:
        raise ValueError(f"variant must be 'byte260' or 'sp<V>' with 0 < V <= 65536, got {variant!r}")
    return int(m.group(1))


def load_sentencepiece(path: str | Path) -> Any:
    """Load a sentencepiece model and check it fits the shard format (BOS = 1, vocab ≤ 65536)."""
    import sentencepiece as spm

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sentencepiece model not found")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    if sp.bos_id() != BOS_ID:
        raise ValueError(f"{path}: bos_id is {sp.bos_id()}, shards need BOS = {BOS_ID}")
    if sp.get_piece_size() > 65536:
        raise ValueError(f"{path}: vocab {sp.get_piece_size()} does not fit uint16 shards")
    return sp


def bytes_to_tokens(chunks: Sequence[bytes], with_bos: Sequence[bool] | None = None) -> np.ndarray:
    """byte260 tokens of byte strings: [BOS] + (byte + 4) per chunk, concatenated, uint16."""
    lens = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))  # (D,)
    flat = np.frombuffer(b"".join(chunks), dtype=np.uint8).astype(np.uint16) + BYTE_OFFSET  # (Σ lens,)
    starts = np.concatenate([np.zeros(1, np.int64), np.cumsum(lens)[:-1]])  # (D,)
    if with_bos is not None:
        starts = starts[np.asarray(with_bos, dtype=bool)]
    return np.insert(flat, starts, np.uint16(BOS_ID))


class Byte260Encoder:
    """UTF-8 bytes → id byte + 4; no normalisation (lone surrogates become '?', as the official exporter)."""

    vocab_size = BYTE260_VOCAB

    def encode_docs(self, texts: Sequence[str]) -> np.ndarray:
        return bytes_to_tokens([t.encode("utf-8", errors="replace") for t in texts])


class SentencePieceEncoder:
    """Batch-encodes with one sentencepiece thread (the process pool supplies the parallelism)."""

    def __init__(self, model_path: str | Path) -> None:
        self.sp = load_sentencepiece(model_path)
        self.vocab_size = int(self.sp.get_piece_size())

    def encode_docs(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty(0, dtype=np.uint16)
        ids = self.sp.encode_as_numpy(list(texts), add_bos=True, num_threads=1)  # list of int32 (1+len_i,)
        return np.concatenate(ids).astype(np.uint16)


def make_encoder(model_path: str | Path | None) -> Byte260Encoder | SentencePieceEncoder:
    return Byte260Encoder() if model_path is None else SentencePieceEncoder(model_path)


def train_sentencepiece(
    texts: Iterable[str], model_path: str | Path, *, vocab_size: int, num_threads: int = 1, **overrides: Any
) -> Path:
    """Train a BPE tokenizer with the challenge's recipe (SP_RECIPE) and write `model_path` atomically."""
    import sentencepiece as spm

    model = io.BytesIO()
    sentences = (t.replace("\x00", " ").strip() for t in texts)  # as the official trainer feeds it
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=(s for s in sentences if s),
            model_writer=model,
            vocab_size=vocab_size,
            num_threads=max(1, num_threads),
            minloglevel=2,
            **{**SP_RECIPE, **overrides},
        )
    except RuntimeError as exc:  # e.g. a vocab smaller than the required characters + 256 byte pieces
        raise ValueError(f"sentencepiece training failed (vocab_size={vocab_size}): {exc}") from exc
    atomic_write(model_path, lambda f: f.write(model.getvalue()))
    return Path(model_path)
