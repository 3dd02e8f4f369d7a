"""The stage graph: each stage's upstream stages and the settings subset that enters its cache key.

Pure logic (no Prefect import). A stage's key holds only the settings that can change its
outputs: `data.retries`, `tokeniser.workers`, `train.timeout_seconds`, `train.log_every` and
`train.threads` do not, so changing them re-runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from golf.settings import STAGES, Settings, settings_hash

UPSTREAM: dict[str, tuple[str, ...]] = {
    "download": (),
    "tokenise": ("download",),
    "bigram": ("tokenise",),
    "train": ("tokenise", "bigram"),
    "recalibrate": ("train", "tokenise"),
    "pack": ("recalibrate",),
    "size_check": ("pack",),
    "validate": ("pack", "tokenise", "bigram"),
    "report": ("bigram", "train", "recalibrate", "pack", "size_check", "validate"),
}
assert tuple(UPSTREAM) == STAGES
# Stages whose cached outputs are re-hashed on every use, not only when their size or mtime changed:
# the packed artifact (16 MB hashes in milliseconds) is what every run reports and what ships.
VERIFY_ALWAYS = frozenset({"pack"})


def _section(settings: Settings, name: str, *, drop: Iterable[str] = ()) -> dict[str, Any]:
    d = getattr(settings, name).model_dump(mode="json")
    for k in drop:
        d.pop(k, None)
    return d


def stage_config(stage: str, settings: Settings) -> dict[str, Any]:
    """The settings subset of `stage` (JSON values) that its cache key is computed from."""
    if stage == "download":
        return {  # where the bytes come from is keyed by content (golf.tasks.inputs), not by path or branch
            "data": _section(settings, "data", drop=("retries", "mirror", "endpoint", "revision")),
            "source": "mirror" if settings.data.mirror is not None else "hub",
            # docs_selected.jsonl is fetched only when the tokeniser reads the repo's docs
            "docs": settings.tokeniser.source == "docs" and settings.tokeniser.docs is None,
        }
    if stage == "tokenise":
        tok = _section(settings, "tokeniser", drop=("workers",))
        if tok["docs"] is not None and not tok["docs"].startswith("fineweb:"):
            tok["docs"] = "file"  # a local document file is keyed by its content (golf.tasks.inputs)
        return {"tokeniser": tok, "data_variant": settings.data.variant}
    if stage == "bigram":
        return {"vocab_size": settings.vocab_size}
    if stage == "train":
        quant = _section(settings, "quant", drop=("recalibrate", "calib_batches"))
        train = _section(settings, "train", drop=("timeout_seconds", "log_every", "threads"))
        cfg: dict[str, Any] = {"model": _section(settings, "model"), "quant": quant, "train": train}
        if settings.model.solve:  # the solver sizes the model for the byte budget
            cfg["budget_bytes"] = settings.pack.budget_bytes
        return cfg
    if stage == "recalibrate":
        q = settings.quant
        return {"recalibrate": q.recalibrate, "calib_batches": q.calib_batches, "tau_method": q.tau_method}
    if stage == "pack":
        return {"linear_kind": settings.pack.linear_kind}
    if stage == "size_check":
        return {"budget_bytes": settings.pack.budget_bytes}
    if stage == "validate":
        return {"eval": _section(settings, "eval")}
    if stage == "report":
        return {"settings": settings_hash(settings)}
    raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def needed_stages(selected: Iterable[str]) -> list[str]:
    """The selected stages plus everything upstream of them, in pipeline order."""
    need: set[str] = set()
    todo = list(selected)
    while todo:
        s = todo.pop()
        if s not in UPSTREAM:
            raise ValueError(f"unknown stage {s!r}; stages: {', '.join(STAGES)}")
        if s not in need:
            need.add(s)
            todo.extend(UPSTREAM[s])
    return [s for s in STAGES if s in need]


def select_stages(stages: Iterable[str] | None, from_stage: str | None, default: Iterable[str]) -> list[str]:
    """Which stages run: `stages`, or every stage from `from_stage` on, or `default`; pipeline order."""
    if stages is not None and from_stage is not None:
        raise ValueError("give either --stages or --from, not both")
    if from_stage is not None:
        if from_stage not in STAGES:
            raise ValueError(f"--from {from_stage!r}: unknown stage; stages: {', '.join(STAGES)}")
        chosen = set(STAGES[STAGES.index(from_stage) :])
    else:
        chosen = set(stages if stages is not None else default)
    unknown = sorted(chosen - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    if not chosen:
        raise ValueError("no stages selected")
    return [s for s in STAGES if s in chosen]
