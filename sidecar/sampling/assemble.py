"""Turn the bytes the proxy relayed into one answer: text per choice, finish reason, usage, error.

Three shapes arrive here and all end in the record's own
:class:`~sidecar.sampling.schema.ResponseRecord` (not yet redacted), so redaction and the record
never care which path produced it: an SSE stream (chat or legacy completions,
with optional usage chunk and in-band error events), a JSON body (success or error, new nested
and old flat error shapes), or anything else (kept as raw text). Parsing is lenient: a malformed
event is counted and skipped, never raised, and raw SSE events are never stored.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Sequence
from typing import Any

from sidecar.sampling.schema import ChoiceRecord, ErrorRecord, ResponseRecord, ToolCallRecord


def finish_reason(response: ResponseRecord) -> str | None:
    """The first choice's finish reason (the usual ``n=1`` case)."""
    return response.choices[0].finish_reason if response.choices else None


def output_chars(response: ResponseRecord) -> int:
    """Characters of generated text over all choices (content and reasoning)."""
    return sum(len(choice.text) + len(choice.reasoning or "") for choice in response.choices)


GZIP_MAGIC = b"\x1f\x8b"
MAX_INFLATED_BYTES = 64 * 1024 * 1024
"""A gzip body inflates to at most this much (a bomb is cut, not followed)."""


def decode(chunks: Sequence[bytes | bytearray] | bytes) -> str:
    """Bytes to text, a gzip Content-Encoding the proxy relayed as is undone (anything that does
    not inflate stays as it is); invalid UTF-8 becomes U+FFFD rather than an error."""
    data = chunks if isinstance(chunks, bytes) else b"".join(chunks)
    if data.startswith(GZIP_MAGIC):
        with contextlib.suppress(zlib.error):
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            data = inflater.decompress(data, MAX_INFLATED_BYTES)
    return data.decode("utf-8", errors="replace")


def parse_json_body(text: str) -> Any:
    """The JSON value in ``text``, or None when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


class _Builder:
    """Accumulates choices across SSE events or a single JSON body."""

    def __init__(self) -> None:
        self.result = ResponseRecord()
        self.by_index: dict[int, ChoiceRecord] = {}
        self._tools: dict[tuple[int, int], ToolCallRecord] = {}

    def choice(self, index: int) -> ChoiceRecord:
        if index not in self.by_index:
            self.by_index[index] = ChoiceRecord(index=index, text="")
        return self.by_index[index]

    def add_tool_delta(self, choice: ChoiceRecord, delta: dict[str, Any]) -> None:
        position = delta.get("index")
        key = (choice.index, position if isinstance(position, int) else len(choice.tool_calls))
        call = self._tools.get(key)
        if call is None:
            call = self._tools[key] = ToolCallRecord()
            choice.tool_calls.append(call)
        if isinstance(delta.get("id"), str):
            call.id = delta["id"]
        function = delta.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                call.name += function["name"]
            if isinstance(function.get("arguments"), str):
                call.arguments += function["arguments"]

    def add_choice(self, raw: dict[str, Any], *, streamed: bool) -> None:
        index = raw.get("index", 0)
        choice = self.choice(index if isinstance(index, int) else 0)
        part = raw.get("delta") if streamed else raw.get("message")
        if isinstance(part, dict):
            if isinstance(part.get("content"), str):
                choice.text += part["content"]
            for name in ("reasoning_content", "reasoning"):
                if isinstance(part.get(name), str):
                    choice.reasoning = (choice.reasoning or "") + part[name]
                    break
            calls = part.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self.add_tool_delta(choice, call)
        if isinstance(raw.get("text"), str):  # legacy /v1/completions
            choice.text += raw["text"]
        if isinstance(raw.get("finish_reason"), str):
            choice.finish_reason = raw["finish_reason"]

    def add_object(self, body: dict[str, Any], *, streamed: bool) -> bool:
        """Fold one response object in; False when it has no known shape."""
        known = False
        if (error := error_of(body)) is not None:
            self.result.error = error
            known = True
        choices = body.get("choices")
        if isinstance(choices, list):
            known = True
            for raw in choices:
                if isinstance(raw, dict):
                    self.add_choice(raw, streamed=streamed)
        if isinstance(body.get("usage"), dict):
            self.result.usage = body["usage"]
            known = True
        return known

    def finish(self) -> ResponseRecord:
        self.result.choices = [self.by_index[index] for index in sorted(self.by_index)]
        return self.result


def _error(message: Any, kind: Any, code: Any) -> ErrorRecord:
    return ErrorRecord(
        message=message if isinstance(message, str) else json.dumps(message),
        type=kind if isinstance(kind, str) else None,
        code=code if isinstance(code, int | str) and not isinstance(code, bool) else None,
    )


def error_of(body: dict[str, Any]) -> ErrorRecord | None:
    """The error in a body: nested (OpenAI, vLLM), old flat ``object: error``, or a plain string."""
    nested = body.get("error")
    if isinstance(nested, dict):
        return _error(nested.get("message", ""), nested.get("type"), nested.get("code"))
    if isinstance(nested, str):
        return _error(nested, None, None)
    if body.get("object") == "error":
        return _error(body.get("message", ""), body.get("type"), body.get("code"))
    return None


def sse_events(text: str) -> list[str]:
    """The ``data`` payloads of an SSE stream (multi-line data joined with newlines)."""
    events: list[str] = []
    data: list[str] = []
    # Not splitlines(): U+2028 may sit unescaped in JSON. The "" ends an unterminated last event.
    for raw_line in [*text.split("\n"), ""]:
        line = raw_line.removesuffix("\r")
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif not line and data:
            events.append("\n".join(data))
            data = []
    return events


def assemble_stream(text: str) -> ResponseRecord:
    """Assemble an SSE body: concatenate deltas per choice, keep the last usage and any error."""
    builder = _Builder()
    builder.result.stream_complete = False
    for payload in sse_events(text):
        if payload.strip() == "[DONE]":
            builder.result.stream_complete = True
            continue
        builder.result.events += 1
        event = parse_json_body(payload)
        if not isinstance(event, dict) or not builder.add_object(event, streamed=True):
            builder.result.malformed_events += 1
    return builder.finish()


def assemble_body(text: str) -> ResponseRecord:
    """Assemble a non-streamed body: JSON of a known shape, else raw text."""
    body = parse_json_body(text)
    builder = _Builder()
    if not (isinstance(body, dict) and builder.add_object(body, streamed=False)):
        builder.result.raw = text
    return builder.finish()


def fold_tail(assembled: ResponseRecord, tail: bytes | bytearray) -> None:
    """Add the usage, finish reasons and in-band error from the last bytes of a stream the proxy
    cut short. Their text stays out: the record keeps the start of the answer, not a splice."""
    text = decode(bytes(tail))
    first_end = text.find("\n\n")  # the tail starts inside an event: skip to the next one
    if first_end < 0:
        return
    end = assemble_stream(text[first_end + 2 :])
    assembled.usage = end.usage or assembled.usage
    assembled.error = end.error or assembled.error
    assembled.stream_complete = end.stream_complete
    by_index = {choice.index: choice for choice in assembled.choices}
    for choice in end.choices:
        if choice.finish_reason is not None:
            kept = by_index.setdefault(choice.index, ChoiceRecord(index=choice.index, text=""))
            kept.finish_reason = choice.finish_reason
    assembled.choices = list(by_index.values())  # new choices after the kept ones, in order


def assemble(chunks: Sequence[bytes | bytearray] | bytes, *, streamed: bool) -> ResponseRecord:
    """Assemble whatever came back; a "stream" that is really a JSON error body is handled too."""
    text = decode(chunks)
    start = text.lstrip()[:5]
    sse = not start.startswith(("{", "[")) if streamed else start.startswith("data:")
    return assemble_stream(text) if sse else assemble_body(text)
