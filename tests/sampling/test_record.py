"""The v1 record: flat columns for SQL, nested request/response, redacted, fail-closed."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from sidecar.sampling.record import RecordContext, build_record
from sidecar.sampling.redact import RedactionError, Redactor
from sidecar.sampling.schema import SampleRecord, decode, encode
from tests.sampling.helpers import chat_request, chat_stream, error_json, exchange

FLAT_COLUMNS = {
    "model_name": str,
    "finish_reason": str,
    "prompt_tokens": int,
    "completion_tokens": int,
    "output_chars": int,
    "ttft_seconds": float,
    "e2e_seconds": float,
    "status": int,
    "deployment": str,
    "sidecar_version": str,
    "vllm_version": str,
}


class ExplodingRedactor(Redactor):
    """A redactor with a bug: it raises on any text."""

    def clean_text(self, text: str, counts: Counter[str] | None = None) -> str:
        raise KeyError("bug")


CONTEXT = RecordContext(
    reason="random",
    rate=0.01,
    deployment="green",
    pod="pod-a",
    sidecar_version="9.9.9",
    vllm_version="0.33.0",
)


def _build(redactor: Redactor | None = None, **kwargs: Any) -> SampleRecord:
    return build_record(exchange("req-1", **kwargs), CONTEXT, redactor or Redactor())


def test_streamed_record_has_flat_columns_and_nested_detail() -> None:
    """SQL-facing scalars are top level; request and response stay nested."""
    record = _build(
        request_body=chat_request("hi", stream=True),
        response_chunks=chat_stream("a", "b"),
        streamed=True,
    )
    data = json.loads(encode(record))
    assert data["schema_version"] == 1
    for column, kind in FLAT_COLUMNS.items():
        assert isinstance(data[column], kind), column
    assert data["finish_reason"] == "stop"
    assert data["completion_tokens"] == 7
    assert data["output_chars"] == 2
    assert data["stream"] is True
    assert data["sample_rate"] == 0.01
    assert data["sample_reason"] == "random"
    assert data["pod"] == "pod-a"
    assert data["key_name"] == "team-a"
    assert data["request"]["messages"][0]["content"] == "hi"
    assert data["request"]["max_tokens"] == 64
    assert data["response"]["choices"][0]["text"] == "ab"
    assert data["started_at"].endswith("Z")


def test_record_round_trips_through_json() -> None:
    """What is written can be read back into the same model (for the reviewer side)."""
    record = _build()
    assert decode(encode(record)) == record


def test_record_never_holds_headers_or_credentials() -> None:
    """There is no header field, and credential-named body fields are replaced."""
    body = json.dumps(
        {"model": "m", "messages": [], "api_key": "sk-live-value-123", "user": "u1"}
    ).encode()
    data = json.loads(encode(_build(request_body=body)))
    assert "headers" not in data
    assert "authorization" not in json.dumps(data).lower()
    assert data["request"]["api_key"] == "[REDACTED:credential]"
    assert "sk-live-value-123" not in json.dumps(data)


def test_error_record_keeps_the_redacted_message() -> None:
    """An error body becomes response.error with its type lifted to a top-level column."""
    record = _build(status=400, response_chunks=[error_json("bad input from bob@example.com")])
    assert record.status == 400
    assert record.error_type == "BadRequestError"
    assert record.response.error is not None
    assert record.response.error.message == "bad input from [REDACTED:email]"
    assert record.redactions == 1


def test_inline_images_are_replaced_by_a_note() -> None:
    """Base64 data URLs are not stored; the record says what was there."""
    image = "data:image/png;base64," + "A" * 5000
    body = json.dumps(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}
            ],
        }
    ).encode()
    record = _build(request_body=body)
    url = record.request["messages"][0]["content"][0]["image_url"]["url"]
    assert url == f"[omitted data URL: image/png, {len(image)} chars]"
    assert record.truncated


def test_non_json_request_body_is_kept_raw_and_redacted() -> None:
    """A body that is not JSON is kept as text, still redacted."""
    record = _build(request_body=b"plain text from 10.1.2.3")
    assert record.request == {"raw": "plain text from [REDACTED:ipv4]"}


def test_a_redactor_that_raises_fails_closed() -> None:
    """Any exception inside the redactor surfaces as RedactionError (the record is dropped)."""
    with pytest.raises(RedactionError):
        _build(redactor=ExplodingRedactor())


def test_a_response_the_proxy_cut_short_is_marked_truncated() -> None:
    """The proxy kept only the start of a long stream: the record says so and keeps that start."""
    whole = b"".join(chat_stream("alpha ", "beta ", "gamma"))
    start = whole[: whole.index(b"beta")]  # cut inside an event, as the byte limit does
    cut = replace(
        exchange(
            "req-1", request_body=chat_request("hi", stream=True), response_chunks=[start],
            streamed=True,
        ),
        response_truncated=True,
    )  # fmt: skip
    record = build_record(cut, CONTEXT, Redactor())
    assert record.truncated is True
    assert record.response.choices[0].text == "alpha "
    assert record.response.stream_complete is not True
    untouched = _build(
        request_body=chat_request("hi", stream=True), response_chunks=[whole], streamed=True
    )
    assert untouched.truncated is False
