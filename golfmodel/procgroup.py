"""Ending a torch.distributed process group so that no rank tears down while a peer still talks to it.

A gloo rank that destroys its group while its peer is still finishing the last collective can take the
peer down with it (seen once in CI: rank 1 aborted with `terminate called without an active
exception` after a 2-rank evaluation had printed its score). On a clean exit every rank meets at a
barrier first, so all traffic of the run is over before any group is destroyed; on an error path
the barrier is skipped (a peer may never arrive) and the group is destroyed at once.
"""

from __future__ import annotations

import torch.distributed as dist


def end_process_group(*, clean: bool) -> None:
    """Destroy the default process group if one is initialised; barrier first when `clean`."""
    if not dist.is_initialized():
        return
    try:
        if clean and dist.get_world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()
