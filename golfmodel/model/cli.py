"""`golf model plan|probe|ratio`: budget-solver shapes, the q2-mixed sensitivity probe, trained ratios.

`register(sub)` adds `model ...` to the `golf` CLI's argparse subparsers; standalone:

    python -m golfmodel.model.cli model plan --arch geode --quant int4 --budget 16000000 --vocab 1024
    python -m golfmodel.model.cli model plan --arm gpt-int8 --budget 100000 --vocab 260 --json
    python -m golfmodel.model.cli model probe --train fineweb_train_000000.bin --vocab 1024 \
        --budget 120000 --out sensitivity.json          # the probe at the q2 shape of the budget
    python -m golfmodel.model.cli model plan --quant q2-mixed --sensitivity sensitivity.json \
        --budget 120000 --vocab 1024
    python -m golfmodel.model.cli model ratio --checkpoint geode/final.pt --checkpoint gpt/final.pt

`--arm q2-geode|gpt-int8` are aliases of `--arch geode --quant q2` / `--arch gpt --quant int8`.
With `--json` the only stdout is one line of compact JSON (`params`, `artifact_bytes` (the
predicted TRAINED size), `packed_init_bytes`, `trained_ratio`, `budget_bytes`, `fill`, `config`, ...).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from golfmodel.model.budget import DEFAULT_MARGIN_FRAC, BudgetError, Plan, solve
from golfmodel.model.config import ARMS
from golfmodel.quant.plan import ARCHS, ARM_ALIASES, plan_names


def _shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=ARCHS, default=None, help="architecture (default geode)")
    p.add_argument("--quant", default=None, help=f"quantisation plan: {', '.join(plan_names())}")
    p.add_argument("--arm", choices=tuple(ARM_ALIASES), default=None, help="alias of an arch + plan")
    p.add_argument("--budget", type=int, required=True, help="bytes for the artifact plus the shipped code")
    p.add_argument(
        "--vocab", type=int, required=True, help="vocabulary size (1024 for sp1024, 260 for byte260)"
    )
    p.add_argument(
        "--groups", "--depth", dest="groups", type=int, default=None, help="fix the depth (groups/layers)"
    )
    p.add_argument("--pattern", default="GCCC", help="block letters of one Geode group")
    p.add_argument("--bigram-prior", action="store_true", help="count a (V, V) int8 bigram log-prior")
    p.add_argument("--code-bytes", type=int, default=0, help="bytes of shipped code inside the budget")
    p.add_argument("--margin-frac", type=float, default=DEFAULT_MARGIN_FRAC, help="budget fraction kept free")
    p.add_argument(
        "--ratios", default=None, help="trained_ratio.json to size with (default: the shipped one)"
    )


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add `model plan|probe|ratio` to a subparsers object; each handler is stored as `func`."""
    model = sub.add_parser("model", help="model plans (budget solver, q2-mixed probe, trained ratios)")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    p = model_sub.add_parser("plan", help="the largest model of an arch x plan that fits a byte budget")
    _shape_args(p)
    p.add_argument("--max-depth", type=int, default=None, help="deepest depth searched (default 4 / 9)")
    p.add_argument("--head-dim", type=int, default=64, help="target head width")
    p.add_argument(
        "--mlp-mult", type=float, default=None, help="base MLP ratio (default 8/3 SwiGLU, 2 relu²)"
    )
    p.add_argument("--no-mlp-fill", action="store_true", help="keep the base MLP ratio")
    p.add_argument("--no-confirm", action="store_true", help="skip the real pack of the initial weights")
    p.add_argument("--sensitivity", default=None, help="q2-mixed: the probe's table (golf model probe --out)")
    p.add_argument("--json", action="store_true", help="print one line of JSON instead of the table")
    p.set_defaults(func=cmd_plan)

    q = model_sub.add_parser("probe", help="q2-mixed sensitivity probe on training tokens (never validation)")
    _shape_args(q)
    q.add_argument("--train", action="append", required=True, help="a training shard (repeatable)")
    q.add_argument("--steps", type=int, default=60, help="AdamW steps of the fp32 twin")
    q.add_argument("--seq-len", type=int, default=128)
    q.add_argument("--candidates", default="q2,fp16", help="comma-separated spec labels")
    q.add_argument("--out", required=True, help="where the table (JSON) goes")
    q.set_defaults(func=cmd_probe)

    r = model_sub.add_parser("ratio", help="measure trained compression ratios from final.pt checkpoints")
    r.add_argument("--checkpoint", action="append", required=True, help="a trainer final.pt (repeatable)")
    r.add_argument("--extra", default="ternary,int4,int6", help="block specs also measured on q2bn models")
    r.add_argument("--out", default=None, help="default: golfmodel/model/trained_ratio.json")
    r.add_argument(
        "--int8-keep-float", type=int, default=None,
        help="int8zlib checkpoints: tensors of <= N elements stay float (the bench scales 65,536 by the budget)",
    )  # fmt: skip
    r.add_argument("--regime", default="cpu", help="name of the regime these checkpoints measure")
    r.add_argument(
        "--up-to-budget", type=int, default=None, help="largest budget the regime covers (none: all)"
    )
    r.add_argument(
        "--anchor-baseline-bytes", type=int, default=None,
        help="also write regime 'h100' (unbounded): int8zlib int8 rows at the ratio where the naive baseline "
        "packs to this many bytes (the challenge log: 15815847); other kinds as measured",
    )  # fmt: skip
    r.set_defaults(func=cmd_ratio)
    return p


def arch_and_plan(args: argparse.Namespace) -> tuple[str, str | None]:
    """(arm for the solver, plan name) from --arch/--quant/--arm; --arm with a clashing --quant is an error."""
    if args.arm is not None:
        if args.arch is not None or (args.quant is not None and args.quant != ARM_ALIASES[args.arm][1]):
            raise ValueError(f"--arm {args.arm} is {ARM_ALIASES[args.arm]}: give --arm or --arch/--quant")
        return args.arm, None
    return args.arch or "geode", args.quant


def format_plan(plan: Plan) -> str:
    """The human-readable plan: shape, parameters and the byte breakdown."""
    c = plan.config
    shape = (
        f"{c.depth} group(s) x {c.pattern} = {c.n_blocks} blocks"
        if c.arch == "geode"
        else f"{c.depth} layer(s)"
    )
    packed = (
        f"{plan.packed_init_bytes:,} (real packer, random init)"
        if plan.packed_init_bytes is not None
        else f"— ({plan.pack_error or 'not packed: --no-confirm'})"
    )
    total = plan.artifact_bytes + plan.code_bytes
    lines = [
        f"arch {c.arch}, plan {c.quant_plan.name}, vocab {c.vocab_size}, budget {plan.budget_bytes:,} bytes",
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
        f"{'artifact':<16}{plan.artifact_bytes:>16,}  (predicted trained size: ratio {plan.trained_ratio:.4f})",
        f"{'init packed':<16}{packed:>16}",
        f"{'code':<16}{plan.code_bytes:>16,}",
        f"{'total':<16}{total:>16,}  of {plan.budget_bytes:,}: fill {100 * plan.fill:.2f}% "
        f"(margin {100 * plan.margin_frac:.2f}%)",
        f"ratios: {plan.ratio_source}",
    ]
    return "\n".join(lines)


def _err(e: Exception) -> int:
    print(f"golf model: error: {e}", file=sys.stderr)
    return 1


def cmd_plan(args: argparse.Namespace) -> int:
    """Solve and print; 1 with a message on stderr when nothing fits."""
    from golfmodel.model.trained_ratio import load_ratios

    try:
        arm, plan_name = arch_and_plan(args)
        plan: Any = plan_name
        alloc = None
        if plan_name == "q2-mixed":
            if not args.sensitivity:
                raise ValueError(
                    "--quant q2-mixed needs --sensitivity FILE (make one with `golf model probe`)"
                )
            from golfmodel.model.allocate import allocate
            from golfmodel.model.sensitivity import SensitivityTable

            alloc = allocate(
                SensitivityTable.load(args.sensitivity), ratios=load_ratios(args.ratios, args.budget)
            )
            plan = alloc.plan
        result = solve(
            arm, args.vocab, args.budget, plan=plan, groups=args.groups, pattern=args.pattern,
            head_dim=args.head_dim, bigram_prior=args.bigram_prior, code_bytes=args.code_bytes,
            mlp_mult=args.mlp_mult, mlp_fill=not args.no_mlp_fill, max_depth=args.max_depth,
            margin_frac=args.margin_frac, ratios=args.ratios, confirm=not args.no_confirm,
        )  # fmt: skip
    except (BudgetError, ValueError) as e:
        return _err(e)
    if args.json:
        out = result.to_dict()
        if alloc is not None:
            out["allocation"] = alloc.to_dict()
        print(json.dumps(out, separators=(",", ":"), sort_keys=True))
    else:
        if alloc is not None:
            from golfmodel.model.allocate import format_allocation

            print(format_allocation(alloc) + "\n")
        print(format_plan(result))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Run the sensitivity probe at the budget's q2 shape (the solver's), save and print the table."""
    from golfmodel.model.sensitivity import (
        ProbeConfig,
        format_table,
        load_train_tokens,
        probe_tokens_needed,
        run_probe,
    )

    try:
        arm, _ = arch_and_plan(args)
        probe = ProbeConfig(
            steps=args.steps, seq_len=args.seq_len, candidates=tuple(args.candidates.split(","))
        )
        shape = solve(
            arm, args.vocab, args.budget, groups=args.groups, pattern=args.pattern,
            bigram_prior=args.bigram_prior, code_bytes=args.code_bytes, margin_frac=args.margin_frac,
            ratios=args.ratios, confirm=False,
        )  # fmt: skip
        tokens = load_train_tokens(args.train, args.vocab, probe_tokens_needed(probe))
        table = run_probe(shape.config, tokens, probe)
    except (BudgetError, ValueError) as e:
        return _err(e)
    table.save(args.out)
    print(format_table(table))
    print(f"saved: {args.out}")
    return 0


def cmd_ratio(args: argparse.Namespace) -> int:
    """Measure trained ratios from checkpoints and write trained_ratio.json (with the command as provenance)."""
    import hashlib
    from pathlib import Path

    from golfmodel.model.trained_ratio import DEFAULT_PATH, load_trained, measure_ratios, write_ratios
    from golfmodel.quant.spec import QuantSpec

    rows = []
    try:
        extra = tuple(QuantSpec.parse(s) for s in args.extra.split(",") if s)
        for ck in args.checkpoint:
            model = load_trained(ck)
            icfg = None
            if args.int8_keep_float is not None:
                from golfmodel.q2bn.int8zlib import Int8ZlibConfig

                icfg = Int8ZlibConfig(keep_float_max_numel=args.int8_keep_float)
            export, ratios, container = measure_ratios(model, extra=extra, int8_config=icfg)
            c = model.config
            sha = hashlib.sha256(Path(ck).read_bytes()).hexdigest()[:12]
            what = f"{c.arch}/{c.quant_plan.name} d{c.d_model}x{c.depth} V{c.vocab_size} ({Path(ck).name} sha256 {sha})"
            rows.append((export, ratios, container, what))
            print(
                f"{export}: {what}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in ratios.items())
                + f"; container {container:.4f}"
            )
    except ValueError as e:
        return _err(e)
    out = args.out or DEFAULT_PATH
    command = "golf model ratio " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    write_ratios(out, rows, command, regime=args.regime, up_to_budget=args.up_to_budget)
    if args.anchor_baseline_bytes:
        from golfmodel.model.trained_ratio import TrainedRatios, anchor_int8_ratio

        ratios = {e: dict(r) for e, r, _, _ in rows}
        base = TrainedRatios(ratios, {e: c for e, _, c, _ in rows})
        r8 = anchor_int8_ratio(args.anchor_baseline_bytes, base)
        ratios.setdefault("int8zlib", {})["int8"] = r8
        if "q2bn" in ratios:  # no full-scale q2bn run exists: its int8 rows no better than the baseline's
            ratios["q2bn"]["int8"] = max(ratios["q2bn"].get("int8", 0.0), r8)
        anchored = [(e, ratios[e], c, f"{w}; int8 rows anchored at {r8:.4f}: naive baseline = "
                     f"{args.anchor_baseline_bytes} B (anchors/naive_baseline_train.log)") for e, _, c, w in rows]  # fmt: skip
        write_ratios(out, anchored, command, regime="h100", up_to_budget=None)
        print(f"h100 regime: int8 rows at {r8:.4f}")
    print(f"written: {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="golfmodel.model.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


__all__ = ["ARMS", "arch_and_plan", "format_plan", "main", "register"]

if __name__ == "__main__":
    raise SystemExit(main())
