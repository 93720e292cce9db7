"""HTTP/1.1 framing of the upstream side: chunked bodies in any split, heads, request lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from sidecar.proxy.framing import (
    ChunkedDecoder,
    FramingError,
    parse_response_head,
    request_head,
)


def _chunked(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    framed = b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces if piece)
    return framed + b"0\r\n" + trailer + b"\r\n"


def _decode_in_parts(wire: bytes, cuts: list[int]) -> tuple[bytes, ChunkedDecoder]:
    decoder = ChunkedDecoder()
    body = b""
    start = 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        body += decoder.feed(wire[start:cut])
        start = cut
    return body, decoder


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    trailer=st.sampled_from([b"", b"X-Trailer: 1\r\n"]),
)
def test_chunked_body_survives_any_split(
    pieces: list[bytes], cuts: list[int], trailer: bytes
) -> None:
    """However the wire is cut into reads, the decoded body is the original and ends once."""
    wire = _chunked(pieces, trailer)
    body, decoder = _decode_in_parts(wire, [cut for cut in cuts if cut < len(wire)])
    assert body == b"".join(pieces)
    assert decoder.done
    assert not decoder.leftover


def test_chunk_extensions_are_ignored_and_bytes_after_the_end_are_flagged() -> None:
    """``size;ext`` lines decode; bytes after the terminal chunk mark the connection unusable."""
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5;name=value\r\nhello\r\n0\r\n\r\nGARBAGE") == b"hello"
    assert decoder.done
    assert decoder.leftover


@pytest.mark.parametrize(
    "wire",
    [b"zz\r\nhello\r\n", b"5\r\nhelloXX", b"-5\r\nhello\r\n", b"0x" + b"f" * 20 + b"\r\n"],
)
def test_malformed_chunks_raise(wire: bytes) -> None:
    """Bad sizes and bad chunk terminators are framing errors, never silently accepted."""
    with pytest.raises(FramingError):
        ChunkedDecoder().feed(wire)


def test_an_endless_size_line_is_refused() -> None:
    """A size line that never ends is refused once it passes 1 KiB instead of being buffered."""
    decoder = ChunkedDecoder()
    decoder.feed(b"1" * 1000)
    with pytest.raises(FramingError):
        decoder.feed(b"1" * 100)


def test_response_head_keeps_header_case_order_and_repeats() -> None:
    """Status, reason and every header (repeated ones too) come through as vLLM sent them."""
    head = parse_response_head(
        b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json; charset=utf-8\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Odd:   padded  "
    )
    assert (head.status, head.reason, head.version) == (429, "Too Many Requests", (1, 1))
    assert head.content_type == "application/json"
    assert head.headers.getall("set-cookie") == ["a=1", "b=2"]
    assert head.headers["X-Odd"] == "padded"
    assert head.keep_alive


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close", False),
        (b"HTTP/1.0 200 OK", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive", True),
    ],
)
def test_keep_alive_follows_version_and_connection_header(raw: bytes, keep_alive: bool) -> None:
    """HTTP/1.0 closes unless it says keep-alive; ``Connection: close`` always closes."""
    assert parse_response_head(raw).keep_alive is keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/2 200 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 200 OK\r\nno-colon",
        b"HTTP/1.1 200 OK\r\n x: 1",
    ],
)
def test_bad_heads_raise(raw: bytes) -> None:
    """Status lines and header lines the relay cannot trust are framing errors."""
    with pytest.raises(FramingError):
        parse_response_head(raw)


def test_request_head_sets_host_and_length() -> None:
    """Host and Content-Length are the proxy's own; other headers pass in order."""
    headers = CIMultiDict([("Content-Type", "application/json"), ("X-A", "1"), ("X-A", "2")])
    head = request_head("POST", "/v1/chat/completions?x=1", "vllm:8000", headers, b"{}")
    assert head == (
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: vllm:8000\r\n"
        b"Content-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\n"
    )
    assert b"Content-Length" not in request_head("GET", "/v1/models", "h", CIMultiDict(), b"")
    assert b"Content-Length: 0" in request_head("POST", "/x", "h", CIMultiDict(), b"")
