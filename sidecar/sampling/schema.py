"""The sample record, schema v1: its one declaration (msgspec), encoder and JSON Schema.

msgspec was chosen on measurements (``docs/sample-record.md``). The committed JSON Schema
(``docs/sample-record-v1.schema.json``) is generated from these types
(``python -m sidecar.sampling.schema``) and drift-tested; ``docs/sample-record.md`` describes
every field. A change that is not backward compatible needs a new ``schema_version``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1
SampleReason = Literal["random", "error", "length", "slow"]
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "sample-record-v1.schema.json"


class ToolCallRecord(msgspec.Struct, forbid_unknown_fields=True):
    """A tool call, its streamed argument fragments joined."""

    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: str = ""


class ChoiceRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One generated choice."""

    index: int
    text: str
    reasoning: str | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCallRecord] = []


class ErrorRecord(msgspec.Struct, forbid_unknown_fields=True):
    """An error from vLLM (an HTTP error body or an in-band SSE error event)."""

    message: str
    type: str | None = None
    code: int | str | None = None


class ResponseRecord(msgspec.Struct, forbid_unknown_fields=True):
    """The assembled answer, the same shape for streamed and non-streamed requests."""

    choices: list[ChoiceRecord] = []
    usage: dict[str, Any] | None = None
    error: ErrorRecord | None = None
    raw: str | None = None
    events: int = 0
    malformed_events: int = 0
    stream_complete: bool | None = None


class SampleRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One sampled request/response pair: one JSON line in the sink."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    model_name: str | None
    endpoint: str
    method: str
    stream: bool
    status: int
    error: str | None
    error_type: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    output_chars: int
    n_choices: int
    started_at: datetime
    started_at_unix: float
    ttft_seconds: float | None
    e2e_seconds: float
    sample_rate: float
    sample_reason: SampleReason
    deployment: str
    pod: str
    sidecar_version: str
    vllm_version: str | None
    key_name: str | None
    redactions: int
    truncated: bool
    request: dict[str, Any]
    response: ResponseRecord


_ENCODER = msgspec.json.Encoder()


def encode(record: SampleRecord) -> bytes:
    """The record as one line of JSON (no newline)."""
    return _ENCODER.encode(record)


def decode(line: bytes | str) -> SampleRecord:
    """A record from its JSON line, validated (raises ``msgspec.ValidationError``)."""
    return msgspec.json.decode(line, type=SampleRecord)


def json_schema() -> dict[str, Any]:
    """The record's JSON Schema (draft 2020-12), as committed under ``docs/``."""
    return msgspec.json.schema(SampleRecord)


def schema_text() -> str:
    """:func:`json_schema` as the committed file holds it."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m sidecar.sampling.schema: rewrite the committed schema
    SCHEMA_FILE.write_text(schema_text())
    sys.stdout.write(f"wrote {SCHEMA_FILE}\n")
