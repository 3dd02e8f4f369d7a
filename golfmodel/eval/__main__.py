"""Score any artifact on any shards; the only place the scorer reads the environment (RANK, WORLD_SIZE).

    python -m golfmodel.eval ARTIFACT --val GLOB [GLOB ...] [--tokenizer MODEL | --variant byte260]
        [--seq-len 1024] [--stride 64|none] [--rule all|challenge] [--batch-size 16] [--max-tokens N]
        [--device auto|cpu|cuda] [--dtype auto|bf16|fp32] [--no-audit] [--json FILE]
    torchrun --standalone --nproc_per_node=8 -m golfmodel.eval ARTIFACT --val ...

Defaults are the validate stage's (rule `all`: every target scored, sliding stride 64 over
1,024-token windows). Rank 0 prints one summary line and writes `--json` atomically. Exit codes:
0 scored, 2 bad arguments or input (the message names the file or field), 4 byte-count audit failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _stride(value: str) -> int | None:
    return None if value.lower() in ("none", "0") else int(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The scoring arguments (shared by `golf eval`, which adds --nproc)."""
    p.add_argument("artifact", help="Q2BN file (model.q2bn) or the gpt-int8 arm's int8+zlib file")
    p.add_argument("--val", nargs="+", required=True, help="validation shard paths or globs, in order")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", help="sentencepiece .model of the shards (byte counts, audit)")
    tok.add_argument("--variant", choices=["byte260"], help="byte260 shards (raw bytes, no tokenizer file)")
    p.add_argument("--seq-len", type=int, default=1024, help="window length (default 1024)")
    p.add_argument("--stride", type=_stride, default=64, help="sliding stride, or none (default 64)")
    p.add_argument("--rule", choices=["all", "challenge"], default="all", help="targets scored (default all)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward (default 16)")
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first N tokens")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 on CUDA")
    p.add_argument("--no-audit", action="store_true", help="skip the decoded-text byte audit")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads per process (0 = torch's)")
    p.add_argument("--json", dest="json_out", help="write the score record here (rank 0, atomic)")


def spec_from_args(args: argparse.Namespace) -> Any:
    """The `ArtifactEval` of parsed arguments; ValueError/FileNotFoundError name the bad field."""
    from golfmodel.eval.run import ArtifactEval

    if args.tokenizer is None and args.variant is None:
        raise ValueError("give --tokenizer MODEL (sentencepiece shards) or --variant byte260")
    return ArtifactEval(
        artifact=args.artifact, val=tuple(args.val), tokenizer=args.tokenizer or "byte260",
        seq_len=args.seq_len, stride=args.stride, rule=args.rule, batch_size=args.batch_size,
        max_tokens=args.max_tokens, device=args.device, dtype=args.dtype, audit=not args.no_audit,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m golfmodel.eval", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    import torch
    import torch.distributed as dist

    from golfmodel.atomic import atomic_write_json
    from golfmodel.eval.bpb import AuditError
    from golfmodel.eval.run import resolve_device, score_artifact
    from golfmodel.procgroup import end_process_group

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.threads:
        torch.set_num_threads(args.threads)
    clean = False
    try:
        spec = spec_from_args(args)
        if world > 1:
            device = resolve_device(spec.device, local_rank)
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        record = score_artifact(spec, rank=rank, world_size=world, local_rank=local_rank)
        clean = True
    except AuditError as e:
        print(f"error (rank {rank}): {e}", file=sys.stderr, flush=True)
        return 4
    except (ValueError, OSError) as e:  # bad input: unreadable/corrupt file, bad shard, bad field
        print(f"error (rank {rank}): {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        end_process_group(clean=clean)
    if rank == 0:
        if args.json_out:
            atomic_write_json(args.json_out, record)
        stride = "" if record["stride"] is None else f" stride {record['stride']}"
        print(
            f"val_bpb:{record['bpb']:.8f} val_loss:{record['loss']:.8f} tokens:{record['tokens']} "
            f"bytes:{record['bytes']} ({record['mode']}{stride}, seq_len {record['seq_len']}, rule "
            f"{record['rule']}, {record['nproc']} process(es), {record['autocast']}) "
            f"eval_time:{record['seconds']:.2f}s",
            flush=True,
        )
        if args.json_out is None:
            print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
