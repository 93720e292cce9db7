"""Which sampled requests a replay re-sends, read through the ``samples`` DuckDB view.

Only chat and completions requests are replayed, as recorded (``stream`` included). Records whose
request body was truncated by the sampler, or is not a JSON object, cannot be re-sent faithfully
and are counted as skipped instead. Order is by start time, then id, so ``--limit`` is stable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.samples.dataset import open_dataset
from sidecar.samples.timespec import TimeRange
from sidecar.sampling.layout import slug

REPLAYABLE_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
ITEM_SQL = """
SELECT request_id, endpoint, stream, truncated, model_name, sample_reason, request
FROM samples WHERE {where} ORDER BY started_at_unix, request_id
"""


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """One request to re-send: the original's id, path, streaming flag and body."""

    request_id: str
    endpoint: str
    stream: bool
    body: dict[str, Any]
    model_name: str
    sample_reason: str


@dataclass(slots=True)
class ReplaySelection:
    """The items to send and how many records were left out, by reason."""

    items: list[ReplayItem] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _body(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _problem(
    duplicate: bool, endpoint: str, truncated: bool, body: dict[str, Any] | None
) -> str | None:
    if duplicate:
        return "duplicate id"
    if endpoint not in REPLAYABLE_ENDPOINTS:
        return f"endpoint {endpoint}"
    if truncated:
        return "request truncated by the sampler"
    if body is None:
        return "request is not a JSON object"
    return None


def select_items(
    root: Path,
    time_range: TimeRange,
    model: str | None = None,
    where: str | None = None,
    limit: int | None = None,
) -> ReplaySelection:
    """The replayable records under ``root`` in range (and matching ``where``), oldest first."""
    clauses: list[str] = ["status IS NOT NULL"]
    params: list[Any] = []
    if time_range.start is not None:
        clauses.append("started_at_unix >= ?")
        params.append(time_range.start)
    if time_range.end is not None:
        clauses.append("started_at_unix < ?")
        params.append(time_range.end)
    if model:
        clauses.append("(model_name = ? OR model = ?)")
        params.extend([model, slug(model)])
    if where:
        clauses.append(f"({where})")
    dataset = open_dataset(root, time_range, slug(model) if model else None)
    selection = ReplaySelection()
    try:
        cursor = dataset.connection.execute(ITEM_SQL.format(where=" AND ".join(clauses)), params)
        seen: set[str] = set()
        while batch := cursor.fetchmany(4096):
            for request_id, endpoint, stream, truncated, model_name, reason, raw in batch:
                body = _body(raw)
                problem = _problem(request_id in seen, endpoint, truncated, body)
                if problem is not None:
                    selection.skip(problem)
                elif body is not None:
                    seen.add(request_id)
                    selection.items.append(
                        ReplayItem(
                            request_id,
                            endpoint,
                            bool(stream),
                            body,
                            str(model_name or body.get("model") or "unknown"),
                            str(reason or "random"),
                        )
                    )
                if limit is not None and len(selection.items) >= limit:
                    return selection
    finally:
        dataset.close()
    return selection
