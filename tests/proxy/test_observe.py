"""The cheap byte-level observations: event counts, TTFT point, usage, finish reason, model."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecar.proxy.bulk_histogram import Tally
from sidecar.proxy.metrics import ITL_BUCKETS
from sidecar.proxy.observe import (
    EXACT_PARSE_MAX_BYTES,
    StreamMeter,
    estimated_completion_tokens,
    find_finish_reason,
    find_usage,
    model_of,
    shape_for,
    tail_of,
)

CHAT = shape_for("/v1/chat/completions")


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chat_stream(tokens: list[str], *, usage: bool) -> list[bytes]:
    def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices}

    events = [_event(chunk({"role": "assistant", "content": ""}))]
    for index, token in enumerate(tokens):
        events.append(
            _event(chunk({"content": token}, "stop" if index == len(tokens) - 1 else None))
        )
    if usage:
        counts = {"prompt_tokens": 3, "completion_tokens": len(tokens)}
        events.append(_event({**chunk(None), "usage": counts}))
    events.append(b"data: [DONE]\n\n")
    return events


# Token texts that try to look like framing: escaped newlines, "data: ", "usage" and quotes.
TOKENS = st.lists(
    st.sampled_from(["a", "\n\n", "data: x", '"usage":{}', "\\", "é", " ", '"finish_reason":"x"']),
    min_size=1,
    max_size=12,
)


@given(tokens=TOKENS, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_event_count_survives_any_split(tokens: list[str], cuts: list[int]) -> None:
    """However the bytes are split into reads, every event is counted exactly once."""
    events = _chat_stream(tokens, usage=False)
    data = b"".join(events)
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    meter = StreamMeter(CHAT, Tally(ITL_BUCKETS))
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        meter.feed(data[start:end], float(index))
    assert meter.events == len(events)
    assert estimated_completion_tokens(meter, CHAT, data) == len(tokens)
    assert meter.first_content_at is not None


def test_ttft_is_the_first_read_after_the_role_event() -> None:
    """A read with only the role event is not the first token; the next read is."""
    events = _chat_stream(["Hel", "lo"], usage=True)
    meter = StreamMeter(CHAT, Tally(ITL_BUCKETS))
    meter.feed(events[0], 1.0)
    assert [meter.first_content_at] == [None]  # (a list, so mypy does not narrow the attribute)
    meter.feed(events[1], 2.0)
    meter.feed(events[2], 2.5)
    meter.feed(events[3], 2.6)  # usage event
    meter.feed(events[4], 2.7)  # [DONE]
    assert meter.first_content_at == 2.0
    assert (meter.gaps.count, meter.gaps.total) == (1, 0.5)


@given(
    ids=st.lists(st.sampled_from(["c", "chatcmpl-22", "x" * 40]), min_size=2, max_size=10),
    usage=st.booleans(),
)
def test_one_gap_per_token_read_and_none_for_the_trailer(ids: list[str], usage: bool) -> None:
    """Token reads add a gap each wherever their choices sit; the usage event and [DONE] none
    (also when the events' prefix changes length from one event to the next)."""
    events = [_event({"id": "r", "choices": [{"delta": {"role": "assistant"}}]})]
    events += [_event({"id": name, "choices": [{"delta": {"content": "t"}}]}) for name in ids]
    if usage:
        events.append(_event({"id": ids[-1], "choices": [], "usage": {"prompt_tokens": 1}}))
    events.append(b"data: [DONE]\n\n")
    meter = StreamMeter(CHAT, Tally(ITL_BUCKETS))
    for index, event in enumerate(events):
        meter.feed(event, float(index))
    assert meter.first_content_at == 1.0
    assert (meter.gaps.count, meter.gaps.total) == (len(ids) - 1, len(ids) - 1.0)
    assert meter.events == len(events)


def test_completions_stream_starts_content_with_the_first_event() -> None:
    """Completions streams have no role event: the first event is the first token."""
    meter = StreamMeter(shape_for("/v1/completions"), Tally(ITL_BUCKETS))
    meter.feed(_event({"choices": [{"text": "x"}]}), 1.0)
    assert meter.first_content_at == 1.0


def test_responses_stream_uses_its_delta_marker() -> None:
    """Responses API streams: TTFT is the first output delta, not the created event."""
    meter = StreamMeter(shape_for("/v1/responses"), Tally(ITL_BUCKETS))
    meter.feed(b'event: response.created\ndata: {"type":"response.created"}\n\n', 1.0)
    assert [meter.first_content_at] == [None]
    meter.feed(b'event: x\ndata: {"type":"response.output_text.delta","delta":"a"}\n\n', 2.0)
    assert meter.first_content_at == 2.0


def test_usage_found_in_stream_and_body_tails() -> None:
    """Usage comes from the usage event of a stream or the end of a JSON body."""
    stream = b"".join(_chat_stream(["a", "b"], usage=True))
    usage = find_usage(stream)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 2)
    body = json.dumps(
        {"choices": [{"message": {"content": '"usage": {"prompt_tokens": 99}'}}],
         "usage": {"prompt_tokens": 11, "completion_tokens": 4, "prompt_tokens_details": None}},
    ).encode()  # fmt: skip
    usage = find_usage(body)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 4)


def test_usage_absent_or_null_is_none() -> None:
    """No usage event, or only null usage fields, gives None."""
    assert find_usage(b"".join(_chat_stream(["a"], usage=False))) is None
    assert find_usage(b'data: {"choices":[],"usage":null}\n\n') is None
    assert find_usage(b'{"usage": {"prompt_tokens": 1') is None


def test_continuous_usage_takes_the_last_report() -> None:
    """With continuous usage stats on every chunk, the last (final) one wins."""
    tail = b'data: {"usage":{"prompt_tokens":5,"completion_tokens":1}}\n\n'
    tail += b'data: {"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\ndata: [DONE]\n\n'
    usage = find_usage(tail)
    assert usage is not None
    assert usage.completion_tokens == 2


def test_finish_reason_skips_nulls_and_takes_the_last() -> None:
    """The last non-null finish_reason, with or without a space after the colon."""
    assert find_finish_reason(b"".join(_chat_stream(["a", "b"], usage=True))) == "stop"
    assert find_finish_reason(b'{"finish_reason": "length", "x": {"finish_reason": null}}') == (
        "length"
    )
    assert find_finish_reason(b'{"finish_reason":null}') is None


def test_tail_joins_only_the_last_chunks() -> None:
    """The tail is the last chunks up to the window, not the whole response."""
    chunks = [b"a" * 10, b"b" * 10, b"c" * 10]
    assert tail_of(chunks, window=15) == b"b" * 10 + b"c" * 10
    assert tail_of(chunks[-1:], window=5) == b"c" * 10
    assert tail_of([]) == b""


def test_model_of_small_and_large_bodies() -> None:
    """Small bodies are parsed; large ones scanned; prompt text cannot fake the model."""
    assert model_of(json.dumps({"messages": [], "model": "m-1"}).encode()) == "m-1"
    assert model_of(b"not json") is None
    assert model_of(b"[1, 2]") is None
    assert model_of(b'{"model": 5}') is None
    assert model_of(b"") is None
    prompt = 'pretend {"model": "fake"} ' * (EXACT_PARSE_MAX_BYTES // 20)
    large = json.dumps({"messages": [{"role": "user", "content": prompt}], "model": "real"})
    assert len(large) > EXACT_PARSE_MAX_BYTES
    assert model_of(large.encode()) == "real"
