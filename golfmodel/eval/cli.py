"""`golf eval ARTIFACT --val GLOB ...`: score any artifact on any shards (wired into `golf` by `register`).

    golf eval artifacts/cache/pack/<key>/model.q2bn --val 'data/fineweb_val_*.bin' \
        --tokenizer data/fineweb_1024_bpe.model [--stride 64] [--nproc 8] [--json val.json]
    golf eval model.int8.ptz --val data/byte260/fineweb_val_000000.bin --variant byte260 --stride none

A thin wrapper: it runs the engine, `python -m golfmodel.eval` (one process) or
`torchrun --standalone --nproc_per_node=N -m golfmodel.eval` (N ranks, the windows split across
them), with the same arguments; defaults are the validate stage's. Exit codes are the engine's:
0 scored, 2 bad arguments or input, 4 byte-count audit failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from golfmodel.eval.__main__ import add_arguments, spec_from_args


def run(args: argparse.Namespace) -> int:
    """Carry out parsed `golf eval` arguments: launch the engine with `--nproc` processes."""
    from golfmodel.eval.run import eval_command

    if args.nproc < 1:
        print(f"error: --nproc must be >= 1, got {args.nproc}", file=sys.stderr)
        return 2
    try:
        spec = spec_from_args(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmd = eval_command(spec, nproc=args.nproc, json_out=args.json_out)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.nproc)  # cores shared by the ranks
    cmd += ["--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    return subprocess.call(cmd, env=env)  # Ctrl-C reaches torchrun and its ranks (same process group)


def register(sub: Any) -> argparse.ArgumentParser:
    """Add `eval` to the `golf` subcommands (`sub` = ArgumentParser.add_subparsers())."""
    p = sub.add_parser(
        "eval", help="score an artifact on validation shards", description=__doc__.splitlines()[0]
    )
    add_arguments(p)
    p.add_argument("--nproc", type=int, default=1, help="processes (ranks) to split the windows across")
    p.set_defaults(func=run)
    return p
