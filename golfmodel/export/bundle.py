"""The single-file `train_gpt.py` of a submission: the golfmodel modules it needs, embedded, plus a bootstrap.

    text = build_script(config)                     # the whole file (str), deterministic
    path = write_script(out_dir / "train_gpt.py", config)
    n = code_bytes()                                # its size; the same for every config (see below)

The challenge counts a submission's code as the bytes of `train_gpt.py`, which must train and
score on its own with only torch, numpy, sentencepiece and zstandard installed. The script holds:

1. a readable header: docstring, the run's configuration (`CONFIG`, JSON) and a small
   import hook (`_Embedded`) that serves `golfmodel.*` from the embedded sources, ahead of any
   installed copy;
2. the sources of the modules `golfmodel.export.runner` needs (model, quantiser, Q2BN and int8
   export, scorer, trainer, τ recalibration, shards, bigram), found by following their imports,
   either verbatim (`style="plain"`) or xz-compressed and base85-encoded (`style="xz"`, the
   default: about a third of the bytes, and every byte counts against the 16,000,000);
3. `main()`, which calls `golfmodel.export.runner.main(CONFIG, argv, os.environ, __file__)`.

The configuration is padded to `CONFIG_BYTES`, so the file's size does not depend on the run's
settings: the pipeline's size check can count `code_bytes()` before the run exists, and the
exported script has exactly that many bytes (for the same golfmodel source and style).
"""

from __future__ import annotations

import ast
import base64
import json
import lzma
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from golfmodel.atomic import atomic_write_bytes

Style = Literal["plain", "xz"]
DEFAULT_STYLE: Style = "xz"
CONFIG_BYTES = 4096  # the embedded JSON configuration is padded to exactly this many bytes
ROOTS = ("golfmodel.export.runner",)
# modules the script never needs even where an import names them (CLIs, the solver, tokenisers, benches)
EXCLUDE_PREFIXES = (
    "golfmodel.bench",
    "golfmodel.data.cli",
    "golfmodel.data.hub",
    "golfmodel.data.tokenise",
    "golfmodel.export.bundle",
    "golfmodel.export.cli",
    "golfmodel.export.records",
    "golfmodel.model.budget",
    "golfmodel.q2bn.cli",
    "golfmodel.train.__main__",
    "golfmodel.train.dryrun",
)
# third-party imports the script may rely on; inside functions also those of code paths it never takes
ALLOWED_TOP_LEVEL = {"torch", "numpy", "sentencepiece", "zstandard"}
# triton: the fused CfC scan imports it inside `try` (CUDA torch ships it; without it the torch scan runs)
ALLOWED_LAZY = ALLOWED_TOP_LEVEL | {"tqdm", "scipy", "matplotlib", "triton"}
_LIB_ROOT = Path(__file__).resolve().parents[1]  # the golfmodel package folder


class BundleError(RuntimeError):
    """The embedded module set is not self-contained (a missing module or a disallowed import)."""


def _module_path(name: str) -> tuple[Path, bool] | None:
    """(file, is_package) of a golfmodel module name, or None if there is none."""
    rel = Path(*name.split(".")[1:])
    pkg = _LIB_ROOT / rel / "__init__.py"
    if pkg.exists():
        return pkg, True
    mod = (_LIB_ROOT / rel).with_suffix(".py") if rel.parts else None
    if mod is not None and mod.exists():
        return mod, False
    return None


def _imports(tree: ast.Module, module: str, is_pkg: bool) -> tuple[set[str], set[str], set[str]]:
    """(golfmodel modules, third-party top-level roots, third-party roots imported inside functions)."""
    ours: set[str] = set()
    top: set[str] = set()
    lazy: set[str] = set()
    top_nodes = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in names:
            root = n.split(".")[0]
            if root == "golfmodel":
                # `from golfmodel.x import y`: y is a module only if its file exists
                if _module_path(n) is not None:
                    ours.add(n)
            elif root and root != "__future__":
                (top if id(node) in top_nodes else lazy).add(root)
    return ours, top, lazy


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names)


def collect_modules(
    roots: Iterable[str] = ROOTS, *, exclude: Iterable[str] = EXCLUDE_PREFIXES, check: bool = True
) -> dict[str, tuple[bool, str]]:
    """{module name: (is_package, source)} of every golfmodel module the roots import, packages included.

    check: raise BundleError when a module imports a third-party package outside the allowed set.
    """
    stdlib = _stdlib()
    skip = tuple(exclude)
    found: dict[str, tuple[bool, str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or (name not in roots and any(name == p or name.startswith(p + ".") for p in skip)):
            continue
        loc = _module_path(name)
        if loc is None:
            raise BundleError(f"module {name} is imported but golfmodel has no such file")
        path, is_pkg = loc
        src = path.read_text(encoding="utf-8")
        found[name] = (is_pkg, src)
        ours, top, lazy = _imports(ast.parse(src, str(path)), name, is_pkg)
        bad = sorted(r for r in top if r not in stdlib and r not in ALLOWED_TOP_LEVEL)
        bad += sorted(r for r in lazy if r not in stdlib and r not in ALLOWED_LAZY)
        if bad and check:
            raise BundleError(f"{path}: imports {bad}, which a submission cannot rely on")
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(ours)
    return dict(sorted(found.items()))


def pad_config(config: dict[str, Any]) -> str:
    """The configuration as JSON padded with spaces to CONFIG_BYTES (ASCII), so the script's size is fixed."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    if len(text) > CONFIG_BYTES:
        raise ValueError(
            f"the submission configuration is {len(text)} bytes of JSON, over CONFIG_BYTES={CONFIG_BYTES}"
        )
    if '"""' in text or "\\" in text:
        raise ValueError("the submission configuration may not contain triple quotes or backslashes")
    return text + " " * (CONFIG_BYTES - len(text))


def _encode_plain(modules: dict[str, tuple[bool, str]]) -> str:
    out = ["_SOURCES = {"]
    for name, (is_pkg, src) in modules.items():
        body = src.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        out.append(f'    {name!r}: ({is_pkg}, """{body}"""),')
    out.append("}")
    return "\n".join(out)


def _encode_xz(modules: dict[str, tuple[bool, str]]) -> str:
    blob = json.dumps({k: [p, s] for k, (p, s) in modules.items()}, sort_keys=True).encode("utf-8")
    packed = base64.b85encode(lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME)).decode("ascii")
    lines = [packed[i : i + 100] for i in range(0, len(packed), 100)]
    return "\n".join(
        [
            "# the golfmodel sources (JSON {module: [is_package, source]}), xz-compressed and base85-encoded;",
            "# `python train_gpt.py --dump-sources DIR` writes them out as files",
            '_SOURCES = {k: tuple(v) for k, v in json.loads(lzma.decompress(base64.b85decode("".join("""',
            *lines,
            '""".split()))).decode("utf-8")).items()}',
        ]
    )


_HEADER = '''#!/usr/bin/env python3
"""train_gpt.py: a golf submission (Q² 2-bit quantisation-aware hybrid LM) that trains, packs and scores itself.

    torchrun --standalone --nproc_per_node=8 train_gpt.py      # the challenge's command
    python train_gpt.py                                        # one process (CPU or one GPU)
    python train_gpt.py --selftest                             # seconds on a CPU: tiny model, pack, reload, score

Environment (as the challenge's baseline): DATA_PATH (folder of fineweb_{train,val}_*.bin),
TOKENIZER_PATH (sentencepiece model; unused for byte260), RUN_ID, MAX_WALLCLOCK_SECONDS,
ITERATIONS, SEED, VAL_LOSS_EVERY, OUT_DIR. Needs torch, numpy, sentencepiece, zstandard.

Generated by `golf export` from the golf repository (golfmodel); do not edit: the library's
modules are embedded below and imported from here (`_Embedded`), ahead of any installed copy.
CONFIG is the run's configuration; the score is computed on the model reloaded from the artifact.
"""

import base64
import importlib.abc
import importlib.machinery
import json
import linecache
import lzma
import os
import sys

CONFIG = json.loads("""{config}""")
'''

_LOADER = '''

class _Embedded(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the embedded golfmodel modules (first on sys.meta_path)."""

    def find_spec(self, name, path=None, target=None):
        if name not in _SOURCES:
            return None
        is_pkg = _SOURCES[name][0]
        spec = importlib.machinery.ModuleSpec(name, self, is_package=is_pkg)
        spec.origin = os.path.join(os.path.abspath(__file__), *name.split(".")) + ("/__init__.py" if is_pkg else ".py")
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def get_source(self, name):
        return _SOURCES[name][1]  # tracebacks show embedded lines (linecache asks the loader)

    def exec_module(self, module):
        src = _SOURCES[module.__name__][1]
        filename = module.__spec__.origin
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(src, filename, "exec"), module.__dict__)


def _excepthook(kind, value, tb):
    import traceback  # the default hook reads source files from disk; this one asks linecache (and _Embedded)

    traceback.print_exception(kind, value, tb)


def _dump_sources(folder):
    for name, (is_pkg, src) in _SOURCES.items():
        path = os.path.join(folder, *name.split(".")) + ("/__init__.py" if is_pkg else ".py")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)
    print(f"wrote {len(_SOURCES)} modules under {folder}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--dump-sources"] and len(argv) == 2:
        _dump_sources(argv[1])
        return 0
    sys.meta_path.insert(0, _Embedded())
    sys.excepthook = _excepthook
    for name in [m for m in sys.modules if m == "golfmodel" or m.startswith("golfmodel.")]:
        del sys.modules[name]  # an installed golfmodel imported earlier must not shadow the embedded one
    from golfmodel.export.runner import main as run

    return run(CONFIG, argv, os.environ, os.path.abspath(__file__))


if __name__ == "__main__":
    sys.exit(main())
'''


def placeholder_config() -> dict[str, Any]:
    """The configuration of a script written before the run exists (same size as any other, by padding)."""
    return {"format": 1, "placeholder": True}


def build_script(config: dict[str, Any] | None = None, *, style: Style = DEFAULT_STYLE) -> str:
    """The text of train_gpt.py for `config` (a `runner` configuration; None = a placeholder)."""
    if style not in ("plain", "xz"):
        raise ValueError(f"style must be 'plain' or 'xz', got {style!r}")
    modules = collect_modules()
    head = _HEADER.replace("{config}", pad_config(config if config is not None else placeholder_config()))
    body = _encode_plain(modules) if style == "plain" else _encode_xz(modules)
    return head + "\n" + body + "\n" + _LOADER


def write_script(
    path: str | os.PathLike[str], config: dict[str, Any] | None = None, *, style: Style = DEFAULT_STYLE
) -> Path:
    """Write train_gpt.py atomically (UTF-8, `\\n` line ends); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = build_script(config, style=style).encode("utf-8")
    atomic_write_bytes(path, data)
    return path


def code_bytes(*, style: Style = DEFAULT_STYLE) -> int:
    """Bytes of train_gpt.py for this golfmodel source (any configuration: it is padded to a fixed size)."""
    return len(build_script(None, style=style).encode("utf-8"))
