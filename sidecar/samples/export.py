"""``export``: records as a flat CSV or JSON-lines file a labelling tool can import.

One row per record: the id, the prompt rendered as text, the answer, the facts a labeller filters
on (model, deployment, finish reason, tokens, latency, versions) and two empty columns,
``label`` and ``comment``, for spreadsheet-style review. JSON lines also carry the chat
``messages`` as a list, which tools such as Label Studio can show turn by turn. ``random``
order is a deterministic shuffle (hash of the id and ``seed``), so a fixed review set can be
re-exported.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

from sidecar.samples.output import open_target, plain
from sidecar.samples.prompts import is_refusal, load_request, messages, prompt_text, wants_json

ExportFormat = Literal["csv", "jsonl"]
Order = Literal["time", "random"]
EXPORT_COLUMNS = (
    "id",
    "started_at",
    "model_name",
    "deployment",
    "endpoint",
    "prompt",
    "response",
    "finish_reason",
    "status",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "output_chars",
    "ttft_seconds",
    "e2e_seconds",
    "json_requested",
    "refusal_opening",
    "sample_reason",
    "sample_rate",
    "vllm_version",
    "sidecar_version",
    "pod",
    "key_name",
    "label",
    "comment",
)
_SELECT = """
SELECT request_id, started_at, model_name, deployment, endpoint, request, response_text,
       finish_reason, status, error, prompt_tokens, completion_tokens, output_chars,
       ttft_seconds, e2e_seconds, sample_reason, sample_rate, vllm_version, sidecar_version,
       pod, key_name
FROM samples WHERE {where}
"""


def export_rows(
    connection: Any,
    *,
    where: str = "TRUE",
    params: list[Any] | None = None,
    order: Order = "time",
    seed: int = 0,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One flat dict per selected record (plus ``messages``), in the requested order."""
    ordering = "hash(request_id || ?)" if order == "random" else "started_at, request_id"
    sql = _SELECT.format(where=where) + f" ORDER BY {ordering}"
    arguments = list(params or [])
    if order == "random":
        arguments.append(str(seed))
    if limit is not None:
        sql += " LIMIT ?"
        arguments.append(limit)
    cursor = connection.execute(sql, arguments)
    names = [column[0] for column in cursor.description]
    while batch := cursor.fetchmany(1024):
        for row in batch:
            values = dict(zip(names, row, strict=True))
            request = load_request(values["request"])
            text = values["response_text"]
            yield {
                "id": values["request_id"],
                "started_at": plain(values["started_at"], json_text=False),
                "model_name": values["model_name"],
                "deployment": values["deployment"],
                "endpoint": values["endpoint"],
                "prompt": prompt_text(request),
                "response": text or "",
                "finish_reason": values["finish_reason"],
                "status": values["status"],
                "error": values["error"],
                "prompt_tokens": values["prompt_tokens"],
                "completion_tokens": values["completion_tokens"],
                "output_chars": values["output_chars"],
                "ttft_seconds": values["ttft_seconds"],
                "e2e_seconds": values["e2e_seconds"],
                "json_requested": wants_json(request),
                "refusal_opening": is_refusal(text),
                "sample_reason": values["sample_reason"],
                "sample_rate": values["sample_rate"],
                "vllm_version": values["vllm_version"],
                "sidecar_version": values["sidecar_version"],
                "pod": values["pod"],
                "key_name": values["key_name"],
                "label": "",
                "comment": "",
                "messages": [{"role": role, "content": body} for role, body in messages(request)],
            }


def write_export(rows: Iterator[dict[str, Any]], fmt: ExportFormat, handle: TextIO) -> int:
    """Write rows as CSV (header line, no ``messages``) or JSON lines; returns the count."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(
            handle, fieldnames=EXPORT_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(value) for key, value in row.items()})
            count += 1
        return count
    for row in rows:
        handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        count += 1
    return count


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def export_to(path: Path | None, fmt: ExportFormat, rows: Iterator[dict[str, Any]]) -> int:
    """Export to ``path`` (atomically) or stdout."""
    with open_target(path, sys.stdout) as handle:
        return write_export(rows, fmt, handle)
