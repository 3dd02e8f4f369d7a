"""`golf data ...`: verify shards, tokenise documents, convert sp → byte260, count bigrams, download.

    golf data verify FILE... [--tokenizer MODEL | --variant byte260]
    golf data tokenise --docs JSONL --variant sp1024|byte260 [--tokenizer MODEL] [--num-val-docs N] --out DIR
    golf data to-byte260 --val GLOB --train GLOB --tokenizer MODEL --out DIR
    golf data bigram --shards GLOB --out DIR [--val GLOB] [--tokenizer MODEL | --variant byte260] [--k K]
    golf data download --out DIR [--mirror DIR | --endpoint URL] [--revision REV] [--train-shards N]

`register(sub)` adds the `data` command to the `golf` CLI's argparse subparsers; each
handler is `cmd_<name>(args) -> int` (0 done, 1 failed; usage errors exit 2 via argparse).
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from golfmodel.data.shards import ShardError, count_docs, read_shard


def _table_and_decoder(args: argparse.Namespace) -> tuple[Any, Any, int | None]:
    """(ByteTable, decoder spec, vocab size) from --tokenizer / --variant, or (None, None, None)."""
    from golfmodel.eval.bytes import ByteTable

    if getattr(args, "tokenizer", None) is not None:
        table = ByteTable.from_sentencepiece(args.tokenizer)
        return table, Path(args.tokenizer), table.vocab_size
    if getattr(args, "variant", None) == "byte260":
        return ByteTable.byte260(), "byte260", 260
    return None, None, None


def _add_table_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--tokenizer", type=Path, help="sentencepiece model of the shards (byte counts, vocab check)"
    )
    g.add_argument("--variant", choices=["byte260"], help="the shards are byte260")


def _expand(patterns: Sequence[str]) -> list[Path]:
    """Paths of each glob pattern (sorted), or the literal path; a pattern that matches nothing raises."""
    out: list[Path] = []
    for pat in patterns:
        if glob.has_magic(pat):
            hits = sorted(glob.glob(pat))
            if not hits:
                raise FileNotFoundError(f"no files match {pat}")
            out += [Path(h) for h in hits]
        else:
            out.append(Path(pat))
    return out


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add `data` and its subcommands to a subparsers object; each handler is stored as `func`."""
    p = sub.add_parser("data", help="data plane: verify, tokenise, bigram")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    v = dsub.add_parser("verify", help="check shards; print token, document and byte counts")
    v.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _add_table_args(v)
    v.set_defaults(func=cmd_verify)

    t = dsub.add_parser("tokenise", help="documents (JSONL, Parquet, hf:NAME[:CONFIG]) → shards")
    t.add_argument("--docs", required=True, help="document source: .jsonl, .parquet or hf:PATH[:CONFIG]")
    t.add_argument("--variant", required=True, help="sp<V> (e.g. sp1024) or byte260")
    t.add_argument("--tokenizer", type=Path, help="sentencepiece model for sp<V>; omitted: train one")
    t.add_argument("--num-val-docs", type=int, default=50_000, help="first N documents are validation")
    t.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    t.add_argument("--shard-tokens", type=int, default=10**8, help="tokens per shard file")
    t.add_argument("--max-docs", type=int, default=None, help="stop after N documents")
    t.add_argument("--text-field", default="text", help="JSON field / Parquet column holding the text")
    t.add_argument("--out", type=Path, required=True, help="output folder for fineweb_{val,train}_*.bin")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_tokenise)

    c = dsub.add_parser("to-byte260", help="re-tokenise sp shards as byte260 (decode each document)")
    c.add_argument("--val", nargs="+", required=True, help="validation shards (globs)")
    c.add_argument("--train", nargs="+", required=True, help="training shards (globs)")
    c.add_argument("--tokenizer", type=Path, required=True, help="the shards' sentencepiece model")
    c.add_argument("--workers", type=int, default=None)
    c.add_argument("--shard-tokens", type=int, default=10**8)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_to_byte260)

    b = dsub.add_parser("bigram", help="count bigrams of training shards; score them on validation shards")
    b.add_argument("--shards", nargs="+", required=True, help="training shards (globs)")
    b.add_argument("--out", type=Path, required=True, help="folder for counts.npz and logprob.npy")
    b.add_argument("--val", nargs="+", help="validation shards (globs): print bigram_bpb")
    _add_table_args(b)
    b.add_argument("--vocab", type=int, help="vocabulary size (default: the tokenizer's, 260 for byte260)")
    b.add_argument("--k", type=float, default=None, help="add-k smoothing constant (default 0.1)")
    b.set_defaults(func=cmd_bigram)

    d = dsub.add_parser("download", help="fetch manifest, shards and tokenizer from the hub or a mirror")
    d.add_argument("--out", type=Path, required=True, help="destination (laid out like the repository root)")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--mirror", type=Path, help="local folder laid out like the repository root")
    src.add_argument("--endpoint", help="hub URL (default: huggingface_hub's)")
    d.add_argument("--repo-id", default="willdepueoai/parameter-golf")
    d.add_argument("--revision", default="main", help="branch, tag or commit SHA")
    d.add_argument("--variant", default="sp1024")
    d.add_argument("--train-shards", type=int, default=1)
    d.add_argument("--val-shards", type=int, default=None)
    d.add_argument("--docs", action="store_true", help="also fetch docs_selected.jsonl")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_download)
    return p


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def cmd_verify(args: argparse.Namespace) -> int:
    """One line per file: `PATH tokens=N docs=D [bytes=B decoded_bytes=E]`; 1 if any file is bad."""
    from golfmodel.eval.bytes import decoded_bytes

    table, decoder, vocab = _table_and_decoder(args)
    rc = 0
    for path in args.files:
        try:
            tokens = read_shard(path, vocab_size=vocab)
        except ShardError as exc:
            rc = _fail(str(exc))
            continue
        line = f"{path} tokens={tokens.size} docs={count_docs(tokens)}"
        if table is not None:
            n_bytes = table.count_span(tokens) if tokens.size >= 2 else 0
            line += f" bytes={n_bytes} decoded_bytes={decoded_bytes(tokens, decoder)}"
        print(line)
    return rc


def cmd_tokenise(args: argparse.Namespace) -> int:
    """Tokenise a document source into shards and print what was written."""
    from golfmodel.data.tokenise import DocumentError, TokeniseConfig, open_source, tokenise

    try:
        cfg = TokeniseConfig(
            variant=args.variant,
            tokenizer_path=args.tokenizer,
            num_val_docs=args.num_val_docs,
            shard_tokens=args.shard_tokens,
            workers=args.workers,
            max_docs=args.max_docs,
            progress=not args.quiet,
        )
        res = tokenise(open_source(args.docs, text_field=args.text_field), args.out, cfg)
    except (DocumentError, ShardError, ValueError, OSError) as exc:
        return _fail(str(exc))
    _print_result(res)
    return 0


def _print_result(res: Any) -> None:
    print(f"out={res.out_dir} variant={res.variant} vocab={res.vocab_size} tokenizer={res.tokenizer_path}")
    print(f"val: files={len(res.val_paths)} docs={res.docs_val} tokens={res.tokens_val}")
    print(f"train: files={len(res.train_paths)} docs={res.docs_train} tokens={res.tokens_train}")
    print(
        f"throughput: {res.docs_mb_per_s:.2f} MB/s of text, {res.tokens_per_s:,.0f} tokens/s "
        f"({res.seconds:.1f} s, {res.workers} workers)"
    )


def cmd_to_byte260(args: argparse.Namespace) -> int:
    """Convert sp shards to byte260 shards and print what was written."""
    from golfmodel.data.tokenise import convert_sp_to_byte260

    try:
        res = convert_sp_to_byte260(
            _expand(args.val),
            _expand(args.train),
            args.tokenizer,
            args.out,
            shard_tokens=args.shard_tokens,
            workers=args.workers,
            progress=not args.quiet,
        )
    except (ShardError, ValueError, OSError) as exc:
        return _fail(str(exc))
    _print_result(res)
    return 0


def cmd_bigram(args: argparse.Namespace) -> int:
    """Count bigrams into --out; with --val print `bigram_bpb=X`."""
    from golfmodel.data.bigram import DEFAULT_K, bigram_bpb, build_bigram, save_bigram

    table, _, vocab = _table_and_decoder(args)
    vocab = args.vocab or vocab
    if vocab is None:
        return _fail("give --vocab, --tokenizer or --variant byte260")
    if args.val and table is None:
        return _fail("bigram_bpb needs the byte counts: give --tokenizer or --variant byte260")
    try:
        bigram = build_bigram(_expand(args.shards), vocab, k=DEFAULT_K if args.k is None else args.k)
        paths = save_bigram(bigram, args.out)
        print(f"pairs={bigram.n_pairs} vocab={vocab} k={bigram.k} wrote={','.join(str(p) for p in paths)}")
        if args.val:
            import numpy as np

            val = np.concatenate([np.asarray(read_shard(p, vocab_size=vocab)) for p in _expand(args.val)])
            print(f"bigram_bpb={bigram_bpb(bigram, val, table):.6f}")
    except (ShardError, ValueError, OSError) as exc:
        return _fail(str(exc))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch the data and print the files and the resolved revision."""
    from golfmodel.data.hub import HubConfig, HubError, download

    try:
        cfg = HubConfig(
            repo_id=args.repo_id,
            revision=args.revision,
            variant=args.variant,
            train_shards=args.train_shards,
            val_shards=args.val_shards,
            mirror=args.mirror,
            endpoint=args.endpoint,
            include_docs=args.docs,
            progress=not args.quiet,
        )
        res = download(cfg, args.out)
    except (HubError, ShardError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(f"source={res.source} revision={res.revision}")
    for p in (
        *res.val_paths,
        *res.train_paths,
        res.tokenizer_path,
        *([res.docs_path] if res.docs_path else []),
    ):
        print(p)
    print(f"verified={len(res.verified)}/{len(res.sha256)} files against published sha256")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: `python -m golfmodel.data.cli data verify ...`."""
    parser = argparse.ArgumentParser(prog="golf")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
