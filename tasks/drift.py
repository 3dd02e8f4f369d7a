"""Nightly drift check: this run's final bpb and artifact bytes against the previous successful
nightly of the same settings (and a pinned reference, when the settings hold one).

Where the previous numbers live: each successful checked run publishes them as a Prefect table
artifact under the key `golf-nightly-<comparable settings hash>`; the latest version of that
key is the previous successful nightly. Same settings = the same `comparable_hash`: every
section except `pipeline` and `drift` (where runs go and how they are checked do not change
the numbers) and `preset` (a name). A run whose check fails publishes nothing, so it never
becomes the baseline; it publishes a `golf-drift` markdown artifact with both runs side by side.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from golf.settings import Settings
from golf.tasks.cache import sha256_json

BASELINE_PREFIX = "golf-nightly-"
DRIFT_KEY = "golf-drift"


@dataclass(frozen=True, kw_only=True)
class NightlyNumbers:
    """What a nightly is compared on, and which run it came from."""

    final_bpb: float
    artifact_bytes: int
    run: str
    flow_run_id: str = ""


def comparable_hash(settings: Settings) -> str:
    """Hash of the settings that shape the numbers (all but `pipeline`, `drift` and `preset`)."""
    d = settings.model_dump(mode="json")
    for k in ("pipeline", "drift", "preset"):
        d.pop(k, None)
    return sha256_json(d)


def baseline_key(settings: Settings) -> str:
    return f"{BASELINE_PREFIX}{comparable_hash(settings)[:24]}"


def should_check(settings: Settings, in_deployment: bool) -> bool:
    """`drift.check`: deployment (the nightly) → only runs of a deployment; always; off."""
    mode = settings.drift.check
    return mode == "always" or (mode == "deployment" and in_deployment)


def compare(current: NightlyNumbers, previous: NightlyNumbers | None, settings: Settings) -> list[str]:
    """The drifts beyond the tolerances, one sentence each (empty = no drift)."""
    d = settings.drift
    problems: list[str] = []
    against: list[tuple[str, float | None, int | None]] = []
    if previous is not None:
        against.append((f"the previous nightly {previous.run}", previous.final_bpb, previous.artifact_bytes))
    if d.reference_bpb is not None or d.reference_bytes is not None:
        against.append(("the pinned reference", d.reference_bpb, d.reference_bytes))
    for name, bpb, nbytes in against:
        if bpb is not None and abs(current.final_bpb - bpb) > d.bpb_tolerance:
            problems.append(
                f"final bpb {current.final_bpb:.4f} vs {bpb:.4f} of {name} "
                f"(Δ {current.final_bpb - bpb:+.4f}, tolerance ±{d.bpb_tolerance:g})"
            )
        if nbytes is not None and abs(current.artifact_bytes - nbytes) > d.bytes_tolerance:
            problems.append(
                f"artifact {current.artifact_bytes:,} bytes vs {nbytes:,} of {name} "
                f"(Δ {current.artifact_bytes - nbytes:+,}, tolerance ±{d.bytes_tolerance:,})"
            )
    return problems


def side_by_side(
    current: NightlyNumbers, previous: NightlyNumbers | None, settings: Settings, problems: list[str]
) -> str:
    """Markdown: this run, the previous nightly and the pinned reference in one table, then the verdict."""
    d = settings.drift
    cols = [("this run", current.run, current.final_bpb, current.artifact_bytes)]
    if previous is not None:
        cols.append(("previous nightly", previous.run, previous.final_bpb, previous.artifact_bytes))
    if d.reference_bpb is not None or d.reference_bytes is not None:
        cols.append(("pinned reference", "settings drift.reference_*", d.reference_bpb, d.reference_bytes))

    def fmt(v: Any) -> str:
        return "—" if v is None else (f"{v:.4f}" if isinstance(v, float) else f"{v:,}")

    lines = [
        "# golf nightly drift check",
        "",
        "| | " + " | ".join(c[0] for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
        "| run | " + " | ".join(f"`{c[1]}`" for c in cols) + " |",
        "| final bpb | " + " | ".join(fmt(c[2]) for c in cols) + " |",
        "| artifact bytes | " + " | ".join(fmt(c[3]) for c in cols) + " |",
        "",
        f"Tolerances: ±{d.bpb_tolerance:g} bpb, ±{d.bytes_tolerance:,} bytes.",
        "",
        ("**Drift:** " + "; ".join(problems)) if problems else "No drift.",
    ]
    return "\n".join(lines) + "\n"


def previous_nightly(key: str) -> NightlyNumbers | None:
    """The latest published numbers under `key` (the previous successful nightly), or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    if not found:
        return None
    data = found[0].data
    row = (json.loads(data) if isinstance(data, str) else data)[0]
    return NightlyNumbers(**{k: row[k] for k in NightlyNumbers.__dataclass_fields__ if k in row})


def publish_nightly(key: str, numbers: NightlyNumbers) -> None:
    """Publish this run's numbers as the new baseline of `key`."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=[asdict(numbers)], key=key, description="golf nightly baseline (drift check)")


def publish_side_by_side(markdown: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=DRIFT_KEY, description="golf nightly drift check")
