"""The record path's shortcuts give exactly what the plain way gives, whatever the input.

Assembling a stream in runs, the redactor's pre-filters and its cache of clean strings, and
writing the record with plain ``json`` are each compared here with the straightforward
computation they replace (every event parsed, every regex run, pydantic's serialiser).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sidecar.sampling.assemble import (
    Assembled,
    _assemble_events,
    assemble_stream,
    sse_events,
)
from sidecar.sampling.exchange import Exchange
from sidecar.sampling.patterns import BUILTIN_PATTERNS, custom_patterns
from sidecar.sampling.record import MAX_TEXT_CHARS, build_payload, build_record
from sidecar.sampling.redact import RedactionError, Redactor
from sidecar.sampling.schema import SampleRecord
from tests.sampling.helpers import chat_json, chat_request, error_json, exchange

COMPACT = {"separators": (",", ":"), "ensure_ascii": False}
"""How vLLM (pydantic) prints its events; the runs shortcut keys on this shape."""


def _event(payload: dict[str, Any], *, compact: bool = True) -> str:
    text = json.dumps(payload, **COMPACT) if compact else json.dumps(payload)  # type: ignore[arg-type]
    return f"data: {text}\n\n"


def _chunk(delta: dict[str, Any], *, index: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1732280000,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _chat(pieces: list[str], *, compact: bool = True, usage: bool = True) -> str:
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": piece}) for piece in pieces]
    events.append(_chunk({"content": ""}, finish="stop"))
    if usage:
        events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}})
    return "".join(_event(event, compact=compact) for event in events) + "data: [DONE]\n\n"


def _plain(text: str) -> Assembled:
    return _assemble_events(sse_events(text))


TRICKY = ["a", "", '"', "\\", 'say "hi"', "end\\", "\\\\", "é", "\u2028", "\n", "\t", "😀", "}"]
"""Texts whose JSON literals have escapes, quotes, trailing backslashes, non-ASCII."""

STREAMS = {
    "chat": _chat([" the", " model", " answers", "."] * 20),
    "chat_spaced": _chat([" one", " two"] * 5, compact=False),
    "chat_tricky": _chat(TRICKY * 3),
    "no_usage_no_done": _chat(["a", "b", "c"], usage=False).removesuffix("data: [DONE]\n\n"),
    "reasoning": "".join(
        _event(_chunk({"reasoning_content": piece})) for piece in ["think", " more", " hard"] * 3
    )
    + "".join(_event(_chunk({"content": piece})) for piece in ["an", "swer"] * 3),
    "reasoning_and_content": "".join(
        _event(_chunk({"reasoning": "r", "content": piece})) for piece in ["x", "y", "z", "w"]
    ),
    "two_choices_interleaved": "".join(
        _event(_chunk({"content": f"{piece}{index}"}, index=index))
        for piece in ["a", "b", "c", "d"]
        for index in (0, 1)
    ),
    "tool_calls": "".join(
        _event(
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
        )
        for piece in ['{"ci', 'ty": ', '"Paris"}'] * 2
    ),
    "legacy_completions": "".join(
        _event({"id": "cmpl-1", "choices": [{"index": 0, "text": piece, "finish_reason": None}]})
        for piece in ["x", "y", "z"] * 4
    )
    + _event({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}),
    "in_band_error": _chat(["a", "b", "c"], usage=False)
    + _event({"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}),
    "malformed": "".join(_event(_chunk({"content": piece})) for piece in ["a", "b", "c"])
    + "data: {not json\n\n"
    + "data: [1, 2]\n\n"
    + "".join(_event(_chunk({"content": piece})) for piece in ["d", "e"]),
    "bad_escape_in_a_run": "".join(_event(_chunk({"content": piece})) for piece in ["a", "b", "c"])
    + 'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1732280000,'
    '"model":"m","choices":[{"index":0,"delta":{"content":"\\x"},"logprobs":null,'
    '"finish_reason":null}]}\n\n',
    "control_char_in_a_run": "".join(
        _event(_chunk({"content": piece})) for piece in ["a", "b", "c"]
    ).replace('"c"', '"c\x01"'),
    "usage_every_event": "".join(
        _event({**_chunk({"content": str(n)}), "usage": {"completion_tokens": n}}) for n in range(6)
    ),
    "crlf": _chat(["a", "b", "c"]).replace("\n", "\r\n"),
    "comments_and_fields": ": keep-alive\n\nevent: message\n" + _chat(["a", "b", "c"]),
    "multi_line_data": 'data: {"choices":[{"index":0,\ndata: "delta":{"content":"x"}}]}\n\n'
    + _chat(["a", "b"]),
    "cut_mid_event": _chat(["a", "b", "c", "d"])[:-40],
    "same_text_key_elsewhere": "".join(
        _event({"choices": [{"index": 0, "delta": {"content": piece}}], "x": {"content": "k"}})
        for piece in ["p", "q", "r"]
    ),
    "content_not_a_string_position": "".join(
        _event({"choices": [{"index": 0, "delta": {"content": piece}}], "note": 'content":"'})
        for piece in ["p", "q", "r"]
    ),
    "odd_event_mid_run": _chat(["a", "b", "c", "d"]).replace(
        _event(_chunk({"content": "c"})),
        _event(_chunk({"content": "c"})) + _event({"choices": [], "usage": {"total_tokens": 1}}),
    ),
    "short_event_mid_run": _chat(["a", "b", "c", "d"]).replace(
        _event(_chunk({"content": "c"})), "data: {}\n\n"
    ),
    "escaped_backslash_mid_run": _chat(["a", "b", "c\\", "d", "e"]),
    "huge": _chat(["x" * 1000] * (MAX_TEXT_CHARS // 1000 + 5), usage=False),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_runs_assemble_exactly_like_parsing_every_event(name: str) -> None:
    """Every stream shape assembles to the same answer through the shortcut and the plain way."""
    text = STREAMS[name]
    assert assemble_stream(text) == _plain(text)


def test_runs_keep_the_text_of_a_real_stream() -> None:
    """The shortcut's answer is the deltas joined, with usage, finish reason and [DONE] seen."""
    assembled = assemble_stream(STREAMS["chat_tricky"])
    assert assembled.choices[0].text == "".join(TRICKY * 3)
    assert assembled.finish_reason == "stop"
    assert assembled.usage == {"prompt_tokens": 3, "completion_tokens": 9}
    assert assembled.stream_complete is True
    assert assembled.malformed_events == 0


_delta = st.one_of(
    st.builds(lambda text: {"content": text}, st.text(max_size=6)),
    st.builds(lambda text: {"reasoning_content": text}, st.sampled_from(TRICKY)),
    st.builds(lambda text: {"role": "assistant", "content": text}, st.sampled_from(TRICKY)),
    st.just({}),
    st.builds(
        lambda arguments: {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]},
        st.sampled_from(TRICKY),
    ),
)
_payload = st.one_of(
    st.builds(
        lambda delta, index, finish: _chunk(delta, index=index, finish=finish),
        _delta,
        st.sampled_from([0, 0, 0, 1]),
        st.sampled_from([None, None, None, "stop"]),
    ),
    st.just({"choices": [], "usage": {"total_tokens": 5}}),
    st.just({"error": {"message": "boom", "type": "X", "code": 1}}),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.one_of(
            st.builds(_event, _payload, compact=st.sampled_from([True, True, True, False])),
            st.sampled_from(["data: [DONE]\n\n", "data: {oops\n\n", "data: 7\n\n"]),
        ),
        max_size=40,
    )
)
def test_runs_match_the_plain_way_on_any_event_sequence(events: list[str]) -> None:
    """Random mixes of text, reasoning, tool, usage, error, malformed and [DONE] events."""
    text = "".join(events)
    assert assemble_stream(text) == _plain(text)


# --- redaction ------------------------------------------------------------------------------

UNFILTERED = Redactor(
    tuple(dataclasses.replace(pattern, hint=None, needs=()) for pattern in BUILTIN_PATTERNS)
)
"""Every regex over every text: what the pre-filters must never change."""

SPECIAL_LETTERS = "\u212a\u017f\u0131\u0130\u0660\u0661\u0662\u0663\u0664\u0665\u0966\uff11"
"""Kelvin sign, long s, dotless and dotted i, Arabic-Indic, Devanagari, fullwidth digits: what
a case-insensitive ``re`` or ``\\d`` matches beyond ASCII."""

_fragments = st.sampled_from(
    [
        "api_key=hunter2secret",
        "Authorization: Basic dXNlcjpwYXNz",
        "AUTHORIZATION=abcdefgh",
        "bearer abcdefghijk1234",
        "pas\u017fword=hunter22hunter",
        "api_\u212aey: zzzzzzzz99",
        "secret=\u0661\u0662\u0663\u0664\u0665\u0666",
        "4111 1111 1111 1111",
        "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",
        "+1 (555) 123-4567",
        "192.168.1.20",
        "DE89 3704 0044 0532 0130 00",
        "AKIAIOSFODNN7EXAMPLE",
        "sk-abcdefghijklmnopqrstu",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "bob@example.com",
        "fe80::1",
        "token",
        "key",
        "_",
        ".",
        ":",
        " ",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            _fragments,
            st.text(alphabet=st.sampled_from("aKks:._-=@ 0129" + SPECIAL_LETTERS), max_size=12),
        ),
        max_size=8,
    )
)
def test_pre_filters_never_change_what_is_redacted(parts: list[str]) -> None:
    """With and without the pre-filters and the clean-string cache: same text, same counts."""
    text = "".join(parts)
    filtered, plain = Redactor(), UNFILTERED
    counts_filtered: Counter[str] = Counter()
    counts_plain: Counter[str] = Counter()
    assert filtered.clean_text(text, counts_filtered) == plain.clean_text(text, counts_plain)
    assert counts_filtered == counts_plain
    assert filtered.clean_text(text) == plain.clean_text(text)  # second time: from the cache
    assert filtered.find(text) == plain.find(text)


def test_a_user_pattern_matching_the_credential_token_still_fails_closed() -> None:
    """clean() checks the token it puts under a credential key, as the post-check did."""
    redactor = Redactor((*BUILTIN_PATTERNS, *custom_patterns([r"REDACTED:credential"])))
    with pytest.raises(RedactionError):
        redactor.clean({"messages": [{"api_key": "x"}]})


# --- the record as written ------------------------------------------------------------------


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


def _stream_chunks(text: str) -> list[bytes]:
    data = text.encode()
    return [data[index : index + 97] for index in range(0, len(data), 97)]


EXCHANGES: dict[str, dict[str, Any]] = {
    "chat_stream": {"response_chunks": _stream_chunks(STREAMS["chat"]), "streamed": True},
    "tricky_stream": {"response_chunks": _stream_chunks(STREAMS["chat_tricky"]), "streamed": True},
    "tool_calls": {"response_chunks": _stream_chunks(STREAMS["tool_calls"]), "streamed": True},
    "two_choices": {
        "response_chunks": _stream_chunks(STREAMS["two_choices_interleaved"]),
        "streamed": True,
    },
    "reasoning": {"response_chunks": _stream_chunks(STREAMS["reasoning"]), "streamed": True},
    "in_band_error": {
        "response_chunks": _stream_chunks(STREAMS["in_band_error"]),
        "streamed": True,
        "error": "client_disconnect",
    },
    "error_body": {"response_chunks": [error_json("bad model")], "status": 400},
    "error_on_stream": {"response_chunks": [error_json("bad")], "status": 400, "streamed": True},
    "json_body": {"response_chunks": [chat_json("plain answer")]},
    "gzip_body": {"response_chunks": [_gzip(chat_json("zipped answer"))]},
    "raw_body": {"response_chunks": [b"upstream said no"], "status": 502},
    "truncated": {
        "request_body": chat_request("y" * (MAX_TEXT_CHARS + 10)),
        "response_chunks": _stream_chunks(STREAMS["huge"]),
        "streamed": True,
    },
    "redaction_hits": {
        "request_body": json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "mail bob@example.com, card 4111111111111111"}
                ],
                "api_key": "sk-abcdefghijklmnopqrstuvwxyz",
                "user": 41111111111111111,
            }
        ).encode(),
        "response_chunks": _stream_chunks(_chat(["call ", "+1 (555) ", "123-4567", " now"])),
        "streamed": True,
    },
    "exponent_floats": {
        "request_body": json.dumps(
            {"temperature": 1e-05, "top_p": 1e16, "x": [1e-7, 2.5e300]}
        ).encode(),
    },
    "nan_in_request": {"request_body": b'{"temperature": NaN, "top_p": Infinity}'},
    "nan_timing": {"e2e_seconds": math.nan},
    "whole_second_start": {"started_at": 1732280000},
    "non_json_request": {"request_body": b"not json \xff\xfe"},
    "unicode": {
        "request_body": chat_request("h\u00e9llo \u2028 \U0001f600 \x7f"),
        "model": "mod\u00e8le/\u2603",
    },
    "no_model": {"model": None},
}


def _both(exchange_: Exchange, redactor: Redactor) -> tuple[bytes, bytes]:
    kwargs: dict[str, Any] = {
        "reason": "random",
        "rate": 1,
        "redactor": redactor,
        "deployment": "blue",
        "pod": "pod-a",
        "sidecar_version": "9.9.9",
        "vllm_version": "0.33.0",
    }
    counts_fast: Counter[str] = Counter()
    counts_slow: Counter[str] = Counter()
    model_name, fast = build_payload(exchange_, counts=counts_fast, **kwargs)
    record = build_record(exchange_, counts=counts_slow, **kwargs)
    assert counts_fast == counts_slow
    assert model_name == record.model_name
    return fast, record.model_dump_json().encode()


@pytest.mark.parametrize("name", sorted(EXCHANGES))
def test_payload_is_byte_for_byte_the_pydantic_record(name: str) -> None:
    """The plain-json record equals pydantic's and validates against the schema.

    Exponent floats are the one spelling difference (``1e-05`` vs ``1e-5``): same values.
    """
    fields = {"started_at": 1732280000.25, **EXCHANGES[name]}
    fast, slow = _both(exchange("req-1", **fields), Redactor())
    if name == "exponent_floats":
        assert fast != slow
        assert json.loads(fast) == json.loads(slow)
    else:
        assert fast == slow
    if name != "nan_timing":  # pydantic writes a NaN float as null, which it cannot read back
        assert SampleRecord.model_validate_json(fast).model_dump_json().encode() == slow


def test_payload_follows_pydantic_when_a_user_pattern_hits_a_schema_key() -> None:
    """A pattern that redacts a response key makes the record invalid: both paths refuse it."""
    redactor = Redactor((*BUILTIN_PATTERNS, *custom_patterns([r"^text$"])))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _both(exchange("req-1"), redactor)


def test_response_keys_are_the_schema_keys() -> None:
    """The plain path's list of response keys (checked against user patterns) is the schema's."""
    from sidecar.sampling.record import RESPONSE_KEYS
    from sidecar.sampling.schema import (
        ChoiceRecord,
        ErrorRecord,
        ResponseRecord,
        ToolCallRecord,
    )

    models = (ResponseRecord, ChoiceRecord, ToolCallRecord, ErrorRecord)
    assert tuple(key for model in models for key in model.model_fields) == RESPONSE_KEYS
