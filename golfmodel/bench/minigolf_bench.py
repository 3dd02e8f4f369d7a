"""`golf bench minigolf`: the CPU bench of the Q² claim (the CLI of `golfmodel.bench.minigolf`).

    golf bench minigolf [--data ROOT] [--budget 120000] [--int8-tokens N | --match time --seconds S]
                        [--seeds K] [--workers 2] [--ablate NAME[,NAME]] [--out DIR] [--json FILE]
                        [--arms LIST] [--budgets B1,B2] [--lr-sweep coord] [--bigram-prior off|on|both]
    golf bench minigolf --engine prefect [--deployment golf-bench-arm/NAME] ...   (units as Prefect runs)
    python -m golfmodel.bench.minigolf_bench ...      (the same, without the `golf` dispatcher; local engine)

The default is the multi-arm study (`golfmodel.bench.study`, issue 12); `--ablate`, `--calibrate`
and `--match time` run the 3-arm bench (`golfmodel.bench.minigolf`).

The data default to the sample mirror named by `--data ROOT` or `GOLF_DATA__MIRROR` (read here,
at the entry point): its sp1024 train/val shards, decoded to byte260 for `--variant byte260`.
`--train GLOB` / `--val GLOB` take any shards in the official format instead. Results are cached
per arm in `--out` (default artifacts/bench/minigolf), so an interrupted bench resumes where it
stopped. `--calibrate S` trains each main arm for S seconds side by side and prints the
tokens/s behind the default `--int8-tokens`. Exit codes: 0 done, 1 an arm failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from golfmodel.bench import minigolf as mg
from golfmodel.bench.minigolf_arm import ArmFailed, EvalSpec
from golfmodel.bench.study import Execute, run_study
from golfmodel.bench.study_arms import DEFAULT_ARMS
from golfmodel.bench.study_lr import DEFAULT_ADAM_LRS, DEFAULT_HOLDOUT_TOKENS, DEFAULT_MUON_LRS
from golfmodel.bench.study_plan import STUDY_MIN_FILL, StudyConfig

DEFAULT_OUT = Path("artifacts") / "bench" / "minigolf"


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="golf bench minigolf", description=__doc__.splitlines()[0])
    d = p.add_argument_group("data")
    d.add_argument(
        "--data",
        metavar="ROOT",
        help="data mirror root (holds datasets/manifest.json); default $GOLF_DATA__MIRROR",
    )
    d.add_argument(
        "--train",
        metavar="GLOB",
        help="training shards (official format); default: the mirror's train shards",
    )
    d.add_argument(
        "--val", metavar="GLOB", help="validation shards (official format); default: the mirror's val shards"
    )
    d.add_argument(
        "--tokenizer", metavar="MODEL", help="sentencepiece model of sp shards; default: the mirror's"
    )
    d.add_argument(
        "--variant", choices=("byte260", "sp1024"), default="byte260", help="tokens the arms train on"
    )
    d.add_argument(
        "--input-variant", choices=("auto", "sp1024", "byte260"), default="auto",
        help="variant of the given shards (auto: from their fineweb10B_<variant> folder)",
    )  # fmt: skip
    b = p.add_argument_group("budget and matching")
    b.add_argument(
        "--budget",
        type=int,
        default=mg.DEFAULT_BUDGET_BYTES,
        metavar="BYTES",
        help="byte budget of both arms",
    )
    b.add_argument(
        "--match", choices=("gpu-tokens", "time"), default="gpu-tokens", help="how arms are matched"
    )
    b.add_argument(
        "--int8-tokens",
        type=int,
        default=mg.DEFAULT_INT8_TOKENS,
        metavar="N",
        help="gpt-int8 tokens (gpu-tokens)",
    )
    b.add_argument(
        "--seconds", type=float, default=600.0, metavar="S", help="training wall-clock per arm (time)"
    )
    b.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds per arm (K >= 2 gives p-values)")
    b.add_argument("--first-seed", type=int, default=1337, help="seed of the first run")
    b.add_argument("--workers", type=int, default=2, help="arms trained side by side, one thread each")
    b.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default="cpu",
        help="trainer device of every unit (cuda/auto for GPU work-pool units; the CPU bench is cpu)",
    )  # fmt: skip
    b.add_argument("--seq-len", type=int, default=256, help="training sequence length")
    b.add_argument("--batch-tokens", type=int, default=8192, help="tokens per optimiser step")
    b.add_argument("--micro-batch", type=int, default=32, help="sequences per forward pass")
    b.add_argument(
        "--int8-keep-float", type=int, default=None, metavar="N",
        help="gpt-int8 keeps tensors of <= N elements float (default: the baseline's 65,536 scaled by budget/16e6)",
    )  # fmt: skip
    b.add_argument(
        "--min-fill", type=float, default=None,
        help=f"minimum budget fill of the solver's shapes (default {STUDY_MIN_FILL} study, {mg.MIN_FILL} 3-arm)",
    )  # fmt: skip
    e = p.add_argument_group("scoring")
    e.add_argument("--eval-seq-len", type=int, default=256, help="scoring window")
    e.add_argument(
        "--stride", type=int, default=None, help="sliding-window stride (default: non-overlapping windows)"
    )
    e.add_argument("--rule", choices=("all", "challenge"), default="all", help="targets scored (SPEC §3)")
    e.add_argument(
        "--eval-tokens", type=int, default=None, metavar="N", help="score only the first N val tokens"
    )
    e.add_argument("--val-points", type=int, default=10, help="periodic validation points per run (the plot)")
    e.add_argument("--val-tokens", type=int, default=32_768, help="tokens of the periodic validation slice")
    a = p.add_argument_group("ablations")
    a.add_argument(
        "--ablate", action="append", default=[], metavar="NAME[,NAME]",
        help=f"ablations of q2-geode: {', '.join(mg.ABLATION_NAMES)} (qat-start=F, tau-std=M), all, or "
        "trainer overrides SECTION.FIELD=VALUE[+...] with SECTION model|qat|averaging|optim|schedule "
        "(e.g. optim.muon_lr=0.04; qat.enabled=false gives the twin's shadow score as pre-quant "
        "and its 2-bit post-training quantisation as final)",
    )  # fmt: skip
    a.add_argument(
        "--ablate-scale", type=float, default=0.5, help="budget of ablation runs relative to the main arms"
    )
    a.add_argument(
        "--recalibrate", choices=("off", "mse", "act"), default="mse",
        help="τ-recalibration stage on q2-geode (the pipeline's quant.recalibrate; default mse)",
    )  # fmt: skip
    a.add_argument(
        "--sub-norm", choices=("on", "off"), default="on",
        help="SubLN (RMSNorm before each output projection) in every geode arm's blocks (default on: the q2 "
        "default since the study; the gpt-int8 baseline never has it)",
    )  # fmt: skip
    s = p.add_argument_group("study (issue 12; used unless --ablate, --calibrate or --match time)")
    s.add_argument(
        "--arms", default=",".join(DEFAULT_ARMS), metavar="LIST",
        help="arms: plan names on geode (q2, q2-mixed, q2-learned, ternary, int4, int6), int8 (gpt-int8), "
        "fp32-twin, <arm>-fp32 (twin of that arm's shape), <arm>+bigram, <arm>~<lever> (an ablation row: "
        "an --ablate name such as no-avg, oneshot-qat, sub-norm, run at the main budget)",
    )  # fmt: skip
    s.add_argument(
        "--bigram-prior", choices=("off", "on", "both"), default="off", help="bigram log-prior for every arm"
    )
    s.add_argument(
        "--budgets", default="", metavar="B1,B2,...",
        help="extra budgets of the scaling trend (int8 tokens/param kept at --budget's)",
    )  # fmt: skip
    s.add_argument("--trend-seeds", type=int, default=1, help="seeds at the budgets other than --budget")
    s.add_argument(
        "--plan-only", action="store_true",
        help="print every arm's solver fill (and parameters) at every budget, train nothing",
    )  # fmt: skip
    s.add_argument("--lr-sweep", choices=("off", "coord", "grid"), default="coord", help="per-arm LR sweep")
    s.add_argument(
        "--muon-lrs", default=",".join(f"{x:g}" for x in DEFAULT_MUON_LRS), help="Muon LR points (<= 3)"
    )
    s.add_argument(
        "--adam-lrs", default=",".join(f"{x:g}" for x in DEFAULT_ADAM_LRS), help="Adam LR points (<= 3)"
    )
    s.add_argument(
        "--sweep-scale", type=float, default=0.25, help="tokens of a sweep run relative to its arm's"
    )
    s.add_argument(
        "--sweep-at", choices=("all", "main"), default="all",
        help="budgets that sweep: all, or main (the trend budgets take the main budget's LRs)",
    )  # fmt: skip
    s.add_argument(
        "--holdout-tokens", type=int, default=DEFAULT_HOLDOUT_TOKENS,
        help="training tokens held out to score the sweep (never validation)",
    )  # fmt: skip
    o = p.add_argument_group("output")
    o.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"bench folder (cache and reports); default {DEFAULT_OUT}",
    )
    o.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result JSON here")
    o.add_argument(
        "--calibrate",
        type=float,
        default=None,
        metavar="S",
        help="measure tokens/s of each arm over S seconds",
    )
    return p


def _glob(pattern: str, what: str) -> list[str]:
    paths = sorted(glob.glob(os.path.expanduser(pattern)))
    if not paths:
        raise UsageError(f"{what}: no files match {pattern!r}")
    return paths


def resolve_data_root(root: str | None, environ: Mapping[str, str]) -> Path | None:
    """The mirror's `datasets/` folder (holding manifest.json) from --data or GOLF_DATA__MIRROR."""
    raw = root or environ.get("GOLF_DATA__MIRROR")
    if not raw:
        return None
    base = Path(raw).expanduser()
    for cand in (base / "datasets", base):
        if (cand / "manifest.json").exists() or (cand / "datasets").is_dir():
            return cand
    raise UsageError(
        f"--data {raw}: neither it nor its datasets/ folder holds a dataset mirror (manifest.json)"
    )


def resolve_shards(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[list[str], list[str], str | None]:
    """(train, val, sentencepiece model) from the flags and the mirror."""
    root = resolve_data_root(args.data, environ)
    if (args.train is None or args.val is None) and root is None:
        raise UsageError("no data: pass --data ROOT (or set GOLF_DATA__MIRROR), or both --train and --val")
    sp_variant = "sp1024"
    folder = None if root is None else root / "datasets" / f"fineweb10B_{sp_variant}"
    if root is not None and args.variant == "byte260" and (root / "datasets" / "fineweb10B_byte260").is_dir():
        folder = root / "datasets" / "fineweb10B_byte260"
    train = (
        _glob(args.train, "--train")
        if args.train
        else _glob(str(folder / "fineweb_train_*.bin"), "mirror train shards")
    )
    val = (
        _glob(args.val, "--val")
        if args.val
        else _glob(str(folder / "fineweb_val_*.bin"), "mirror val shards")
    )
    sp = args.tokenizer
    if sp is None and root is not None:
        cand = root / "tokenizers" / "fineweb_1024_bpe.model"
        sp = str(cand) if cand.exists() else None
    return train, val, sp


def config_from_args(args: argparse.Namespace) -> mg.BenchConfig:
    try:
        return mg.BenchConfig(
            budget_bytes=args.budget,
            match=args.match,
            int8_tokens=args.int8_tokens,
            seconds=args.seconds,
            seeds=args.seeds,
            first_seed=args.first_seed,
            workers=args.workers,
            device=args.device,
            seq_len=args.seq_len,
            global_batch_tokens=args.batch_tokens,
            micro_batch_seqs=args.micro_batch,
            val_points=args.val_points,
            val_tokens=args.val_tokens,
            eval=EvalSpec(
                seq_len=args.eval_seq_len, stride=args.stride, rule=args.rule, max_tokens=args.eval_tokens
            ),
            recalibrate=args.recalibrate,
            ablations=mg.expand_ablations(args.ablate, sub_norm=args.sub_norm == "on"),
            sub_norm=args.sub_norm == "on",
            ablation_scale=args.ablate_scale,
            min_fill=mg.MIN_FILL if args.min_fill is None else args.min_fill,
            int8_keep_float=args.int8_keep_float,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None


def _floats(raw: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{what}: a comma list of numbers, got {raw!r}") from None


def study_from_args(args: argparse.Namespace, bench: mg.BenchConfig) -> StudyConfig:
    """The study's config from the flags (its trainer and scoring settings are the 3-arm bench's)."""
    try:
        budgets = tuple(int(x) for x in args.budgets.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--budgets: a comma list of byte counts, got {args.budgets!r}") from None
    try:
        return StudyConfig(
            bench=bench, arms=tuple(args.arms.split(",")), bigram_prior=args.bigram_prior, budgets=budgets,
            trend_seeds=args.trend_seeds, lr_sweep=args.lr_sweep, muon_lrs=_floats(args.muon_lrs, "--muon-lrs"),
            adam_lrs=_floats(args.adam_lrs, "--adam-lrs"), sweep_scale=args.sweep_scale,
            sweep_at=args.sweep_at, holdout_tokens=args.holdout_tokens, min_fill=STUDY_MIN_FILL if args.min_fill is None else args.min_fill,
        )  # fmt: skip
    except ValueError as e:
        raise UsageError(str(e)) from None


def is_study(args: argparse.Namespace) -> bool:
    """The study runs unless the 3-arm bench's own modes are asked for (ablations, calibration, time matching)."""
    return not (args.ablate or args.calibrate is not None or args.match == "time")


def calibrate(cfg: mg.BenchConfig, data: mg.BenchData, out: Path, seconds: float) -> int:
    """Train each main arm for `seconds` side by side; print tokens/s and the int8 tokens of a 600 s run."""
    import dataclasses

    cal = dataclasses.replace(
        cfg,
        match="time",
        seconds=seconds,
        seeds=1,
        val_points=0,
        recalibrate="off",
        ablations=(),
        checkpoints=0,
    )
    result = mg.run_bench(cal, data, out / "calibrate", log=lambda s: print(s, file=sys.stderr))
    print("| arm | params | tokens/s (one thread, two arms side by side) | tokens in 600 s |")
    print("|---|---:|---:|---:|")
    for arm in mg.MAIN_ARMS:
        a = result[arm]
        print(f"| {arm} | {a['params']:,} | {a['tokens_per_s']:,.0f} | {a['tokens_per_s'] * 600:,.0f} |")
    print(
        f"\nsuggested --int8-tokens (600 s of gpt-int8): {round(result['gpt-int8']['tokens_per_s'] * 600, -5):,.0f}"
    )
    return 0


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    execute: Execute | None = None,
) -> int:
    """Entry point of `golf bench minigolf`; `environ` defaults to os.environ (read only here).

    execute: how the study's units run (default: the local pool; `golf.flows.bench` passes Prefect task runs).
    """
    args = _parser().parse_args(list(argv) if argv is not None else None)
    env = os.environ if environ is None else environ
    try:
        cfg = config_from_args(args)
        train, val, sp = resolve_shards(args, env)
        out = args.out.resolve()
        input_variant = None if args.input_variant == "auto" else args.input_variant
        data = mg.prepare_data(
            train, val, variant=args.variant, sp_model=sp, out_dir=out / "data", input_variant=input_variant,
            log=lambda s: print(s, file=sys.stderr),
        )  # fmt: skip
        if args.calibrate is not None:
            return calibrate(cfg, data, out, args.calibrate)
        if is_study(args):
            study = study_from_args(args, cfg)
            if args.plan_only:
                from golfmodel.bench.study_plan import fill_table

                print(fill_table(study, data, out))
                return 0
            result = run_study(
                study,
                data,
                out,
                execute=execute,
                json_path=args.json,
                log=lambda s: print(s, file=sys.stderr),
            )
            from golfmodel.bench.study_report import markdown as study_markdown

            print(study_markdown(result))
            print(f"results: {out}")
            return 0
        result = mg.run_bench(cfg, data, out, json_path=args.json, log=lambda s: print(s, file=sys.stderr))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ArmFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from golfmodel.bench.minigolf_report import markdown

    print(markdown(result))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
