"""How a sample record (:mod:`sidecar.sampling.schema`) is built from an :class:`Exchange`.

The answer is assembled from the relayed bytes, and every client- or model-controlled string is
redacted on its way into the record's fields; any failure there raises
:class:`~sidecar.sampling.redact.RedactionError` so the record is dropped, never written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sidecar.sampling.assemble import (
    assemble,
    decode,
    finish_reason,
    fold_tail,
    output_chars,
    parse_json_body,
)
from sidecar.sampling.exchange import Exchange
from sidecar.sampling.redact import RedactionError, Redactor
from sidecar.sampling.schema import ResponseRecord, SampleReason, SampleRecord

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
    if isinstance(value, str) and value.startswith("data:") and len(value) > MIN_DATA_URL_CHARS:
        media = value[5:].split(";", 1)[0].split(",", 1)[0][:100]
        omitted.append(media)
        return f"[omitted data URL: {media}, {len(value)} chars]"
    if isinstance(value, dict):
        return {key: _omit_data_urls(item, omitted) for key, item in value.items()}
    if isinstance(value, list):
        return [_omit_data_urls(item, omitted) for item in value]
    return value


def drop_partial_token(text: str) -> str:
    """``text`` without its last word when that may be the first half of a secret."""
    tail = text[-PARTIAL_TOKEN_CHARS:]
    last_space = max(tail.rfind(space) for space in " \n\t\r")  # -1: the whole tail goes
    return text[: len(text) - len(tail) + last_space + 1]


def request_tree(body: bytes) -> tuple[dict[str, Any], bool]:
    """The request body as JSON (``{"raw": text}`` when it is not a JSON object), and whether
    inline data was left out."""
    text = decode(body)
    tree = parse_json_body(text)
    if not isinstance(tree, dict):
        tree = {"raw": text} if tree is None else {"body": tree}
    omitted: list[str] = []
    result: dict[str, Any] = _omit_data_urls(tree, omitted)
    return result, bool(omitted)


def _close_cut_response(response: ResponseRecord) -> None:
    """Drop a possible half secret at the end of every text of a response the proxy cut."""
    for choice in response.choices:
        choice.text = drop_partial_token(choice.text)
        if choice.reasoning is not None:
            choice.reasoning = drop_partial_token(choice.reasoning)
        for call in choice.tool_calls:
            call.arguments = drop_partial_token(call.arguments)
    if response.raw is not None:
        response.raw = drop_partial_token(response.raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordContext:
    """Where a record comes from and why it was kept: its fields besides the exchange's."""

    reason: SampleReason
    rate: float
    deployment: str
    pod: str
    sidecar_version: str
    vllm_version: str | None


class _Cleaner:
    """Redacts each value on its way into the record, counting spans and noting cuts."""

    def __init__(self, redactor: Redactor, counts: Counter[str]) -> None:
        self.redactor = redactor
        self.counts = counts
        self.cut = False

    def text(self, value: str, limit: int = MAX_TEXT_CHARS) -> str:
        """Redacted, then cut past ``limit``: after redaction, so a secret the cut runs through
        was already replaced; a cut piece is cleaned again (a prefix can match where the whole
        did not)."""
        clean = self.redactor.clean_text(value, self.counts)
        if len(clean) <= limit:
            return clean
        self.cut = True
        return self.redactor.clean_text(clean[:limit], self.counts)

    def maybe(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def tree(self, value: Any) -> Any:
        return self.redactor.clean(value, self.counts, self.text)


def _clean_response(response: ResponseRecord, clean: _Cleaner) -> None:
    """Redact every client- or model-controlled string of the assembled answer, in place."""
    for choice in response.choices:
        choice.text = clean.text(choice.text)
        choice.reasoning = clean.maybe(choice.reasoning) or None
        choice.finish_reason = clean.maybe(choice.finish_reason)
        for call in choice.tool_calls:
            call.id = clean.maybe(call.id)
            call.type = clean.text(call.type)
            call.name = clean.text(call.name)
            call.arguments = clean.text(call.arguments)
    if response.usage is not None:
        response.usage = clean.tree(response.usage)
    if response.error is not None:
        response.error.message = clean.text(response.error.message)
        response.error.type = clean.maybe(response.error.type)
        if isinstance(response.error.code, str):
            response.error.code = clean.text(response.error.code)
    if response.raw is not None:
        response.raw = clean.text(response.raw, MAX_RAW_CHARS)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def build_record(
    exchange: Exchange,
    context: RecordContext,
    redactor: Redactor,
    counts: Counter[str] | None = None,
) -> SampleRecord:
    """Assemble and redact one record; raises RedactionError when it cannot be proven clean."""
    request, omitted = request_tree(exchange.request_body)
    response = assemble(exchange.response_chunks, streamed=exchange.streamed)
    if exchange.response_truncated:
        _close_cut_response(response)
        if exchange.streamed and exchange.response_tail:
            fold_tail(response, exchange.response_tail)
    # Read before redaction: counts from the raw answer (a big token count is no phone number).
    usage, chars = response.usage or {}, output_chars(response)
    finish = finish_reason(response) or exchange.finish_reason
    clean = _Cleaner(redactor, counts if counts is not None else Counter())
    try:
        clean_request = clean.tree(request)
        _clean_response(response, clean)
        request_id = clean.text(exchange.request_id)
        model_name = clean.maybe(exchange.model)
        endpoint = clean.text(exchange.path)
        finish = clean.maybe(finish)
    except RedactionError:
        raise
    except Exception as exc:  # any failure inside the redactor means "not proven clean"
        raise RedactionError(f"redactor failed: {type(exc).__name__}") from exc
    return SampleRecord(
        request_id=request_id,
        model_name=model_name,
        endpoint=endpoint,
        method=exchange.method,
        stream=exchange.streamed,
        status=exchange.status,
        error=exchange.error,
        error_type=None if response.error is None else response.error.type,
        finish_reason=finish,
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        total_tokens=_int(usage.get("total_tokens")),
        output_chars=chars,
        n_choices=len(response.choices),
        started_at=datetime.fromtimestamp(exchange.started_at, tz=UTC),
        started_at_unix=exchange.started_at,
        ttft_seconds=exchange.ttft_seconds,
        e2e_seconds=exchange.e2e_seconds,
        sample_rate=context.rate,
        sample_reason=context.reason,
        deployment=context.deployment,
        pod=context.pod,
        sidecar_version=context.sidecar_version,
        vllm_version=context.vllm_version,
        key_name=exchange.key_name,
        redactions=sum(clean.counts.values()),
        truncated=omitted or clean.cut or exchange.response_truncated,
        request=clean_request,
        response=response,
    )
