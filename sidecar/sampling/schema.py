"""The sample record's schema (v1) as pydantic models: the reference the record writer is tested
against, the validator of the rare records :mod:`sidecar.sampling.record` cannot write with plain
``json``, and the column list the ``samples`` tools and docs follow.

Kept out of ``record.py`` so the long-lived ``run`` process does not import pydantic (~10 MB of
RSS) for the usual record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from sidecar.sampling.decision import SampleReason
from sidecar.sampling.record import SCHEMA_VERSION


class ToolCallRecord(BaseModel):
    """A tool call with its streamed argument fragments joined."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: str = ""


class ChoiceRecord(BaseModel):
    """One generated choice."""

    model_config = ConfigDict(extra="forbid")
    index: int
    text: str
    reasoning: str | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCallRecord] = []


class ErrorRecord(BaseModel):
    """An error returned by vLLM (HTTP error body or in-band SSE error event)."""

    model_config = ConfigDict(extra="forbid")
    message: str
    type: str | None = None
    code: int | str | None = None


class ResponseRecord(BaseModel):
    """The assembled answer, identical in shape for streamed and non-streamed requests."""

    model_config = ConfigDict(extra="forbid")
    choices: list[ChoiceRecord] = []
    usage: dict[str, Any] | None = None
    error: ErrorRecord | None = None
    raw: str | None = None
    """A body of no known shape (plain-text errors, proxy errors), redacted."""
    events: int = 0
    malformed_events: int = 0
    stream_complete: bool | None = None


class SampleRecord(BaseModel):
    """One sampled request/response pair, as written (one JSON line) to the sink."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    model_name: str | None
    endpoint: str
    method: str
    stream: bool
    status: int
    error: str | None
    """Proxy-side failure (``upstream_timeout``, ``client_disconnect`` ...), else None."""
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
