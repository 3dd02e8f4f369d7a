"""golfmodel.export: the challenge records folder and the single-file train_gpt.py.

    paths = write_submission_code(folder)        # [folder / "train_gpt.py"]: the code a submission ships
    n = code_bytes()                             # its size (fixed for a golfmodel source; see bundle.py)
    export_run(run_dir, dest, author=..., github_id=...)   # a records folder from a pipeline run

The size check (SPEC §5) counts exactly the bytes of train_gpt.py; the configuration embedded in
it is padded to a fixed size, so the file written before a run exists (no configuration) and the
one `golf export` writes for the finished run have the same number of bytes.

Nothing is imported at package import: train_gpt.py embeds this package with `runner` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SCRIPT_NAME = "train_gpt.py"

__all__ = ["SCRIPT_NAME", "code_bytes", "export_run", "write_submission_code"]


def write_submission_code(
    folder: str | os.PathLike[str], config: dict[str, Any] | None = None, **kwargs: Any
) -> list[Path]:
    """Write the code a submission ships (train_gpt.py) into `folder`; returns the paths to count."""
    from golfmodel.export.bundle import write_script

    return [write_script(Path(folder) / SCRIPT_NAME, config, **kwargs)]


def code_bytes(**kwargs: Any) -> int:
    """Bytes of train_gpt.py for this golfmodel source (the same for every run configuration)."""
    from golfmodel.export.bundle import code_bytes as _code_bytes

    return _code_bytes(**kwargs)


def export_run(run_dir: str | os.PathLike[str], dest: str | os.PathLike[str], **kwargs: Any) -> Path:
    """A challenge records folder from a pipeline run folder (see golfmodel.export.records)."""
    from golfmodel.export.records import export_run as _export

    return _export(run_dir, dest, **kwargs)
