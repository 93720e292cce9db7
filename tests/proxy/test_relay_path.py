"""The per-read relay path (upstream connection -> pipe -> client transport), read by read.

The fast path forwards vLLM's chunks to a chunked client as they came; every other shape of
read goes through the exact decoder and is re-framed. Either way the client must receive valid
chunked framing of exactly vLLM's body, the sampler's copy must be that body, and the body must
end (or fail) exactly as the state machine says. These tests drive the socket callbacks
directly, so each read is exactly the bytes given (TCP would merge or split them).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.proxy import metrics
from sidecar.proxy.flight import Flight
from sidecar.proxy.observe import StreamMeter, shape_for
from sidecar.proxy.pipe import BACKPRESSURE, ENDED, Pipe
from sidecar.proxy.upstream import UpstreamConnection, UpstreamError
from tests.proxy.helpers import RecordingSampler

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class _Socket:
    """A transport double: keeps what is written, never pushes back unless told to."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.closing = False
        self.queued = 0
        self.reading = True

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.queued

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str) -> None:
        del name


@dataclass
class Relayed:
    """What one response turned into: the client's bytes, the sampler's body, the outcome."""

    client: bytes
    body: bytes
    outcome: object
    reusable: bool
    events: int
    upstream_reading: bool
    pipe: Pipe = field(repr=False)


def relay(
    reads: list[bytes], *, chunked_client: bool = True, paused: bool = False, queued: int = 0
) -> Relayed:
    """Feed ``reads`` (after the response head) through a connection and a pipe."""
    loop = asyncio.new_event_loop()
    try:
        upstream_socket, client_socket = _Socket(), _Socket()
        client_socket.queued = queued
        connection = UpstreamConnection(loop, read_timeout=60.0)
        connection.connection_made(upstream_socket)  # type: ignore[arg-type]
        head = connection.send(b"POST / HTTP/1.1\r\n\r\n", b"{}", head_only=False)
        connection.data_received(HEAD)
        assert head.done()
        assert connection.take_early() == b""
        flight = Flight(0.0, 0.0, "POST", "/v1/chat/completions")
        flight.decide(RecordingSampler(sample=True))  # sampled: the whole body is kept
        meter = StreamMeter(shape_for(flight.endpoint), metrics.INTER_TOKEN_SECONDS.tally())
        request: Any = SimpleNamespace(
            transport=client_socket, protocol=SimpleNamespace(writing_paused=paused)
        )
        pipe = Pipe(request, flight, connection, chunked=chunked_client, meter=meter)
        connection.attach(pipe)
        for read in reads:
            connection.data_received(read)
        outcome = pipe._outcome
        if outcome is ENDED and chunked_client:
            client_socket.write(b"0\r\n\r\n")  # what aiohttp's write_eof adds
        reusable = connection.reusable and connection.at_rest
        connection.close()
        return Relayed(
            bytes(client_socket.sent),
            bytes(flight.body),
            outcome,
            reusable,
            meter.events,
            upstream_socket.reading,
            pipe,
        )
    finally:
        loop.close()


def strict_dechunk(wire: bytes) -> bytes:
    """Decode chunked framing as a strict client would: hex sizes only, CRLFs where due."""
    body = bytearray()
    position = 0
    while True:
        line_end = wire.index(b"\r\n", position)
        digits = wire[position:line_end]
        assert digits
        assert all(c in b"0123456789abcdefABCDEF" for c in digits), digits
        size = int(digits, 16)
        start = line_end + 2
        if size == 0:
            assert wire[start:] == b"\r\n", wire[start:]
            return bytes(body)
        assert wire[start + size : start + size + 2] == b"\r\n"
        body += wire[start : start + size]
        position = start + size + 2


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


EVENTS = [b'data: {"n":%d,"choices":[{"delta":{"content":"x"}}]}\n\n' % n for n in range(4)]
LAST = b"0\r\n\r\n"


def test_one_chunk_per_read_goes_out_as_it_came() -> None:
    """The usual read: vLLM's chunk bytes are the client's, and the body is the events."""
    relayed = relay([chunk(event) for event in EVENTS] + [LAST])
    assert relayed.client == b"".join(chunk(event) for event in EVENTS) + LAST
    assert relayed.body == b"".join(EVENTS)
    assert (relayed.outcome, relayed.reusable, relayed.events) == (ENDED, True, 4)


@pytest.mark.parametrize("with_last", [False, True], ids=["last-chunk-apart", "last-chunk-with"])
def test_several_chunks_in_one_read(with_last: bool) -> None:
    """Several chunks (and maybe the last chunk) in one read: one write, no last chunk twice."""
    wire = b"".join(chunk(event) for event in EVENTS)
    relayed = relay([wire + LAST] if with_last else [wire, LAST])
    assert relayed.client == wire + LAST
    assert relayed.body == b"".join(EVENTS)
    assert (relayed.outcome, relayed.reusable, relayed.events) == (ENDED, True, 4)


def test_the_last_data_chunk_and_the_last_chunk_in_one_read() -> None:
    """vLLM's usual ending: ``[DONE]`` and the last chunk together."""
    done = chunk(b"data: [DONE]\n\n")
    relayed = relay([chunk(EVENTS[0]), done + LAST])
    assert relayed.client == chunk(EVENTS[0]) + done + LAST
    assert relayed.body == EVENTS[0] + b"data: [DONE]\n\n"
    assert relayed.outcome is ENDED


@pytest.mark.parametrize(
    "cut",
    [1, 2, 3, 10, len(chunk(EVENTS[0])) - 2, len(chunk(EVENTS[0])) - 1],
    ids=["in-size", "before-crlf", "in-crlf", "in-data", "before-end-crlf", "in-end-crlf"],
)
def test_a_chunk_split_across_reads(cut: int) -> None:
    """Wherever a read cuts a chunk, the client gets valid framing of the same bytes."""
    first = chunk(EVENTS[0])
    relayed = relay([first[:cut], first[cut:] + chunk(EVENTS[1]), chunk(EVENTS[2]), LAST])
    assert strict_dechunk(relayed.client) == relayed.body == b"".join(EVENTS[:3])
    assert relayed.client.endswith(chunk(EVENTS[2]) + LAST)  # back on the fast path
    assert (relayed.outcome, relayed.events) == (ENDED, 3)


@pytest.mark.parametrize(
    "ending",
    [b"0\r\nX-Trailer: 1\r\n\r\n", b"0;done=1\r\n\r\n", b"0\r\n", b"000\r\n\r\n"],
    ids=["trailer", "extension", "split-last-chunk", "zeros"],
)
def test_odd_endings_end_the_body_without_leaking_framing(ending: bytes) -> None:
    """Trailers and extensions on the last chunk are vLLM's framing, not the client's."""
    reads = [chunk(EVENTS[0]) + ending]
    if ending == b"0\r\n":
        reads.append(b"\r\n")
    relayed = relay(reads)
    assert relayed.client == chunk(EVENTS[0]) + LAST
    assert relayed.body == EVENTS[0]
    assert (relayed.outcome, relayed.reusable) == (ENDED, True)


@pytest.mark.parametrize(
    "framed",
    [b"%x;ext=1\r\n%b\r\n", b"00%x\r\n%b\r\n", b"0x%x\r\n%b\r\n", b"%X\r\n%b\r\n"],
    ids=["extension", "leading-zeros", "hex-prefix", "upper-case"],
)
def test_unusual_size_lines_reach_the_client_as_valid_chunks(framed: bytes) -> None:
    """Extensions and leading zeros are re-framed; every chunk the client sees is plain."""
    odd = framed % (len(EVENTS[1]), EVENTS[1])
    relayed = relay([chunk(EVENTS[0]), odd, chunk(EVENTS[2]), LAST])
    assert strict_dechunk(relayed.client) == relayed.body == b"".join(EVENTS[:3])
    assert b";" not in relayed.client.replace(EVENTS[1], b"")
    assert relayed.outcome is ENDED


@pytest.mark.parametrize(
    "bad",
    [b"zz\r\nhello\r\n", b"-5\r\nhello\r\n", b"5\r\nhelloXX", b"\r\nhello\r\n"],
)
def test_bad_framing_fails_the_body_after_the_good_chunks(bad: bytes) -> None:
    """Broken framing is a disconnect; what came before it was relayed, nothing after it."""
    relayed = relay([chunk(EVENTS[0]), chunk(EVENTS[1]) + bad, chunk(EVENTS[2])])
    assert isinstance(relayed.outcome, UpstreamError)
    assert relayed.outcome.kind == "disconnect"
    assert relayed.client == chunk(EVENTS[0]) + chunk(EVENTS[1])
    assert relayed.body == EVENTS[0] + EVENTS[1]
    assert not relayed.reusable


def test_bytes_after_the_last_chunk_make_the_connection_unusable() -> None:
    relayed = relay([chunk(EVENTS[0]) + LAST + b"HTTP/1.1 200 OK\r\n"])
    assert relayed.client == chunk(EVENTS[0]) + LAST
    assert (relayed.outcome, relayed.reusable) == (ENDED, False)


def test_a_client_without_chunked_framing_gets_the_bare_body() -> None:
    """HTTP/1.0 clients (close-delimited responses) receive the events, no chunk framing."""
    first = chunk(EVENTS[0])
    relayed = relay([first, chunk(EVENTS[1]) + first[:5], first[5:] + LAST], chunked_client=False)
    assert relayed.client == relayed.body == EVENTS[0] + EVENTS[1] + EVENTS[0]
    assert relayed.outcome is ENDED


def test_a_paused_client_pauses_the_upstream_on_the_fast_path() -> None:
    """Bytes queued and the protocol paused: the pipe stops vLLM's reads and tells the handler."""
    loop = asyncio.new_event_loop()
    try:
        upstream_socket, client_socket = _Socket(), _Socket()
        connection = UpstreamConnection(loop, read_timeout=60.0)
        connection.connection_made(upstream_socket)  # type: ignore[arg-type]
        connection.send(b"POST / HTTP/1.1\r\n\r\n", b"", head_only=False)
        connection.data_received(HEAD)
        protocol = SimpleNamespace(writing_paused=False)
        request: Any = SimpleNamespace(transport=client_socket, protocol=protocol)
        pipe = Pipe(request, Flight(0.0, 0.0, "POST", "/x"), connection, chunked=True, meter=None)
        connection.attach(pipe)
        connection.data_received(chunk(EVENTS[0]))
        assert pipe._outcome is None
        client_socket.queued = 1  # bytes queued, but the protocol was not paused: go on
        connection.data_received(chunk(EVENTS[1]))
        assert (pipe._outcome, upstream_socket.reading) == (None, True)
        protocol.writing_paused = True
        connection.data_received(chunk(EVENTS[2]))
        assert (pipe._outcome, upstream_socket.reading) == (BACKPRESSURE, False)
        connection.close()
    finally:
        loop.close()


def test_a_body_ending_on_a_paused_read_leaves_the_connection_reading() -> None:
    """The read that fills the client's buffer may also end the body: the handler then never
    drains, so the pooled connection must not stay paused (its next response would hang)."""
    relayed = relay([chunk(EVENTS[0]) + LAST], paused=True, queued=1)
    assert relayed.outcome is ENDED
    assert relayed.reusable
    assert relayed.upstream_reading


@given(
    payloads=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=10),
    cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12),
    odd=st.sets(st.integers(min_value=0, max_value=9), max_size=3),
    trailer=st.sampled_from([b"", b"X-Trailer: 1\r\n"]),
    chunked_client=st.booleans(),
)
def test_any_split_of_any_framing_relays_exactly_the_body(
    payloads: list[bytes], cuts: list[int], odd: set[int], trailer: bytes, chunked_client: bool
) -> None:
    """However vLLM frames the chunks and the reads cut them, the client and the sampler get
    exactly the body, in valid framing, and the body ends once."""
    wire = b"".join(
        (b"0%x;e=1\r\n%b\r\n" if index in odd else b"%x\r\n%b\r\n") % (len(payload), payload)
        for index, payload in enumerate(payloads)
    )
    wire += b"0\r\n" + trailer + b"\r\n"
    points = [0, *sorted({cut for cut in cuts if cut < len(wire)}), len(wire)]
    reads = [wire[start:end] for start, end in itertools.pairwise(points)]
    relayed = relay(reads, chunked_client=chunked_client)
    body = b"".join(payloads)
    assert relayed.body == body
    assert (strict_dechunk(relayed.client) if chunked_client else relayed.client) == body
    assert (relayed.outcome, relayed.reusable) == (ENDED, True)
