"""Record what a vLLM-like server answers to a fixed request set, as a client or scraper sees it.

The observation keeps what a client or a scraper depends on and drops what legitimately varies
between two runs or two engines (generated text, timestamps, random ids, metric values, how many
SSE events the tokens were cut into):

- status and content type of every answer, and whether ``X-Request-Id`` is echoed;
- JSON bodies as a *shape*: the keys whose value is not null, list lengths, and the values of the
  fields a client branches on (``object``, ``finish_reason``, ``role``, error ``type``/``param``/
  ``code``); an id made from the client's ``X-Request-Id`` is recorded as such;
- SSE streams as the sequence of event shapes with consecutive repeats collapsed (vLLM merges
  tokens into one event when its HTTP handler falls behind), plus the terminator;
- ``/metrics`` and ``/metrics/`` under several ``Accept`` headers: content type, the families with
  their type and label-name sets, and which name prefixes ``# TYPE`` lines and samples use.

``python -m sidecar.realvllm.record URL OUT.json`` writes a recording; the calibration test sends
the same set to the emulator and compares.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MODEL = "tiny-llama"
KEPT_VALUES = frozenset({"object", "finish_reason", "role", "type", "param", "code"})
REQUEST_ID = "calibration-id-1"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
SCRAPER_ACCEPT = "text/plain; version=0.0.4; charset=utf-8, */*;q=0.1"


@dataclass(frozen=True)
class Case:
    """One request of the fixed set."""

    name: str
    path: str
    body: dict[str, Any] | str | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


def _chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Calibrate me."}],
        "max_tokens": 6,
        "temperature": 0,
        "ignore_eos": True,
        **extra,
    }


def _completion(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": "Calibrate", "max_tokens": 6, "ignore_eos": True, **extra}


USAGE = {"include_usage": True}
CASES: tuple[Case, ...] = (
    Case("health", "/health", method="GET"),
    Case("version", "/version", method="GET"),
    Case("models", "/v1/models", method="GET"),
    Case("chat", "/v1/chat/completions", _chat(), headers={"X-Request-Id": REQUEST_ID}),
    Case("chat_n2", "/v1/chat/completions", _chat(n=2)),
    Case("chat_stream", "/v1/chat/completions", _chat(stream=True)),
    Case("chat_stream_usage", "/v1/chat/completions", _chat(stream=True, stream_options=USAGE)),
    Case(
        "chat_stream_continuous_usage",
        "/v1/chat/completions",
        _chat(stream=True, stream_options={**USAGE, "continuous_usage_stats": True}),
    ),
    Case("completion", "/v1/completions", _completion()),
    Case(
        "completion_stream_usage", "/v1/completions", _completion(stream=True, stream_options=USAGE)
    ),
    Case("error_unknown_model", "/v1/chat/completions", _chat(model="nope")),
    Case("error_unknown_model_stream", "/v1/chat/completions", _chat(model="nope", stream=True)),
    Case("error_max_tokens_too_large", "/v1/chat/completions", _chat(max_tokens=100000)),
    Case(
        "error_max_tokens_too_large_stream",
        "/v1/completions",
        _completion(max_tokens=100000, stream=True),
    ),
    Case("error_prompt_too_long", "/v1/completions", _completion(prompt=[7] * 5000)),
    Case("error_negative_max_tokens", "/v1/chat/completions", _chat(max_tokens=-1)),
    Case(
        "error_stream_options_without_stream",
        "/v1/chat/completions",
        _chat(stream_options=USAGE),
    ),
    Case("error_bad_json", "/v1/chat/completions", '{"model": "tiny-llama", "messages": ['),
    Case("error_missing_messages", "/v1/chat/completions", {"model": MODEL}),
    Case("error_get_on_post_route", "/v1/chat/completions", method="GET"),
    Case("error_unknown_route", "/v1/nothing", {}),
    Case("metrics", "/metrics", method="GET"),
    Case("metrics_scraper_accept", "/metrics", method="GET", headers={"Accept": SCRAPER_ACCEPT}),
    Case("metrics_openmetrics_accept", "/metrics", method="GET", headers={"Accept": OPENMETRICS}),
    Case("metrics_slash", "/metrics/", method="GET"),
    Case("metrics_slash_openmetrics", "/metrics/", method="GET", headers={"Accept": OPENMETRICS}),
)


def shape(value: Any, key: str | None = None) -> Any:
    """The client-relevant skeleton of a JSON value (see module docstring)."""
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if key == "id" and isinstance(value, str):
        return "<client request id>" if value.endswith(REQUEST_ID) else "<id>"
    if key in KEPT_VALUES:
        return value
    return type(value).__name__


def sse_shape(body: bytes) -> dict[str, Any]:
    """Event shapes in order, consecutive repeats collapsed; the terminator; stray lines."""
    events: list[Any] = []
    other_lines: list[str] = []
    done = False
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        if not block.startswith("data: ") or "\n" in block:
            other_lines.append(block.split(":", 1)[0])
            continue
        data = block[len("data: ") :]
        if data == "[DONE]":
            done = True
            continue
        event = shape(json.loads(data))
        if not events or events[-1] != event:
            events.append(event)
    return {"events": events, "done": done, "other_lines": sorted(set(other_lines))}


TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$")
SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s")
LABEL_NAME = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def metrics_shape(body: bytes) -> dict[str, Any]:
    """Families (name -> type, label-name sets of their samples) and name prefixes used."""
    families: dict[str, dict[str, Any]] = {}
    current: str | None = None
    type_prefixes: set[str] = set()
    sample_prefixes: set[str] = set()
    for line in body.decode().splitlines():
        typed = TYPE_LINE.match(line)
        if typed:
            current = typed.group(1)
            families[current] = {"type": typed.group(2), "labels": set()}
            type_prefixes.add(_prefix(current))
            continue
        if line.startswith("#") or not line.strip() or current is None:
            continue
        sample = SAMPLE_NAME.match(line)
        if sample:
            sample_prefixes.add(_prefix(sample.group(1)))
            labels = tuple(sorted(set(LABEL_NAME.findall(sample.group(3) or "")) - {"le"}))
            families[current]["labels"].add(",".join(labels))
    return {
        "families": {
            name: {"type": fam["type"], "labels": sorted(fam["labels"])}
            for name, fam in sorted(families.items())
        },
        "type_prefixes": sorted(type_prefixes),
        "sample_prefixes": sorted(sample_prefixes),
        "eof": body.rstrip().endswith(b"# EOF"),
    }


def _prefix(name: str) -> str:
    return "vllm:" if name.startswith("vllm:") else "vllm_" if name.startswith("vllm_") else "other"


def observe(base_url: str, case: Case) -> dict[str, Any]:
    """Send one case and keep what matters of the answer."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    headers = dict(case.headers)
    body: bytes | None = None
    if case.body is not None:
        raw = case.body if isinstance(case.body, str) else json.dumps(case.body)
        body = raw.encode()
        headers["Content-Type"] = "application/json"
    try:
        connection.request(case.method, case.path, body=body, headers=headers)
        reply = connection.getresponse()
        payload = reply.read()
    finally:
        connection.close()
    content_type = (reply.getheader("Content-Type") or "").lower().replace(" ", "")
    seen: dict[str, Any] = {
        "status": reply.status,
        "content_type": content_type,
        "echoes_request_id": reply.getheader("X-Request-Id") is not None,
    }
    if case.path.startswith("/metrics"):
        seen["page"] = metrics_shape(payload)
    elif content_type.startswith("text/event-stream"):
        seen["stream"] = sse_shape(payload)
    elif content_type.startswith("application/json"):
        seen["json"] = shape(json.loads(payload))
    else:
        seen["body_bytes"] = len(payload)
    return seen


def record(base_url: str) -> dict[str, Any]:
    """Every case's observation, in order, keyed by case name."""
    return {case.name: observe(base_url, case) for case in CASES}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sidecar.realvllm.record", description=__doc__)
    parser.add_argument("url", help="base URL of the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.write_text(json.dumps(record(args.url), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
