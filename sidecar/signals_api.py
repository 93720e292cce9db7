"""The ``/api/v1/signals`` document, and its JSON Schema (``docs/signals.schema.json``).

Keys are the names of the exported gauges without the ``vllm_sidecar_`` prefix, so they carry
their units (``ttft_seconds``, ``kv_cache_usage_ratio``, ``queue_growth_per_second``) and a
reader of the JSON, a Grafana panel and an alert speak of the same thing by the same name. The
names come from :mod:`sidecar.exporter`'s tables, the only place they are spelt.

A model served by one engine appears once (its engines listed in ``engines``); per-engine
entries follow only for data-parallel models. ``top``, ``demo`` and the admin server all build
the document here. ``python -m sidecar.signals_api`` rewrites the schema file.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sidecar.exporter import INSTANT_GAUGES, LATENCY_GAUGES, WINDOWED_GAUGES
from sidecar.scrape.scraper import ScrapeStatus
from sidecar.signals.derive import QUANTILES, WINDOWS, Signals, TargetSignals

SCHEMA_VERSION = 1
PREFIX = "vllm_sidecar_"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "signals.schema.json"


def key(metric_name: str) -> str:
    """The JSON key of an exported gauge: its name without ``vllm_sidecar_``."""
    return metric_name.removeprefix(PREFIX)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _windows(values: Mapping[str, float | None]) -> dict[str, float | None]:
    return {window: _finite(value) for window, value in values.items()}


def target_json(target: TargetSignals, engines: list[str] | None = None) -> dict[str, Any]:
    """One model (``engine`` null, with its ``engines``) or one data-parallel engine."""
    doc: dict[str, Any] = {"model_name": target.model_name, "engine": target.engine}
    if target.engine is None:
        doc["engines"] = engines or []
    for signal, (name, _) in LATENCY_GAUGES.items():
        by_window = target.latency.get(signal, {})
        doc[key(name)] = {window: _windows(q) for window, q in by_window.items()}
    for attribute, (name, _) in WINDOWED_GAUGES.items():
        doc[key(name)] = _windows(getattr(target, attribute))
    for attribute, (name, _) in INSTANT_GAUGES.items():
        doc[key(name)] = _finite(getattr(target, attribute))
    return doc


def signals_json(signals: Signals | None) -> dict[str, Any] | None:
    """The derived numbers: models first, then engines of data-parallel models."""
    if signals is None:
        return None
    engines: dict[str, list[str]] = {}
    for target in signals.targets:
        if target.engine is not None:
            engines.setdefault(target.model_name, []).append(target.engine)
    targets = [
        target_json(target, engines.get(target.model_name))
        for target in signals.targets
        if target.engine is None or len(engines.get(target.model_name, [])) > 1
    ]
    return {
        "computed_at_unix_seconds": _finite(signals.computed_at),
        "window_seconds": dict(WINDOWS),
        "quantiles": list(QUANTILES),
        "targets": targets,
    }


def document(
    scrape: ScrapeStatus,
    signals: Signals | None,
    sampling: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole ``/api/v1/signals`` body."""
    return {
        "schema_version": SCHEMA_VERSION,
        "scrape": {
            "ready": scrape.ready,
            "last_success_unix_seconds": scrape.last_success_wall,
            "consecutive_failures": scrape.consecutive_failures,
            "last_error": scrape.last_error,
            "missing_metrics": list(scrape.missing_metrics),
            "vllm_version": scrape.vllm_version,
        },
        "signals": signals_json(signals),
        "sampling": sampling() if sampling else None,
    }


_NUMBER = {"type": ["number", "null"]}


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of :func:`document`, from the same name tables."""
    windows = list(WINDOWS)
    per_window = {
        "type": "object",
        "properties": dict.fromkeys(windows, _NUMBER),
        "required": windows,
        "additionalProperties": False,
    }
    per_quantile = {
        "type": "object",
        "properties": dict.fromkeys(QUANTILES, _NUMBER),
        "additionalProperties": False,
    }
    latency = {"type": "object", "additionalProperties": per_quantile}
    target: dict[str, Any] = {
        "model_name": {"type": "string"},
        "engine": _described(
            {"type": ["string", "null"]}, "null: the whole model; else one data-parallel engine."
        ),
        "engines": _described(
            {"type": "array", "items": {"type": "string"}},
            "Model entries only: the engines vLLM labels (empty when it labels none).",
        ),
    }
    for name, doc in LATENCY_GAUGES.values():
        target[key(name)] = _described(latency, f"{doc} Window -> quantile -> seconds.")
    for name, doc in WINDOWED_GAUGES.values():
        target[key(name)] = _described(per_window, f"{doc} Per window; null without data.")
    for name, doc in INSTANT_GAUGES.values():
        target[key(name)] = _described(_NUMBER, f"{doc} Null when not computable.")
    required = [name for name in target if name != "engines"]
    signals = {
        "type": ["object", "null"],
        "properties": {
            "computed_at_unix_seconds": _NUMBER,
            "window_seconds": {"type": "object", "additionalProperties": {"type": "number"}},
            "quantiles": {"type": "array", "items": {"type": "string"}},
            "targets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": target,
                    "required": required,
                    "additionalProperties": False,
                },
            },
        },
        "required": ["computed_at_unix_seconds", "window_seconds", "quantiles", "targets"],
        "additionalProperties": False,
    }
    scrape = {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "last_success_unix_seconds": _NUMBER,
            "consecutive_failures": {"type": "integer"},
            "last_error": {"type": ["string", "null"]},
            "missing_metrics": {"type": "array", "items": {"type": "string"}},
            "vllm_version": {"type": ["string", "null"]},
        },
        "required": ["ready", "missing_metrics", "vllm_version"],
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/vllm-sidecar/vllm-sidecar/docs/signals.schema.json",
        "title": "vllm-sidecar GET /api/v1/signals",
        "description": "Derived vLLM signals. Keys are the exported gauge names without "
        "vllm_sidecar_ (units in the name). Generated by python -m sidecar.signals_api.",
        "type": "object",
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "scrape": scrape,
            "signals": signals,
            "sampling": {"type": ["object", "null"]},
        },
        "required": ["schema_version", "scrape", "signals"],
        "additionalProperties": False,
    }


def render_schema() -> str:
    """The schema file's text."""
    return json.dumps(json_schema(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m sidecar.signals_api [--check]``: write (or compare) docs/signals.schema.json."""
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    text = render_schema()
    current = SCHEMA_FILE.read_text("utf-8") if SCHEMA_FILE.exists() else None
    if current == text:
        return 0
    if check:
        print(f"{SCHEMA_FILE} is out of date: run python -m sidecar.signals_api")
        return 1
    SCHEMA_FILE.write_text(text, "utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
