"""The versioned sample record (schema v1) and how one is built from an :class:`Exchange`.

Flat where SQL wants it (model, status, finish reason, token counts, timings, versions as
top-level scalar columns) and nested where the shape varies (the redacted request body and the
assembled response). The full column list is documented in ``sidecar/sampling/README.md``.
Building a record redacts everything client- or model-controlled; any failure there raises
:class:`~sidecar.sampling.redact.RedactionError` so the record is dropped, never written.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, Unpack

from sidecar.sampling.assemble import Assembled, assemble, decode, fold_tail, parse_json_body
from sidecar.sampling.decision import SampleReason
from sidecar.sampling.exchange import Exchange
from sidecar.sampling.redact import RedactionError, Redactor

if TYPE_CHECKING:
    from sidecar.sampling.schema import SampleRecord

SCHEMA_VERSION: Literal[1] = 1
MIN_DATA_URL_CHARS = 1024
"""Inline ``data:`` URLs (base64 images, audio) longer than this are replaced by a note."""
MAX_TEXT_CHARS = 1_000_000
"""Longest text kept per field; longer values are cut (after redaction) and the record marked
``truncated``."""
MAX_RAW_CHARS = 64 * 1024
"""Longest body of an unknown shape that is kept (as raw text)."""
PARTIAL_TOKEN_CHARS = 4096
"""A response the proxy cut short may end inside a secret that the redactor cannot recognise
from its first half: such texts end at their last whitespace within this many characters."""


def _omit_data_urls(value: Any, omitted: list[str]) -> Any:
    """Replace inline data URLs by a note of their media type and length (noted in ``omitted``)."""
    if isinstance(value, str):
        if value.startswith("data:") and len(value) > MIN_DATA_URL_CHARS:
            media = value[5:].split(";", 1)[0].split(",", 1)[0][:100]
            omitted.append(media)
            return f"[omitted data URL: {media}, {len(value)} chars]"
        return value
    if isinstance(value, dict):
        return {key: _omit_data_urls(item, omitted) for key, item in value.items()}
    if isinstance(value, list):
        return [_omit_data_urls(item, omitted) for item in value]
    return value


def _cut(value: Any, limit: int, redactor: Redactor, counts: Counter[str]) -> tuple[Any, bool]:
    """Cut strings longer than ``limit``: after redaction, so a secret the cut runs through was
    already replaced; a cut piece is cleaned again (a prefix can match where the whole did not)."""
    if isinstance(value, str):
        if len(value) > limit:
            return redactor.clean_text(value[:limit], counts), True
        return value, False
    if isinstance(value, dict):
        cut = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            out[key], item_cut = _cut(item, limit, redactor, counts)
            cut |= item_cut
        return out, cut
    if isinstance(value, list):
        items = [_cut(item, limit, redactor, counts) for item in value]
        return [item for item, _ in items], any(item_cut for _, item_cut in items)
    return value, False


def drop_partial_token(text: str) -> str:
    """``text`` without its last word when that may be the first half of a secret."""
    stop = max(0, len(text) - PARTIAL_TOKEN_CHARS)
    for index in range(len(text) - 1, stop - 1, -1):
        if text[index].isspace():
            return text[: index + 1]
    return text[:stop]


def request_tree(body: bytes) -> tuple[dict[str, Any], bool]:
    """The request body as JSON (``{"raw": text}`` when it is not a JSON object), and whether
    inline data was left out."""
    text = decode(body)
    parsed = parse_json_body(text)
    tree: dict[str, Any]
    if isinstance(parsed, dict):
        tree = parsed
    elif parsed is not None:
        tree = {"body": parsed}
    else:
        tree = {"raw": text}
    omitted: list[str] = []
    result: dict[str, Any] = _omit_data_urls(tree, omitted)
    return result, bool(omitted)


def _close_cut_response(assembled: Assembled) -> None:
    """Drop a possible half secret at the end of every text of a response the proxy cut."""
    for choice in assembled.choices:
        choice.text = drop_partial_token(choice.text)
        choice.reasoning = drop_partial_token(choice.reasoning)
        for call in choice.tool_calls:
            call["arguments"] = drop_partial_token(call["arguments"])
    if assembled.raw is not None:
        assembled.raw = drop_partial_token(assembled.raw)


def response_tree(assembled: Assembled) -> dict[str, Any]:
    """The assembled answer as plain data, ready for redaction and validation."""
    return {
        "choices": [
            {
                "index": choice.index,
                "text": choice.text,
                "reasoning": choice.reasoning or None,
                "finish_reason": choice.finish_reason,
                "tool_calls": choice.tool_calls,
            }
            for choice in assembled.choices
        ],
        "usage": assembled.usage,
        "error": assembled.error,
        "raw": assembled.raw,
        "events": assembled.events,
        "malformed_events": assembled.malformed_events,
        "stream_complete": assembled.stream_complete,
    }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(slots=True)
class _Cleaned:
    """Everything a record holds, assembled and redacted, before it takes the schema's shape."""

    fields: dict[str, Any]
    """The top-level columns in schema order, ``started_at`` as a datetime, ``response`` as the
    redacted plain-data tree."""
    model_name: str | None


class RecordContext(TypedDict):
    """What a record needs besides the exchange (the keyword arguments of the builders)."""

    reason: SampleReason
    rate: float
    redactor: Redactor
    deployment: str
    pod: str
    sidecar_version: str
    vllm_version: str | None
    counts: NotRequired[Counter[str] | None]


def _prepare(
    exchange: Exchange,
    *,
    reason: SampleReason,
    rate: float,
    redactor: Redactor,
    deployment: str,
    pod: str,
    sidecar_version: str,
    vllm_version: str | None,
    counts: Counter[str] | None = None,
) -> _Cleaned:
    request, omitted = request_tree(exchange.request_body)
    assembled = assemble(exchange.response_chunks, streamed=exchange.streamed)
    if exchange.response_truncated:
        _close_cut_response(assembled)
        if exchange.streamed and exchange.response_tail:
            fold_tail(assembled, exchange.response_tail)
    spans: Counter[str] = counts if counts is not None else Counter()
    try:
        # clean() post-checks every string it returns, so the tree needs no second scan. Every
        # client- or model-controlled string goes through it, top-level columns included.
        clean_request, request_cut = _cut(
            redactor.clean(request, spans), MAX_TEXT_CHARS, redactor, spans
        )
        response = redactor.clean(response_tree(assembled), spans)
        if isinstance(response["raw"], str):
            response["raw"], raw_cut = _cut(response["raw"], MAX_RAW_CHARS, redactor, spans)
        else:
            raw_cut = False
        clean_response, response_cut = _cut(response, MAX_TEXT_CHARS, redactor, spans)
        request_id = redactor.clean_text(exchange.request_id, spans)
        model_name = redactor.clean_text(exchange.model, spans) if exchange.model else None
        endpoint = redactor.clean_text(exchange.path, spans)
        finish_reason = assembled.finish_reason or exchange.finish_reason
        if finish_reason is not None:
            finish_reason = redactor.clean_text(finish_reason, spans)
    except RedactionError:
        raise
    except Exception as exc:  # any failure inside the redactor means "not proven clean"
        raise RedactionError(f"redactor failed: {type(exc).__name__}") from exc
    usage = assembled.usage or {}
    error = clean_response["error"]
    fields = {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "model_name": model_name,
        "endpoint": endpoint,
        "method": exchange.method,
        "stream": exchange.streamed,
        "status": exchange.status,
        "error": exchange.error,
        "error_type": error.get("type") if isinstance(error, dict) else None,
        "finish_reason": finish_reason,
        "prompt_tokens": _int(usage.get("prompt_tokens")),
        "completion_tokens": _int(usage.get("completion_tokens")),
        "total_tokens": _int(usage.get("total_tokens")),
        "output_chars": assembled.output_chars,
        "n_choices": len(assembled.choices),
        "started_at": datetime.fromtimestamp(exchange.started_at, tz=UTC),
        "started_at_unix": exchange.started_at,
        "ttft_seconds": exchange.ttft_seconds,
        "e2e_seconds": exchange.e2e_seconds,
        "sample_rate": rate,
        "sample_reason": reason,
        "deployment": deployment,
        "pod": pod,
        "sidecar_version": sidecar_version,
        "vllm_version": vllm_version,
        "key_name": exchange.key_name,
        "redactions": sum(spans.values()),
        "truncated": any(
            (omitted, request_cut, raw_cut, response_cut, exchange.response_truncated)
        ),
        "request": clean_request,
        "response": clean_response,
    }
    return _Cleaned(fields, model_name)


def _validated(cleaned: _Cleaned) -> SampleRecord:
    # pydantic (~10 MB) is loaded only here: for build_record and the rare records the plain
    # path leaves to it, never for the usual record of the long-lived process.
    from sidecar.sampling.schema import ResponseRecord, SampleRecord

    fields = dict(cleaned.fields)
    del fields["schema_version"]
    fields["response"] = ResponseRecord.model_validate(fields["response"])
    return SampleRecord(**fields)


def build_record(exchange: Exchange, **context: Unpack[RecordContext]) -> SampleRecord:
    """Assemble, redact and validate one record; raises RedactionError when it is not clean."""
    return _validated(_prepare(exchange, **context))


FLOAT_FIELDS = ("started_at_unix", "ttft_seconds", "e2e_seconds", "sample_rate")
RESPONSE_KEYS = (
    *("choices", "usage", "error", "raw", "events", "malformed_events", "stream_complete"),
    *("index", "text", "reasoning", "finish_reason", "tool_calls"),
    *("id", "type", "name", "arguments"),
    *("message", "type", "code"),
)
"""The keys of the response part of the schema (checked against it by the tests)."""
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _plain_json(cleaned: _Cleaned, redactor: Redactor) -> bytes | None:
    """The record as :meth:`SampleRecord.model_dump_json` would print it, without pydantic.

    Byte for byte the same, except that a float Python prints with an exponent keeps Python's
    spelling (``1e-05`` where pydantic writes ``1e-5``): the same number to every JSON reader.
    None when the record is one this shortcut does not cover (NaN, a surrogate, a response key
    a user pattern redacts, a redacted choice index): the caller then takes the pydantic path.
    """
    fields = cleaned.fields
    if not redactor.all_clean(RESPONSE_KEYS):
        return None
    response = fields["response"]
    if not all(type(choice["index"]) is int for choice in response["choices"]):
        return None
    started: datetime = fields["started_at"]
    stamp = started.isoformat()
    if not (stamp.endswith("+00:00") and started.year >= 1000):
        return None
    plain = dict(fields)
    plain["started_at"] = stamp[:-6] + "Z"
    for name in FLOAT_FIELDS:
        if plain[name] is not None:
            plain[name] = float(plain[name])
    try:
        return _ENCODE(plain).encode("utf-8")
    except (ValueError, UnicodeError):
        return None


def build_payload(exchange: Exchange, **context: Unpack[RecordContext]) -> tuple[str | None, bytes]:
    """The record's model name and JSON line, what :func:`build_record` would give through
    ``model_dump_json`` (see :func:`_plain_json`), but with plain ``json``: pydantic validation
    and serialisation cost more than the rest of a record, and importing pydantic ~10 MB of
    RSS. Raises RedactionError like it."""
    cleaned = _prepare(exchange, **context)
    payload = _plain_json(cleaned, context["redactor"])
    if payload is None:
        payload = _validated(cleaned).model_dump_json().encode("utf-8")
    return cleaned.model_name, payload
