"""Assembling answers from SSE streams, JSON bodies and error bodies into one shape."""

from __future__ import annotations

import gzip
import json

from sidecar.sampling.assemble import assemble, finish_reason, output_chars, sse_events
from sidecar.sampling.schema import ErrorRecord
from tests.sampling.helpers import chat_json, chat_stream, error_json, sse_event


def test_streamed_chat_is_concatenated_with_usage() -> None:
    """Deltas join into one text; finish reason and the usage chunk are kept."""
    result = assemble(chat_stream("Hel", "lo ", "world"), streamed=True)
    assert [choice.text for choice in result.choices] == ["Hello world"]
    assert finish_reason(result) == "stop"
    assert result.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert result.stream_complete is True
    assert result.malformed_events == 0
    assert output_chars(result) == len("Hello world")


def test_events_split_across_byte_chunks() -> None:
    """The proxy's chunk boundaries need not match event boundaries (or UTF-8 boundaries)."""
    whole = b"".join(chat_stream("h\u00e9llo ", "w\u00f6rld", finish="length"))
    pieces = [whole[index : index + 7] for index in range(0, len(whole), 7)]
    result = assemble(pieces, streamed=True)
    assert result.choices[0].text == "h\u00e9llo w\u00f6rld"
    assert finish_reason(result) == "length"


def test_several_choices_and_reasoning() -> None:
    """n > 1 keeps choices apart; reasoning content is collected beside the answer."""
    chunks = [
        sse_event({"choices": [{"index": 1, "delta": {"content": "B"}}]}),
        sse_event({"choices": [{"index": 0, "delta": {"reasoning_content": "think "}}]}),
        sse_event({"choices": [{"index": 0, "delta": {"content": "A"}, "finish_reason": "stop"}]}),
        sse_event({"choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]}),
        b"data: [DONE]\n\n",
    ]
    result = assemble(chunks, streamed=True)
    assert [(c.index, c.text, c.reasoning, c.finish_reason) for c in result.choices] == [
        (0, "A", "think ", "stop"),
        (1, "B", None, "length"),
    ]


def test_streamed_tool_call_arguments_are_joined() -> None:
    """Tool-call fragments with the same index become one call with whole arguments."""
    chunks = [
        sse_event(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "function": {"name": "get", "arguments": '{"ci'},
                                }
                            ]
                        },
                    }
                ]
            }
        ),
        sse_event(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]
                        },
                        "finish_reason": "tool_calls",
                    }
                ]
            }
        ),
        b"data: [DONE]\n\n",
    ]
    result = assemble(chunks, streamed=True)
    call = result.choices[0].tool_calls[0]
    assert call.id == "call_1"
    assert call.name == "get"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert finish_reason(result) == "tool_calls"


def test_legacy_completions_stream() -> None:
    """/v1/completions streams ``choices[].text`` rather than deltas."""
    chunks = [
        sse_event({"object": "text_completion", "choices": [{"index": 0, "text": "one "}]}),
        sse_event({"choices": [{"index": 0, "text": "two", "finish_reason": "length"}]}),
        b"data: [DONE]\n\n",
    ]
    result = assemble(chunks, streamed=True)
    assert result.choices[0].text == "one two"
    assert finish_reason(result) == "length"


def test_mid_stream_error_and_missing_done() -> None:
    """An in-band error event is kept; a stream without [DONE] is marked incomplete."""
    chunks = [
        sse_event({"choices": [{"index": 0, "delta": {"content": "partial"}}]}),
        sse_event(
            {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}
        ),
    ]
    result = assemble(chunks, streamed=True)
    assert result.choices[0].text == "partial"
    assert result.error == ErrorRecord("engine died", "InternalServerError", 500)
    assert result.stream_complete is False


def test_malformed_events_are_counted_not_kept() -> None:
    """Unparseable events are skipped and counted; their text is never stored."""
    chunks = [b"data: {not json\n\n", *chat_stream("ok")]
    result = assemble(chunks, streamed=True)
    assert result.malformed_events == 1
    assert result.choices[0].text == "ok"
    assert result.raw is None


def test_non_streamed_body() -> None:
    """A JSON chat completion gives the same shape as a stream."""
    result = assemble([chat_json("the answer")], streamed=False)
    assert result.choices[0].text == "the answer"
    assert finish_reason(result) == "stop"
    assert result.usage is not None
    assert result.stream_complete is None


def test_error_body_shapes() -> None:
    """Nested (new), flat (old) and plain-string (401) error bodies are all understood."""
    nested = assemble([error_json("bad value", 400)], streamed=False)
    assert nested.error == ErrorRecord("bad value", "BadRequestError", 400)
    flat = assemble(
        [b'{"object":"error","message":"too long","type":"BadRequestError","code":400}'],
        streamed=False,
    )
    assert flat.error == ErrorRecord("too long", "BadRequestError", 400)
    unauthorized = assemble([b'{"error":"Unauthorized"}'], streamed=False)
    assert unauthorized.error == ErrorRecord("Unauthorized", None, None)


def test_error_body_on_a_streamed_request() -> None:
    """A stream request rejected before streaming returns JSON; it is parsed as such."""
    result = assemble([error_json("context too long")], streamed=True)
    assert result.error is not None
    assert result.error.message == "context too long"


def test_unknown_body_is_kept_as_raw_text() -> None:
    """Plain text (a proxy's 502 page, say) is kept raw for redaction."""
    result = assemble([b"upstream connect error"], streamed=False)
    assert result.raw == "upstream connect error"
    assert result.choices == []


def test_sse_parsing_follows_the_spec() -> None:
    """CRLF line ends, multi-line data and comment lines are handled."""
    text = ": comment\r\ndata: a\r\ndata: b\r\n\r\ndata:c\n\n"
    assert sse_events(text) == ["a\nb", "c"]


def test_line_separator_inside_json_does_not_split_an_event() -> None:
    """U+2028 may appear unescaped in JSON text; it must not break the event."""
    chunks = [sse_event({"choices": [{"index": 0, "delta": {"content": "a\u2028b"}}]})]
    chunks = [chunk.replace(b"\\u2028", "\u2028".encode()) for chunk in chunks]
    assert assemble(chunks, streamed=True).choices[0].text == "a\u2028b"


def test_gzip_encoded_body_is_inflated() -> None:
    """A body relayed with Content-Encoding: gzip is read as what it encodes."""
    body = gzip.compress(b"".join(chat_stream("zipped ", "answer")))
    result = assemble([body[:10], body[10:]], streamed=True)
    assert result.choices[0].text == "zipped answer"
