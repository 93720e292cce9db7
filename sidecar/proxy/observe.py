"""Cheap observation of what the proxy relays: the request's model, per-read event counts and
times, and usage/finish_reason from the response tail.

Nothing here parses JSON per event or copies a chunk. Per upstream read the proxy counts SSE
event terminators (``\\n\\n``; JSON strings escape newlines, so a blank line only ever ends an
event) and notes the time. At the end it looks once at the tail of the response for vLLM's
``usage`` object and the last ``finish_reason``.

Approximations, documented because dashboards rest on them:

* **TTFT** is the arrival of the first read that carries generated content. For chat streams
  vLLM's first event is the role event (``delta: {"role": "assistant", "content": ""}``), so
  content starts with the second event; completions start with the first. With ``n > 1`` the
  extra role events may make TTFT look early. Responses and Messages streams use a marker
  (the first ``*.delta`` / ``content_block_delta`` event).
* **Inter-token gaps** are gaps between upstream reads carrying events after the first token,
  one observation per read: events that arrive in one read reached the client together. A
  read holding only the trailer (usage event or ``[DONE]``) adds no gap.
* **Completion tokens** come from ``usage`` when vLLM sent it (always for non-streamed bodies;
  with ``stream_options.include_usage`` for streams); otherwise, for chat and completions
  streams, they are estimated as the number of content events (one token per event, vLLM's
  default unless speculative decoding delivers several per step).
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sidecar.proxy.bulk_histogram import Tally

_DONE: Final = b"data: [DONE]"
_NEWLINE: Final = ord("\n")
_EMPTY_CHOICES: Final = b'"choices":[]'
_CHOICE: Final = b'"choices":[{'
_CHOICE_LENGTH: Final = len(_CHOICE)
_USAGE_KEY: Final = b'"usage":'
_FINISH_KEY: Final = b'"finish_reason":'
TAIL_WINDOW: Final = 64 * 1024
"""How much of the response end is searched for usage and finish_reason."""

_DECODER: Final = json.JSONDecoder()
EXACT_PARSE_MAX_BYTES: Final = 64 * 1024
"""Request bodies up to this size are parsed for ``model``; larger ones are scanned."""
_MODEL_KEY: Final = b'"model"'
_MODEL_VALUE: Final = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')


def model_of(body: bytes) -> str | None:
    """The ``model`` a JSON request body asks for, or None.

    Typical bodies (a few KiB) are parsed exactly (``json.loads``, ~5 us per KiB-sized body).
    Above :data:`EXACT_PARSE_MAX_BYTES` (long prompts) a byte scan finds the first ``"model":
    "..."`` pair at ~2 GB/s instead of ~0.5 GB/s; it can only be fooled by a nested object with
    a string-valued ``model`` key placed before the top-level one (``"model"`` inside a JSON
    string is always escaped, so prompt text cannot fool it).
    """
    if not body:
        return None
    if len(body) <= EXACT_PARSE_MAX_BYTES:
        try:
            data = json.loads(body)
        except ValueError:
            return None
        model = data.get("model") if isinstance(data, dict) else None
        return model if isinstance(model, str) else None
    index = body.find(_MODEL_KEY)
    while index != -1:
        match = _MODEL_VALUE.match(body, index)
        if match:
            return match.group(1).decode("utf-8", "replace")
        index = body.find(_MODEL_KEY, index + len(_MODEL_KEY))
    return None


@dataclass(frozen=True, slots=True)
class StreamShape:
    """What the start of generated content looks like on one endpoint."""

    preamble_events: int = 0
    """Events before content (the chat role event)."""
    first_content_marker: bytes | None = None
    """For event formats where counting does not work: bytes the first content read contains."""
    counts_tokens: bool = False
    """Whether one content event is one token (chat and completions)."""


_SHAPES: Final = {
    "/v1/chat/completions": StreamShape(preamble_events=1, counts_tokens=True),
    "/v1/completions": StreamShape(counts_tokens=True),
    "/v1/responses": StreamShape(first_content_marker=b'.delta"'),
    "/v1/messages": StreamShape(first_content_marker=b"content_block_delta"),
}
_DEFAULT_SHAPE: Final = StreamShape()


def shape_for(endpoint: str) -> StreamShape:
    """The stream shape of an endpoint label (see :func:`~sidecar.proxy.metrics.endpoint_label`)."""
    return _SHAPES.get(endpoint, _DEFAULT_SHAPE)


class StreamMeter:
    """Per-read bookkeeping of one SSE stream; all times are ``time.perf_counter()`` values."""

    __slots__ = (
        "_choice_at",
        "_ended_with_newline",
        "_gap_bounds",
        "_gap_counts",
        "_marker",
        "_preamble",
        "events",
        "first_content_at",
        "gaps",
        "last_event_at",
    )

    def __init__(self, shape: StreamShape, gaps: Tally) -> None:
        self._preamble = shape.preamble_events
        self._marker = shape.first_content_marker
        self._ended_with_newline = False
        self.events = 0
        self.first_content_at: float | None = None
        self.last_event_at = 0.0
        self.gaps = gaps
        """Inter-token gaps, tallied into histogram buckets as they happen."""
        self._gap_counts = gaps.counts
        self._gap_bounds = gaps.bounds
        self._choice_at = 0
        """Where the last token read had its ``"choices":[{`` (-1: this stream's have none).
        The events of one stream share their prefix (id, created, model), so one slice there
        tells a token from a trailer without searching the read."""

    def feed(self, chunk: bytes, now: float) -> None:
        """Account for one upstream read (not empty) that arrived at ``now``.

        Runs for every relayed read, so it avoids calls: the usual read is one event whose
        only newlines are its closing ``\\n\\n`` (one ``memchr`` tells), and the gap goes
        straight into the tally's bucket.
        """
        last = len(chunk) - 1
        ends_with_newline = chunk[last] == _NEWLINE
        single = ends_with_newline and chunk.find(b"\n") == last - 1
        count = 1 if single else chunk.count(b"\n\n")
        if self._ended_with_newline and chunk[0] == _NEWLINE:
            count += 1  # an event terminator split across two reads
        self._ended_with_newline = ends_with_newline
        if not count:
            return
        self.events += count
        if self.first_content_at is None:
            if (
                self.events > self._preamble
                if self._marker is None
                else chunk.find(self._marker) != -1
            ):
                self.first_content_at = now
        elif (
            count > 1
            or chunk[self._choice_at : self._choice_at + _CHOICE_LENGTH] == _CHOICE
            or self._is_token(chunk)
        ):
            gap = now - self.last_event_at  # not a trailer (usage event or [DONE]): a token
            self._gap_counts[bisect_left(self._gap_bounds, gap)] += 1
            self.gaps.total += gap
        self.last_event_at = now

    def _is_token(self, chunk: bytes) -> bool:
        """Whether a one-event read is not the trailer (usage event or ``[DONE]``)."""
        if chunk.startswith(_DONE) or chunk.find(_EMPTY_CHOICES) != -1:
            return False
        if self._choice_at != -1:
            self._choice_at = chunk.find(_CHOICE)
        return True


def tail_of(chunks: Sequence[bytes | bytearray], window: int = TAIL_WINDOW) -> bytes | bytearray:
    """The last bytes of a response: the last chunk(s) until ``window`` bytes (one small join)."""
    if not chunks:
        return b""
    last = chunks[-1]
    if len(last) >= window or len(chunks) == 1:
        return last
    picked = [last]
    size = len(last)
    for chunk in reversed(chunks[:-1]):
        picked.append(chunk)
        size += len(chunk)
        if size >= window:
            break
    picked.reverse()
    return b"".join(picked)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts from vLLM's ``usage`` object."""

    prompt_tokens: int | None
    completion_tokens: int | None


def find_usage(tail: bytes | bytearray, window: int = TAIL_WINDOW) -> Usage | None:
    """The last non-null ``usage`` object in the final ``window`` bytes of ``tail``, if any.

    ``"usage":`` cannot occur inside a JSON string (quotes there are escaped), so every hit is a
    real key; only the object after the last one is decoded.
    """
    floor = max(len(tail) - window, 0)
    end = len(tail)
    while (index := tail.rfind(_USAGE_KEY, floor, end)) != -1:
        end = index
        start = _skip_space(tail, index + len(_USAGE_KEY))
        if tail.startswith(b"null", start):
            continue
        try:
            value, _ = _DECODER.raw_decode(tail[start : start + 4096].decode("utf-8", "replace"))
        except ValueError:
            continue
        if isinstance(value, dict):
            return Usage(_count(value.get("prompt_tokens")), _count(value.get("completion_tokens")))
    return None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def find_finish_reason(tail: bytes | bytearray, window: int = TAIL_WINDOW) -> str | None:
    """The last non-null ``finish_reason`` in the final ``window`` bytes of ``tail``."""
    floor = max(len(tail) - window, 0)
    end = len(tail)
    while (index := tail.rfind(_FINISH_KEY, floor, end)) != -1:
        end = index
        start = _skip_space(tail, index + len(_FINISH_KEY))
        if not tail.startswith(b'"', start):
            continue  # null
        close = tail.find(b'"', start + 1, start + 65)
        if close != -1:
            return tail[start + 1 : close].decode("utf-8", "replace")
    return None


def _skip_space(data: bytes | bytearray, position: int) -> int:
    while position < len(data) and data[position] in b" \t\r\n":
        position += 1
    return position


def ended_with_done(tail: bytes | bytearray) -> bool:
    """Whether a stream ended with vLLM's ``data: [DONE]`` terminator."""
    return tail.rstrip(b"\r\n").endswith(_DONE)


def estimated_completion_tokens(
    meter: StreamMeter, shape: StreamShape, tail: bytes | bytearray
) -> int | None:
    """Content events of a chat/completions stream that carried no usage object."""
    if not shape.counts_tokens:
        return None
    trailer = 1 if ended_with_done(tail) else 0
    return max(meter.events - shape.preamble_events - trailer, 0)
