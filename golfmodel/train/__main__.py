"""Training entry point; the only place the trainer reads the environment (RANK, WORLD_SIZE, LOCAL_RANK).

    python -m golfmodel.train --job RUN.json [--resume | --fresh]
    torchrun --standalone --nproc_per_node=8 -m golfmodel.train --job RUN.json

Without --resume/--fresh a run continues from the newest checkpoint in the job's out_dir when
there is one. Exit codes: 0 done, 2 bad job/arguments, 3 training diverged (NaN/inf).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golfmodel.train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--job", "--config", dest="job", required=True, help="path of the TrainJob JSON (RUN.json)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume", action="store_true", help="require a checkpoint in out_dir and continue from it"
    )
    group.add_argument("--fresh", action="store_true", help="ignore (and replace) checkpoints in out_dir")
    args = parser.parse_args(argv)

    import torch.distributed as dist

    from golfmodel.procgroup import end_process_group
    from golfmodel.train.config import TrainJob
    from golfmodel.train.runtime import DistEnv, resolve_backend, resolve_device
    from golfmodel.train.trainer import TrainingDiverged, train

    try:
        job = TrainJob.from_json(args.job)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = DistEnv(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if env.world_size > 1:
        device = resolve_device(job.train, env.local_rank)
        if device.type == "cuda":
            import torch

            torch.cuda.set_device(device)
        dist.init_process_group(backend=resolve_backend(job.train, device))
    resume = True if args.resume else (False if args.fresh else None)
    clean = False
    try:
        train(job, env, resume=resume)
        clean = True
    except TrainingDiverged as e:
        print(f"error (rank {env.rank}): {e}", file=sys.stderr, flush=True)
        return 3
    finally:
        end_process_group(clean=clean)
    return 0


if __name__ == "__main__":
    sys.exit(main())
