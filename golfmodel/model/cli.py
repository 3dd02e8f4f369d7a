"""`golf model plan`: the budget solver's shape for an arm, its parameter count and packed byte breakdown.

`register(sub)` adds `model plan` to the `golf` CLI's argparse subparsers; standalone:

    python -m golfmodel.model.cli model plan --arm q2-geode --budget 16000000 --vocab 1024
    python -m golfmodel.model.cli model plan --arm gpt-int8 --budget 100000 --vocab 260 --json

With `--json` the only stdout is one line of compact JSON (`params`, `artifact_bytes`,
`budget_bytes`, `fill`, `config`, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from golfmodel.model.budget import BudgetError, Plan, solve
from golfmodel.model.config import ARMS


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add `model plan ...` to a subparsers object; the handler is stored as `func`."""
    model = sub.add_parser("model", help="model plans (budget solver)")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    p = model_sub.add_parser("plan", help="the largest model of an arm that fits a byte budget")
    p.add_argument("--arm", choices=ARMS, required=True)
    p.add_argument("--budget", type=int, required=True, help="bytes for the artifact plus the shipped code")
    p.add_argument(
        "--vocab", type=int, required=True, help="vocabulary size (1024 for sp1024, 260 for byte260)"
    )
    p.add_argument(
        "--groups", "--depth", dest="groups", type=int, default=None, help="fix the depth (groups/layers)"
    )
    p.add_argument("--max-depth", type=int, default=None, help="deepest depth searched (default 4 / 9)")
    p.add_argument("--pattern", default="GCCC", help="block letters of one Geode group (q2-geode)")
    p.add_argument("--head-dim", type=int, default=64, help="target head width")
    p.add_argument(
        "--mlp-mult", type=float, default=None, help="base MLP ratio (default 8/3 SwiGLU, 2 relu²)"
    )
    p.add_argument(
        "--no-mlp-fill", action="store_true", help="keep the base MLP ratio (no fill of leftover bytes)"
    )
    p.add_argument("--bigram-prior", action="store_true", help="count a (V, V) int8 bigram log-prior")
    p.add_argument("--code-bytes", type=int, default=0, help="bytes of shipped code inside the budget")
    p.add_argument("--no-confirm", action="store_true", help="skip the real packer (estimate only)")
    p.add_argument("--json", action="store_true", help="print one line of JSON instead of the table")
    p.set_defaults(func=cmd_plan)
    return p


def format_plan(plan: Plan) -> str:
    """The human-readable plan: shape, parameters and the byte breakdown."""
    c = plan.config
    shape = (
        f"{c.depth} group(s) x {c.pattern} = {c.n_blocks} blocks"
        if c.arm == "q2-geode"
        else f"{c.depth} layer(s)"
    )
    status = "confirmed with the real packer" if plan.confirmed else "ESTIMATE (not packed)"
    total = plan.artifact_bytes + plan.code_bytes
    lines = [
        f"arm {c.arm}, vocab {c.vocab_size}, budget {plan.budget_bytes:,} bytes",
        f"shape: {shape}, d_model {c.d_model}, {c.n_heads} heads / {c.n_kv_heads} KV "
        f"(head_dim {c.head_dim}), MLP hidden {c.mlp_hidden} (x{c.mlp_mult:.4g})"
        + (", bigram prior" if c.bigram_prior else ""),
        f"params: {plan.params:,}",
        "",
        f"{'storage kind':<16}{'payload bytes':>16}",
    ]
    lines += [f"{kind:<16}{n:>16,}" for kind, n in plan.breakdown.items()]
    lines += [
        f"{'payload total':<16}{sum(plan.breakdown.values()):>16,}",
        "",
        f"{'artifact':<16}{plan.artifact_bytes:>16,}  (compressed; {status})",
        f"{'code':<16}{plan.code_bytes:>16,}",
        f"{'total':<16}{total:>16,}  of {plan.budget_bytes:,}: fill {100 * plan.fill:.2f}%",
    ]
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    """Solve and print; 1 with a message on stderr when nothing fits."""
    try:
        plan = solve(
            args.arm,
            args.vocab,
            args.budget,
            groups=args.groups,
            pattern=args.pattern,
            head_dim=args.head_dim,
            bigram_prior=args.bigram_prior,
            code_bytes=args.code_bytes,
            mlp_mult=args.mlp_mult,
            mlp_fill=not args.no_mlp_fill,
            max_depth=args.max_depth,
            confirm=not args.no_confirm,
        )
    except (BudgetError, ValueError) as e:
        print(f"golf model plan: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(plan.to_dict(), separators=(",", ":"), sort_keys=True))
    else:
        print(format_plan(plan))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="golfmodel.model.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
