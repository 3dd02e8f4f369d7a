"""Stage fingerprints: the sources of the modules a stage runs, plus the versions of the packages they use.

Pure logic (no Prefect import). SPEC §8 (revision 2): a stage's cache key holds a fingerprint of
the code that can change its outputs — not all of `golfmodel/` (editing a bench docstring must
not invalidate an 8×H100 training stage), and not only the task's own file (a scorer fix must
invalidate cached scores). So:

- the module set is found statically: start at the stage's task module (`golf.tasks.<stage>`)
  plus its declared **entry modules** (what its subprocesses run: `-m golfmodel.train` is
  `golfmodel.train.__main__`; `-m golfmodel.eval` the evaluation entry), and follow every
  `import` / `from … import` of a `golfmodel.*` or `golf.*` module, including imports inside
  functions (the tasks import the library lazily) and parent packages (their `__init__` runs);
- orchestration plumbing that cannot change a stage's bytes is not followed (`PLUMBING`: the
  cache itself, logging and run folders, the subprocess runner, the settings schema — settings
  *values* reach the key through the stage's settings subset, and `golf.settings.convert`, which
  turns them into library configs, is followed);
- third-party imports of those modules give the distributions whose installed versions enter
  the fingerprint (with Python's own version); packages that only orchestrate or draw progress
  bars (`NEUTRAL_PACKAGES`) do not.

An entry module that does not exist yet is skipped when it is declared optional (the evaluation
entry is being added in parallel); a required one that is missing is an error. The standard
library's `modulefinder` is not used: it scans the bytecode of every third-party package it
reaches (all of torch) and executes nothing we need; an AST walk of our own sources is enough.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parent
# import-name prefix → source folder (pyproject's package-dir: the golf namespace maps top-level folders)
PACKAGE_DIRS: dict[str, Path] = {
    "golf.tasks": _HERE,
    "golf.settings": _REPO / "settings",
    "golf.flows": _REPO / "flows",
    "golfmodel": _REPO / "golfmodel",
}
# (module name, optional): what each stage's subprocesses run, which no import from the task reaches
ENTRY_MODULES: dict[str, tuple[tuple[str, bool], ...]] = {
    "train": (("golfmodel.train.__main__", False),),
    "validate": (("golfmodel.eval.__main__", True),),  # `-m golfmodel.eval`, when it exists
    # the size check (and the solver, inside train) count the bytes of the bundled submission script,
    # whose module set the bundle finds from its own root, by name
    "size_check": (("golfmodel.export.runner", False),),
}
# Modules whose edits cannot change a stage's outputs: not followed (not hashed).
PLUMBING = (
    "golf.flows",
    "golf.tasks.cache",
    "golf.tasks.common",
    "golf.tasks.digests",
    "golf.tasks.fingerprint",
    "golf.tasks.inputs",
    "golf.tasks.records",
    "golf.tasks.runs",
    "golf.tasks.subproc",
    "golf.settings",  # the package __init__, schema and loader; golf.settings.convert is followed
    "golf.settings.load",
    "golf.settings.schema",
)
NEUTRAL_PACKAGES = frozenset({"prefect", "tqdm", "rich", "pydantic", "pydantic_settings"})
NOT_INSTALLED = "absent"


class FingerprintError(RuntimeError):
    """A declared or imported module of ours has no source file."""


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """A stage's code fingerprint: `digest` over the module sources (sha256 each) and package versions."""

    stage: str
    digest: str
    modules: dict[str, str] = field(default_factory=dict)  # module name -> sha256 of its source
    versions: dict[str, str] = field(default_factory=dict)  # distribution (and "python") -> version

    def summary(self) -> str:
        """One line: the digest prefix, how many modules, the versions (what a cached stage's log shows)."""
        vers = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        return f"code {self.digest[:12]} ({len(self.modules)} modules; {vers})"


def module_file(name: str) -> tuple[Path, bool] | None:
    """(source file, is_package) of one of our modules, or None (not ours, or no such file)."""
    for prefix, folder in PACKAGE_DIRS.items():
        if name == prefix or name.startswith(prefix + "."):
            rel = Path(*name[len(prefix) :].lstrip(".").split(".")) if name != prefix else Path()
            pkg = folder / rel / "__init__.py"
            if pkg.is_file():
                return pkg, True
            mod = (folder / rel).with_suffix(".py") if rel.parts else None
            if mod is not None and mod.is_file():
                return mod, False
            return None
    return None


def _is_ours(name: str) -> bool:
    return name == "golfmodel" or name.startswith(("golfmodel.", "golf."))


def _plumbing(name: str) -> bool:
    if name == "golf.settings.convert":
        return False
    return any(name == p or (p != "golf.settings" and name.startswith(p + ".")) for p in PLUMBING)


def imports_of(
    source: str, module: str, is_pkg: bool, *, filename: str = "<src>"
) -> tuple[set[str], set[str]]:
    """(our module names, third-party top-level names) imported anywhere in `source`, functions included."""
    ours: set[str] = set()
    third: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in names:
            if _is_ours(n):
                if module_file(n) is not None:  # `from pkg import name`: a module only if its file exists
                    ours.add(n)
            elif n and (root := n.split(".")[0]) not in ("__future__", "golf"):
                third.add(root)
    return ours, third


@functools.lru_cache(maxsize=1024)
def _parsed(
    path: Path, module: str, is_pkg: bool, mtime_ns: int, size: int
) -> tuple[frozenset[str], frozenset[str]]:
    """imports_of one file, parsed once per process per version (the stages share most modules)."""
    ours, third = imports_of(path.read_text(encoding="utf-8"), module, is_pkg, filename=str(path))
    return frozenset(ours), frozenset(third)


def collect(roots: Iterable[str], *, optional: Iterable[str] = ()) -> tuple[dict[str, Path], set[str]]:
    """({module: source file} reachable from `roots`, third-party top-level imports), plumbing excluded."""
    skip_missing = set(optional)
    found: dict[str, Path] = {}
    third: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or _plumbing(name):
            continue
        loc = module_file(name)
        if loc is None:
            if name in skip_missing:
                continue
            raise FingerprintError(f"module {name} is imported or declared but has no source file")
        path, is_pkg = loc
        found[name] = path
        st = path.stat()
        ours, tp = _parsed(path, name, is_pkg, st.st_mtime_ns, st.st_size)
        third |= tp
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if _is_ours(".".join(parts[:i])))
        todo.extend(ours)
    return dict(sorted(found.items())), third


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def versions_of(import_names: Iterable[str]) -> dict[str, str]:
    """Installed versions of the distributions providing `import_names` (stdlib and neutral ones skipped)."""
    out = {"python": platform.python_version()}
    dists = _distributions()
    for name in sorted(set(import_names) - NEUTRAL_PACKAGES - set(sys.stdlib_module_names)):
        for dist in dists.get(name, [name]):
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = NOT_INSTALLED
    return out


def fingerprint(stage: str, roots: Iterable[str], *, optional: Iterable[str] = ()) -> Fingerprint:
    """The fingerprint of the modules reachable from `roots` (see the module docstring)."""
    modules, third = collect(roots, optional=optional)
    sources = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in modules.items()}
    versions = versions_of(third)
    h = hashlib.sha256()
    for name, digest in sources.items():
        h.update(f"{name}\0{digest}\0".encode())
    for dist, version in versions.items():
        h.update(f"{dist}={version}\0".encode())
    return Fingerprint(stage=stage, digest=h.hexdigest(), modules=sources, versions=versions)


@functools.cache
def stage_fingerprint(stage: str) -> Fingerprint:
    """The fingerprint of a pipeline stage: its task module and declared entry modules (once per process)."""
    entries = ENTRY_MODULES.get(stage, ())
    roots = [f"golf.tasks.{stage}", *(name for name, _ in entries)]
    return fingerprint(stage, roots, optional=[name for name, opt in entries if opt])
