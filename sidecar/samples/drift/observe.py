"""From records to the columns drift compares, for one window.

Only ``sample_reason = 'random'`` records are used: records kept by a keep-rule (errors,
``length`` finishes, slow requests) are there *because* of what drift measures and would bias
every share. Each record weighs ``1 / sample_rate``. A response is *ok* when the client got a
status below 400 and the proxy saw no failure; length, finish reasons, empty answers, refusals,
JSON validity and latency are judged over ok responses, the error share over all. A client that
went away first (status 499) is a *client abort*, counted apart from errors: a server that got
worse and clients that grew impatient are different findings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sidecar.samples.dataset import CLIENT_CLOSED
from sidecar.samples.prompts import is_refusal, is_valid_json, load_request, wants_json
from sidecar.samples.windows import Window

ROW_SQL = """
SELECT started_at_unix, sample_rate, status, error, finish_reason, output_chars,
       completion_tokens, ttft_seconds, e2e_seconds, model_name, deployment, vllm_version,
       sidecar_version, request, response_text,
       coalesce(json_array_length(response, '$.choices[0].tool_calls'), 0) AS tool_calls
FROM samples WHERE sample_reason = 'random' AND {where}
"""
KEPT_SQL = "SELECT count(*) FROM samples WHERE sample_reason <> 'random' AND {where}"
NO_FINISH = "(none)"


@dataclass(frozen=True, slots=True)
class Observations:
    """Parallel arrays, one entry per record of a window."""

    weight: npt.NDArray[np.float64]
    ok: npt.NDArray[np.bool_]
    error: npt.NDArray[np.bool_]
    """vLLM or the proxy failed (status >= 400 other than 499, or a recorded error)."""
    client_abort: npt.NDArray[np.bool_]
    """The client went away first (status 499)."""
    output_chars: npt.NDArray[np.float64]
    completion_tokens: npt.NDArray[np.float64]
    """NaN where the record has no usage."""
    finish_reason: npt.NDArray[np.str_]
    empty: npt.NDArray[np.bool_]
    refusal: npt.NDArray[np.bool_]
    json_requested: npt.NDArray[np.bool_]
    json_valid: npt.NDArray[np.bool_]
    ttft: npt.NDArray[np.float64]
    """NaN where the proxy saw no first byte."""
    e2e: npt.NDArray[np.float64]

    @property
    def size(self) -> int:
        return int(self.weight.size)


@dataclass(slots=True)
class WindowSummary:
    """What a window turned out to contain, for the table header and the report."""

    label: str
    window: Window
    records: int = 0
    kept_excluded: int = 0
    first: float | None = None
    last: float | None = None
    models: Counter[str] = field(default_factory=Counter)
    deployments: Counter[str] = field(default_factory=Counter)
    vllm_versions: Counter[str] = field(default_factory=Counter)
    sidecar_versions: Counter[str] = field(default_factory=Counter)
    sample_rates: Counter[float] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "window": self.window.text,
            "describe": self.window.describe(),
            "records": self.records,
            "kept_excluded": self.kept_excluded,
            "first": self.first,
            "last": self.last,
            "models": dict(self.models),
            "deployments": dict(self.deployments),
            "vllm_versions": dict(self.vllm_versions),
            "sidecar_versions": dict(self.sidecar_versions),
            "sample_rates": {str(rate): count for rate, count in self.sample_rates.items()},
        }


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _weight(rate: Any) -> float:
    rate_value = _float(rate)
    return 1.0 / rate_value if rate_value > 0 else 1.0


def observations(
    rows: Iterable[Mapping[str, Any]], refusal_openings: Sequence[str]
) -> Observations:
    """Build the arrays from row mappings (the columns of ``ROW_SQL``)."""
    columns: dict[str, list[Any]] = {name: [] for name in Observations.__dataclass_fields__}
    for row in rows:
        status = int(row.get("status") or 0)
        client_abort = status == CLIENT_CLOSED
        error = not client_abort and (status >= 400 or bool(row.get("error")))
        text = row.get("response_text")
        request = load_request(row.get("request"))
        asked_json = wants_json(request)
        columns["weight"].append(_weight(row.get("sample_rate")))
        columns["ok"].append(not error and not client_abort)
        columns["error"].append(error)
        columns["client_abort"].append(client_abort)
        columns["output_chars"].append(_float(row.get("output_chars")))
        columns["completion_tokens"].append(_float(row.get("completion_tokens")))
        columns["finish_reason"].append(str(row.get("finish_reason") or NO_FINISH))
        columns["empty"].append(not (row.get("output_chars") or 0) and not row.get("tool_calls"))
        columns["refusal"].append(is_refusal(text, refusal_openings))
        columns["json_requested"].append(asked_json)
        columns["json_valid"].append(asked_json and is_valid_json(text))
        columns["ttft"].append(_float(row.get("ttft_seconds")))
        columns["e2e"].append(_float(row.get("e2e_seconds")))
    return Observations(
        weight=np.asarray(columns["weight"], dtype=np.float64),
        ok=np.asarray(columns["ok"], dtype=bool),
        error=np.asarray(columns["error"], dtype=bool),
        client_abort=np.asarray(columns["client_abort"], dtype=bool),
        output_chars=np.asarray(columns["output_chars"], dtype=np.float64),
        completion_tokens=np.asarray(columns["completion_tokens"], dtype=np.float64),
        finish_reason=np.asarray(columns["finish_reason"], dtype=np.str_),
        empty=np.asarray(columns["empty"], dtype=bool),
        refusal=np.asarray(columns["refusal"], dtype=bool),
        json_requested=np.asarray(columns["json_requested"], dtype=bool),
        json_valid=np.asarray(columns["json_valid"], dtype=bool),
        ttft=np.asarray(columns["ttft"], dtype=np.float64),
        e2e=np.asarray(columns["e2e"], dtype=np.float64),
    )


def _rows(cursor: Any, summary: WindowSummary) -> Iterator[dict[str, Any]]:
    """Stream rows out of DuckDB, noting what the window holds on the way."""
    names = [column[0] for column in cursor.description]
    while batch := cursor.fetchmany(4096):
        for values in batch:
            row = dict(zip(names, values, strict=True))
            started = float(row["started_at_unix"])
            summary.records += 1
            summary.first = started if summary.first is None else min(summary.first, started)
            summary.last = started if summary.last is None else max(summary.last, started)
            summary.models[str(row["model_name"])] += 1
            summary.deployments[str(row["deployment"] or "(none)")] += 1
            summary.vllm_versions[str(row["vllm_version"] or "(unknown)")] += 1
            summary.sidecar_versions[str(row["sidecar_version"])] += 1
            summary.sample_rates[float(row["sample_rate"] or 0.0)] += 1
            yield row


def load_window(
    connection: Any, window: Window, label: str, refusal_openings: Sequence[str]
) -> tuple[Observations, WindowSummary]:
    """Query the ``samples`` view for one window."""
    where, params = window.sql_filter()
    summary = WindowSummary(label, window)
    cursor = connection.execute(ROW_SQL.format(where=where), params)
    observed = observations(_rows(cursor, summary), refusal_openings)
    kept = connection.execute(KEPT_SQL.format(where=where), params).fetchone()
    summary.kept_excluded = int(kept[0]) if kept else 0
    return observed, summary
