"""``show ID``: one record, laid out for a person (or as JSON with ``--json``).

The id is matched exactly first, then as a prefix (so the first characters of a long request id
are enough). Client and model text is always rendered as plain text, never as console markup.
"""

from __future__ import annotations

import json
from typing import Any

from sidecar.samples.dataset import CLIENT_CLOSED
from sidecar.samples.output import plain
from sidecar.samples.prompts import load_request, messages

MAX_PREFIX_MATCHES = 20
_META_FIELDS = (
    ("endpoint", "endpoint"),
    ("stream", "stream"),
    ("status", "status"),
    ("error", "error"),
    ("error type", "error_type"),
    ("finish reason", "finish_reason"),
    ("prompt tokens", "prompt_tokens"),
    ("completion tokens", "completion_tokens"),
    ("output chars", "output_chars"),
    ("TTFT", "ttft_seconds"),
    ("end-to-end", "e2e_seconds"),
    ("sample", "sample_reason"),
    ("sample rate", "sample_rate"),
    ("deployment", "deployment"),
    ("pod", "pod"),
    ("vLLM", "vllm_version"),
    ("sidecar", "sidecar_version"),
    ("API key name", "key_name"),
    ("redactions", "redactions"),
    ("truncated", "truncated"),
)


def find_records(connection: Any, record_id: str) -> list[dict[str, Any]]:
    """Records whose ``request_id`` is ``record_id`` (or, failing that, starts with it)."""
    exact = connection.execute("SELECT * FROM samples WHERE request_id = ?", [record_id])
    rows = _as_dicts(exact)
    if rows:
        return rows
    prefixed = connection.execute(
        "SELECT * FROM samples WHERE starts_with(request_id, ?) ORDER BY started_at LIMIT ?",
        [record_id, MAX_PREFIX_MATCHES + 1],
    )
    return _as_dicts(prefixed)


def _as_dicts(cursor: Any) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    kinds = [str(column[1]) for column in cursor.description]
    return [
        {
            name: plain(value, json_text=kind == "JSON")
            for name, kind, value in zip(names, kinds, row, strict=True)
        }
        for row in cursor.fetchall()
    ]


def record_json(record: dict[str, Any]) -> str:
    """The record as pretty JSON (without the view's derived columns)."""
    shown = {key: value for key, value in record.items() if key != "response_text"}
    return json.dumps(shown, indent=2, ensure_ascii=False, default=str)


def render(record: dict[str, Any], console: Any) -> None:
    """Print one record: metadata, the conversation, the answer, any error."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    title = Text.assemble(
        (str(record.get("request_id")), "bold cyan"),
        "  ",
        (str(record.get("model_name") or "?"), "bold"),
        "  ",
        (f"{record.get('started_at') or ''}Z", "dim"),
    )
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="dim", justify="right")
    meta.add_column()
    for label, key in _META_FIELDS:
        value = record.get(key)
        if value is None or value == "":
            continue
        if key.endswith("_seconds") and isinstance(value, int | float):
            value = f"{value * 1000:.0f} ms" if value < 1 else f"{value:.3f} s"
        if key == "status" and value == CLIENT_CLOSED:
            value = f"{value} (client aborted: it went away first; not a server error)"
        meta.add_row(label, Text(str(value)))
    console.print(Panel(meta, title=title, title_align="left"))

    request = load_request(record.get("request"))
    turns = [
        Group(Text(role, style="bold magenta"), Text(text or "(empty)"))
        for role, text in messages(request)
    ]
    console.print(Panel(Group(*turns) if turns else Text("(no prompt)"), title="prompt"))
    parameters = {
        key: value
        for key, value in request.items()
        if key not in ("messages", "prompt", "input", "raw")
    }
    if parameters:
        text = json.dumps(parameters, indent=2, ensure_ascii=False)
        console.print(Panel(Syntax(text, "json", word_wrap=True), title="request parameters"))

    response = record.get("response") or {}
    for choice in response.get("choices") or []:
        parts: list[Any] = []
        if choice.get("reasoning"):
            parts += [Text("reasoning", style="bold"), Text(choice["reasoning"], style="dim")]
        parts.append(Text(choice.get("text") or "(empty)"))
        if choice.get("tool_calls"):
            calls = json.dumps(choice["tool_calls"], indent=2, ensure_ascii=False)
            parts.append(Syntax(calls, "json", word_wrap=True))
        label = f"answer #{choice.get('index', 0)} (finish: {choice.get('finish_reason')})"
        console.print(Panel(Group(*parts), title=label, border_style="green"))
    if response.get("error"):
        error = json.dumps(response["error"], indent=2, ensure_ascii=False)
        console.print(Panel(Syntax(error, "json"), title="error", border_style="red"))
    if response.get("raw"):
        console.print(Panel(Text(response["raw"]), title="raw body", border_style="red"))
    if response.get("usage"):
        console.print(Text("usage " + json.dumps(response["usage"]), style="dim"))
