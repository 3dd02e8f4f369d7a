"""Prefect artifacts of a run: a small table per stage, and the report with its loss chart inline.

Table artifacts (keys `golf-train-summary`, `golf-size-breakdown`, `golf-bpb`) are created
inside the stage's task, so the UI lists them under that task run and under the flow run; they
are published on a cache hit too, so every run carries its own. The report artifact links them
(`/artifacts/artifact/<id>`, the Prefect UI's route) and embeds images as data URIs (a relative
`![loss](loss.png)` cannot resolve inside the UI).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact
from prefect.states import State

from golf.tasks.cache import StageRecord

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def record_of(result: StageRecord | State[Any]) -> StageRecord | None:
    """The stage record a task body produced: itself, or the data of a Cached state (None if failed)."""
    if isinstance(result, StageRecord):
        return result
    data = getattr(result, "data", None)
    return data if isinstance(data, StageRecord) and result.is_completed() else None


def _cell(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> UUID | None:
    """A Prefect table artifact (rows of scalar cells); None outside a run."""
    from golf.tasks.common import logger

    try:
        return create_table_artifact(
            table=[{k: _cell(v) for k, v in r.items()} for r in rows], key=key, description=description
        )
    except Exception as e:  # MissingContextError in a plain call; the stage's result does not depend on it
        logger().debug("table artifact %s not published: %s", key, e)
        return None


def rows(values: Mapping[str, Any], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """`[{"name": k, "value": v}]` for the scalar entries of `values` (in `names` order when given)."""
    keys = names if names is not None else list(values)
    return [
        {"name": k, "value": values[k]} for k in keys if isinstance(values.get(k), int | float | str | bool)
    ]


def embed_images(markdown: str, folder: Path) -> str:
    """Replace `![alt](file.png)` by a base64 data URI of `folder/file.png` (left as is when absent)."""

    def inline(m: re.Match[str]) -> str:
        path = folder / m.group(2)
        if not path.is_file():
            return m.group(0)
        return f"![{m.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"

    return _IMAGE.sub(inline, markdown)


def artifact_links(flow_run_id: UUID | str, exclude: Sequence[str] = ()) -> str:
    """A markdown list linking this flow run's keyed artifacts (newest version per key)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))]))
        )
    latest: dict[str, Any] = {}
    for a in sorted(found, key=lambda a: a.created or 0):
        if a.key and a.key not in exclude:
            latest[a.key] = a
    return "\n".join(
        f"- [{key}](/artifacts/artifact/{a.id}){' — ' + a.description if a.description else ''}"
        for key, a in latest.items()
    )
