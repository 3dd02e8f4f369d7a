"""`golf export RUN DIR`: the challenge records folder of a pipeline run (wired into `golf` by `register`).

    golf export artifacts/runs/<run> records/2026-05-01_Q2Geode --author "A. Person" --github-id aperson
    golf export --script-only DIR          # just train_gpt.py (no configuration), e.g. to count code bytes
    python -m golfmodel.export.cli ...     # the same without the dispatcher

Exit codes: 0 written, 2 bad arguments or an incomplete run folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", type=Path, help="pipeline run folder (artifacts/runs/<run>)")
    p.add_argument("dest", type=Path, help="records folder to write (created)")
    p.add_argument("--author", default="golf", help="submission.json author")
    p.add_argument("--github-id", default="", help="submission.json github_id")
    p.add_argument("--name", default=None, help="submission.json name (default: from the model shape)")
    p.add_argument("--blurb", default=None, help="submission.json blurb (default: from the model)")
    p.add_argument("--date", default=None, help="submission.json date (default: now, UTC ISO 8601)")
    p.add_argument(
        "--style", choices=("xz", "plain"), default="xz", help="embedded library: xz-compressed or verbatim"
    )
    p.add_argument(
        "--script-only", action="store_true", help="write only train_gpt.py (no run configuration)"
    )


def run(args: argparse.Namespace) -> int:
    """Carry out parsed `golf export` arguments."""
    from golfmodel.export import SCRIPT_NAME
    from golfmodel.export.bundle import write_script
    from golfmodel.export.records import ExportError, export_run

    if args.script_only:
        dest = args.dest if args.run is None else args.run
        path = write_script(Path(dest) / SCRIPT_NAME, None, style=args.style)
        print(f"{path} ({path.stat().st_size:,} bytes)")
        return 0
    if args.run is None:
        print("error: give the run folder and the destination: golf export RUN DIR", file=sys.stderr)
        return 2
    try:
        out = export_run(
            args.run, args.dest, author=args.author, github_id=args.github_id, name=args.name,
            blurb=args.blurb, date=args.date, style=args.style,
        )  # fmt: skip
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import json

    sub = json.loads((out / "submission.json").read_text())
    print(f"val_bpb {sub['val_bpb']:.4f}, {sub['bytes_total']:,} bytes (code {sub['bytes_code']:,})")
    print(f"records folder: {out.resolve()}")
    return 0


def register(sub: Any) -> argparse.ArgumentParser:
    """Add `export` to the `golf` subcommands (`sub` = ArgumentParser.add_subparsers())."""
    p = sub.add_parser(
        "export", help="write a challenge records folder from a run", description=__doc__.splitlines()[0]
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="golf export", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(list(argv) if argv is not None else None))


if __name__ == "__main__":
    sys.exit(main())
