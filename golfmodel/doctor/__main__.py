"""`python -m golfmodel.doctor gpu [--smoke] [--out DIR]` (the lent machine has no `golf` console script).

This is the entry point, so it is where the environment is set: with --smoke on a machine without
CUDA, TRITON_INTERPRET=1 before any golfmodel module that builds the Triton kernels is imported,
so the fused CfC scan runs in Triton's interpreter at toy size (`golfmodel/doctor/__init__.py`
imports no model code at import time).
"""

import os
import sys

if "--smoke" in sys.argv[1:] and "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

from golfmodel.doctor import main  # noqa: E402 - after the interpreter switch above

raise SystemExit(main())
