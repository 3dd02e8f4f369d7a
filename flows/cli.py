"""The `golf` command line (console script `golf = golf.flows.cli:main`).

    golf run [--preset P] [--stages a,b | --from STAGE] [--force a,b] [--set k=v ...]
    golf stage NAME [--preset P] [--set k=v ...]      rerun one stage, upstream from the cache
    golf settings show [--preset P] [--set k=v ...] [--json]
    golf ui | golf serve | golf report RUN | golf gc [--older-than DAYS]
    golf data ... | golf inspect FILE | golf model plan ... | golf train --dry-run | golf bench NAME
    golf eval ARTIFACT --val GLOB [--tokenizer MODEL | --variant byte260] [--stride S] [--nproc N] [--json FILE]
    golf doctor gpu [--smoke] [--out DIR]

This is the entry point, so it is where the environment is read (`GOLF_*` through the settings
loader, `PREFECT_*` by Prefect). Prefect is imported only by the commands that need it, so
`golf data ...` and `golf settings show` stay fast. `golf run` prints `report: <run folder>` as
the last line of standard output; logs go to standard error. Exit codes: 0 done, 1 a stage
failed, 2 invalid settings or arguments, 128 + N interrupted by signal N (130 Ctrl-C, 143
SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from golf.settings import STAGES, Settings, SettingsError, load_settings, preset_names

DEFAULT_UI_HOST = "127.0.0.1"
DEFAULT_UI_PORT = 4200
OFFLINE_ENV = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


# ---------------------------------------------------------------------------
# Helpers


def _add_settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset", default="smoke", help=f"settings preset ({', '.join(preset_names())}); default smoke"
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set train.max_steps=50 (repeatable)",
    )  # fmt: skip


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.preset, overrides=args.overrides)


def _stage_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise UsageError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return names


def _offline_env() -> None:
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _prepare_prefect() -> str | None:
    """Offline env; the server this run was told to use (PREFECT_API_URL, or this checkout's `golf ui`).

    Returns its API URL (also exported as PREFECT_API_URL), or None: then the caller starts a
    temporary server of its own (`golf.flows.server`). A server merely answering on the default
    port is not used (it may be another user's).
    """
    from golf.flows.server import choose_api_url

    _offline_env()
    url = choose_api_url()
    if url:
        os.environ["PREFECT_API_URL"] = url
    return url


def _print_summary(result: dict[str, Any]) -> None:
    summary = result.get("summary") or {}
    for key in (
        "bigram_bpb",
        "prequant_bpb",
        "recalibrated_bpb",
        "final_bpb",
        "artifact_bytes",
        "total_bytes",
        "budget_bytes",
    ):
        if summary.get(key) is not None:
            print(f"{key.replace('_', ' ')}: {summary[key]}")


# ---------------------------------------------------------------------------
# Commands


def cmd_run(args: argparse.Namespace) -> int:
    """Run the pipeline (selected stages); cached stages are skipped. Interrupts end the run cleanly.

    SIGINT, SIGTERM or SIGHUP (to `golf` or its process group): the stage in progress stops (the
    trainer's process group is killed), the flow run is marked Cancelled, Prefect's queued logs
    are flushed, the temporary server (if this run started one) stops last, and the exit code
    is 128 + the signal (130 for Ctrl-C).
    """
    from golf.flows import server as srv
    from golf.tasks.stages import select_stages
    from golf.tasks.subproc import InterruptSignals, interrupt_signal

    settings = _settings(args)
    stages = _stage_list(args.stages)
    force = _stage_list(args.force) or []
    try:
        select_stages(stages, args.from_stage, settings.pipeline.stages)
    except ValueError as e:
        raise UsageError(str(e)) from None
    temporary: srv.TemporaryServer | None = None
    with InterruptSignals() as signals:
        try:
            url = _prepare_prefect()
            if url is None:
                temporary = srv.TemporaryServer()
                temporary.start()  # main thread: its death signal is tied to this process
                os.environ["PREFECT_API_URL"] = temporary.api_url
            print(srv.describe(url, temporary), file=sys.stderr)
            from golf.flows.pipeline import golf_pipeline  # imports while the server boots

            if temporary is not None:
                temporary.wait_ready(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
            state = golf_pipeline(
                settings=settings, stages=stages, from_stage=args.from_stage, force=force, return_state=True
            )
            return _run_outcome(state)
        except KeyboardInterrupt as e:  # before or after the flow's own handling
            sig = interrupt_signal(e)
            print(f"interrupted ({signal_name(sig)})", file=sys.stderr)
            return 128 + sig
        finally:
            signals.shield()
            srv.drain_prefect()
            if temporary is not None:
                temporary.stop()


def signal_name(sig: int) -> str:
    import signal

    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _run_outcome(state: Any) -> int:
    """Print the run's summary and `report: <run folder>`; the exit code of its final state."""
    result = state.result(raise_on_failure=False)
    if not isinstance(result, dict):
        print(f"error: pipeline failed: {state.message or result}", file=sys.stderr)
        return 1
    _print_summary(result)
    if result.get("signal"):
        print(f"interrupted ({signal_name(result['signal'])}): {result.get('message')}", file=sys.stderr)
        print(f"report: {result['run_dir']}")
        return 128 + int(result["signal"])
    if result.get("message"):
        print(f"error: {result['message']}", file=sys.stderr)
    print(f"report: {result['run_dir']}")
    return 1 if result.get("message") else 0


def cmd_stage(args: argparse.Namespace) -> int:
    """Rerun one stage (forced), its upstream served from the cache."""
    args.stages, args.from_stage, args.force = args.name, None, args.name
    return cmd_run(args)


def cmd_settings_show(args: argparse.Namespace) -> int:
    """Resolve and validate settings (no hardware probing) and print them."""
    settings = _settings(args)
    data = settings.model_dump(mode="json")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for section, values in data.items():
        if isinstance(values, dict):
            print(f"[{section}]")
            for k, v in values.items():
                print(f"{k} = {json.dumps(v)}")
            print()
        else:
            print(f"{section} = {json.dumps(values)}")
    return 0


def _dry_job(settings: Settings) -> tuple[Any, Path]:
    """The train stage's TrainJob with placeholder paths (nothing is read), and its out folder."""
    from golf.settings.convert import train_job

    out = Path(settings.pipeline.artifacts_dir).resolve() / "cache" / "train" / "KEY"
    job = train_job(
        settings, vocab_size=settings.vocab_size, train_shards=["<train shards>"], val_shards=["<val shards>"],
        tokenizer="<tokenizer>", bigram_logprior="<bigram>" if settings.model.bigram_prior else None, out_dir=out,
    )  # fmt: skip
    return job, out


def _step_cost_cache(settings: Settings) -> Path:
    return Path(settings.pipeline.artifacts_dir).resolve() / "cache" / "step_cost"


def cmd_train(args: argparse.Namespace) -> int:
    """`golf train --dry-run`: the GPU job's plan (model, memory, step-cost projection) and its command."""
    if not args.dry_run:
        raise UsageError(
            "golf train runs only with --dry-run; training runs as a pipeline stage (golf run / golf stage train)"
        )
    from golf.settings.convert import torchrun_command

    settings = _settings(args)
    from golfmodel.train.dryrun import dry_run

    job, out = _dry_job(settings)
    report = dry_run(
        job, settings.train.nproc, args.device, cache_dir=_step_cost_cache(settings),
        eval_stride=settings.eval.stride or settings.eval.seq_len, calibration_ratio=args.calibration_ratio,
    )  # fmt: skip
    print(report.format())
    print(
        "exact command (golf run's train stage): "
        + " ".join(torchrun_command(settings, out / "RUN.json", sys.executable))
    )
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Start a local Prefect server (analytics off) in the foreground, print its URL, record it for `golf run`.

    The record (`golf.flows.server.ui_record_path`: per user and checkout) is how `golf run` and
    `golf serve` of this checkout find the server; it is removed when `golf ui` exits.
    """
    from golf.flows.server import forget_ui, record_ui

    _offline_env()
    url = f"http://{args.host}:{args.port}"
    record = record_ui(f"{url}/api", os.getpid())
    print(
        f"Prefect UI: {url}\nAPI: {url}/api  (golf run and golf serve of this checkout use it: {record}; "
        f"from elsewhere export PREFECT_API_URL={url}/api)"
    )
    sys.stdout.flush()
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", args.host, "--port", str(args.port)]
    try:
        return subprocess.call(cmd, env={**os.environ, **OFFLINE_ENV})
    except KeyboardInterrupt:
        return 0
    finally:
        forget_ui(os.getpid())


NIGHTLY_CRON = "0 2 * * *"


def cmd_serve(args: argparse.Namespace) -> int:
    """Register the nightly deployment (cron with timezone, one run at a time) and serve its runs."""
    settings = _settings(args)
    if not _prepare_prefect():
        raise UsageError("golf serve needs a Prefect server: start one with `golf ui` or set PREFECT_API_URL")
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from golf.flows.pipeline import golf_pipeline

    print(
        f"serving deployment golf-pipeline/{args.name}: cron {args.cron!r} ({args.timezone})", file=sys.stderr
    )
    golf_pipeline.serve(
        name=args.name,
        schedule=Cron(args.cron, timezone=args.timezone),
        parameters={"settings": settings.model_dump(mode="json")},
        global_limit=1,  # one pipeline run at a time
        limit=1,
        tags=["golf", settings.preset],
        entrypoint_type=EntrypointType.MODULE_PATH,
        print_starting_message=True,
    )
    return 0


def _find_run(artifacts: Path, name: str) -> Path:
    from golf.tasks.runs import iter_runs

    path = Path(name)
    if path.is_dir():
        return path
    runs = list(iter_runs(artifacts))
    if name == "latest" and runs:
        return runs[-1]
    matches = [r for r in runs if r.name.startswith(name)]
    if len(matches) != 1:
        raise UsageError(f"no unique run {name!r} under {artifacts / 'runs'} ({len(matches)} match)")
    return matches[0]


def cmd_report(args: argparse.Namespace) -> int:
    """Print a run's report.md (RUN: a folder, a run name or its prefix, or 'latest')."""
    settings = _settings(args)
    run = _find_run(Path(settings.pipeline.artifacts_dir).resolve(), args.run)
    report = run / "report.md"
    if not report.exists():
        print(f"error: {run} has no report.md (the run did not finish)", file=sys.stderr)
        return 1
    print(report.read_text(), end="")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove old run folders and cache entries that no kept run points at."""
    from golf.tasks.runs import gc

    settings = _settings(args)
    days = settings.pipeline.retention_days if args.older_than is None else args.older_than
    rep = gc(settings.pipeline.artifacts_dir, days, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in rep.removed_runs + rep.removed_entries:
        print(f"{verb} {p}", file=sys.stderr)
    print(
        f"{verb} {len(rep.removed_runs)} run(s) and {len(rep.removed_entries)} cache entr(ies), "
        f"{rep.freed_bytes} bytes; kept {rep.kept_referenced} referenced entr(ies)"
    )
    return 0


BENCHES = ("model", "pack", "tokenise", "minigolf", "dist", "step")


def _bench_step(argv: list[str]) -> int:
    """`golf bench step --preset P [--arm A] [--gpu G] [--design D] [--json FILE] [--set k=v]`."""
    p = argparse.ArgumentParser(
        prog="golf bench step", description="step-cost model of a preset's job (projection)"
    )
    _add_settings_args(p)
    p.set_defaults(preset="h100x8")
    p.add_argument("--arm", default=None, help="override model.arm (the budget solver sizes it)")
    p.add_argument("--gpu", default="H100", choices=("H100", "H200"), help="GPU profile (default H100)")
    p.add_argument("--design", default="today", choices=("today", "after"), help="design --json summarises")
    p.add_argument("--json", default=None, metavar="FILE", help="write the summary as JSON")
    args = p.parse_args(argv)
    if args.arm:
        args.overrides = [*args.overrides, f"model.arm={args.arm}"]
    settings = _settings(args)
    from golfmodel.bench.step_bench import run

    job, _ = _dry_job(settings)
    return run(
        job, world_size=settings.train.nproc, gpu=args.gpu, design=args.design, json_path=args.json,
        cache_dir=_step_cost_cache(settings),
    )  # fmt: skip


def _engine(rest: list[str]) -> tuple[str, str | None, int, list[str]]:
    """(engine, deployment, workers, the other arguments) of `golf bench minigolf` (the CLI's own flags)."""
    engine, deployment, workers, out, it = "local", None, 2, [], iter(rest)
    for a in it:
        key, eq, val = a.partition("=")
        if key in ("--engine", "--deployment", "--workers"):
            val = val if eq else next(it, "")
            if key == "--engine":
                engine = val
            elif key == "--deployment":
                deployment = val
            else:
                workers = int(val)
                out += ["--workers", val]
            continue
        out.append(a)
    if engine not in ("local", "prefect"):
        raise UsageError(f"--engine: must be local or prefect, got {engine!r}")
    if deployment is not None and engine != "prefect":
        raise UsageError("--deployment needs --engine prefect")
    return engine, deployment, workers, out


def _bench_on_prefect(rest: list[str], deployment: str | None, workers: int) -> int:
    """The study as a Prefect flow (every unit a task run), on this checkout's server or a temporary one."""
    from golf.flows import server as srv

    temporary: srv.TemporaryServer | None = None
    try:
        url = _prepare_prefect()
        if url is None:
            temporary = srv.TemporaryServer()
            temporary.start()
            os.environ["PREFECT_API_URL"] = temporary.api_url
        print(srv.describe(url, temporary), file=sys.stderr)
        from golf.flows.bench import run as run_study_flow

        if temporary is not None:
            temporary.wait_ready(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
        return run_study_flow(rest, workers=workers, deployment=deployment)
    finally:
        srv.drain_prefect()
        if temporary is not None:
            temporary.stop()


def cmd_bench(args: argparse.Namespace) -> int:
    """Dispatch to `golfmodel.bench.<name>_bench.main(argv)`.

    `step` needs settings (`_bench_step`); `minigolf --engine prefect` runs the study as a flow.
    """
    if args.name == "step":
        return _bench_step(args.rest)
    if args.name == "minigolf":
        engine, deployment, workers, rest = _engine(list(args.rest))
        if engine == "prefect":
            return _bench_on_prefect(rest, deployment, workers)
        args.rest = rest
    try:
        module = importlib.import_module(f"golfmodel.bench.{args.name}_bench")
    except ImportError as e:
        print(f"error: benchmark {args.name!r} is not available ({e})", file=sys.stderr)
        return 1
    return int(module.main(args.rest) or 0)


# ---------------------------------------------------------------------------
# Parser


# Library subcommands: `register(sub)` of each module adds its parser. They import torch, so a
# module is imported only when its command is the one being run (a placeholder lists it in --help),
# and a module not written yet leaves its command out instead of breaking the CLI.
LIBRARY_COMMANDS = {
    "data": ("golfmodel.data.cli", "data plane: verify, tokenise, bigram"),
    "inspect": ("golfmodel.q2bn.cli", "show an artifact's header, tensors and size breakdown"),
    "model": ("golfmodel.model.cli", "model plans (budget solver)"),
    "export": (
        "golfmodel.export.cli",
        "write a challenge records folder (submission.json, train_gpt.py, artifact)",
    ),
    "eval": ("golfmodel.eval.cli", "score an artifact on validation shards (torchrun with --nproc)"),
    "doctor": ("golfmodel.doctor", "one-shot checks of a lent GPU: golf doctor gpu [--smoke] [--out DIR]"),
}


def _register_library(sub: Any, name: str, wanted: bool) -> None:
    module, help_text = LIBRARY_COMMANDS[name]
    if wanted:
        try:
            importlib.import_module(module).register(sub)
            return
        except ImportError as e:
            help_text = f"(unavailable: {e})"
    p = sub.add_parser(name, help=help_text)
    p.set_defaults(func=lambda args: _unavailable(name, module))


def _unavailable(name: str, module: str) -> int:
    print(f"error: golf {name} is not available ({module} is missing)", file=sys.stderr)
    return 1


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="golf", description="Parameter Golf pipeline: train, pack, size-check, score."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the pipeline (cached stages are skipped)")
    _add_settings_args(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stages", help=f"comma-separated stages to run ({','.join(STAGES)})")
    group.add_argument("--from", dest="from_stage", choices=STAGES, help="run this stage and every later one")
    p.add_argument("--force", help="comma-separated stages to recompute even when cached")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("stage", help="rerun one stage; upstream stages come from the cache")
    p.add_argument("name", choices=STAGES)
    _add_settings_args(p)
    p.set_defaults(func=cmd_stage)

    p = sub.add_parser("settings", help="settings commands")
    ssub = p.add_subparsers(dest="settings_command", required=True, metavar="COMMAND")
    q = ssub.add_parser("show", help="resolve, validate and print the settings")
    _add_settings_args(q)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_settings_show)

    p = sub.add_parser("train", help="training helpers (the run itself is a pipeline stage)")
    _add_settings_args(p)
    p.add_argument(
        "--dry-run", action="store_true", help="plan the job (meta device) and print the torchrun command"
    )
    p.add_argument(
        "--device",
        default="H100",
        choices=("H100", "H200"),
        help="GPU profile to project onto (default H100)",
    )
    p.add_argument(
        "--calibration-ratio", type=float, default=None, metavar="R",
        help="use this step-cost calibration ratio instead of counting the baseline (e.g. a measured one)",
    )  # fmt: skip
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ui", help="start a local Prefect server + UI (analytics off) and print its URL")
    p.add_argument("--host", default=DEFAULT_UI_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_UI_PORT)
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("serve", help="register the nightly deployment and serve its runs")
    _add_settings_args(p)
    p.add_argument("--name", default="nightly", help="deployment name (default nightly)")
    p.add_argument("--cron", default=NIGHTLY_CRON, help=f"schedule (default {NIGHTLY_CRON!r})")
    p.add_argument("--timezone", default="UTC", help="timezone of the cron (default UTC)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("report", help="print a run's report.md")
    p.add_argument("run", help="run folder, run name (or prefix), or 'latest'")
    _add_settings_args(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("gc", help="remove old runs and unreferenced cache entries")
    _add_settings_args(p)
    p.add_argument(
        "--older-than", type=float, default=None, metavar="DAYS", help="default pipeline.retention_days"
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("bench", help="benchmarks (golfmodel.bench)")
    p.add_argument("name", choices=BENCHES)
    p.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="arguments of the benchmark (minigolf also: --engine local|prefect, --deployment NAME)",
    )
    p.set_defaults(func=cmd_bench)

    command = next((a for a in argv if not a.startswith("-")), None)
    for name in LIBRARY_COMMANDS:
        _register_library(sub, name, wanted=name == command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `golf settings show | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
