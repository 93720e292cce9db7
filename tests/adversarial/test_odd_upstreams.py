"""Odd upstreams: header lines with bare CR/LF, disagreeing Content-Length, endless trailers, a
stream that dies mid-event. The client gets a clean gateway error it can parse."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sidecar.config import Settings
from sidecar.proxy import ProxyServer
from tests.adversarial.raw_upstream import RawUpstream
from tests.proxy.helpers import RecordingSampler


@pytest.fixture
async def upstream() -> AsyncIterator[RawUpstream]:
    raw = RawUpstream()
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
async def proxy(upstream: RawUpstream) -> AsyncIterator[ProxyServer]:
    settings = Settings(
        upstream=upstream.url, listen="127.0.0.1:0", upstream_max_trailer_bytes=4096
    )
    server = ProxyServer(settings, RecordingSampler())
    await server.start()
    yield server
    await server.stop()


def answering(raw: bytes, *, then: bytes = b"", pause: float = 0.0):  # type: ignore[no-untyped-def]
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if then:
            await asyncio.sleep(pause)
            writer.write(then)
            await writer.drain()

    return script


HEADS = {
    "bare LF in a value": b"HTTP/1.1 200 OK\r\nX-A: one\ntwo\r\nContent-Length: 2\r\n\r\n{}",
    "bare CR in a value": b"HTTP/1.1 200 OK\r\nX-A: one\rtwo\r\nContent-Length: 2\r\n\r\n{}",
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
    "a list Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 5\r\n\r\n{}",
}


@pytest.mark.parametrize("case", sorted(HEADS))
async def test_a_broken_response_head_is_a_clean_502(
    proxy: ProxyServer, upstream: RawUpstream, case: str
) -> None:
    upstream.script = answering(HEADS[case])
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{proxy.port}/v1/models") as response,
    ):
        assert response.status == 502
        assert response.headers.getall("Content-Length") == [response.headers["Content-Length"]]
        error = (await response.json())["error"]
        assert error["type"] == "BadGatewayError"


async def test_identical_content_lengths_are_passed_once(
    proxy: ProxyServer, upstream: RawUpstream
) -> None:
    upstream.script = answering(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
    )
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{proxy.port}/v1/models") as response,
    ):
        assert response.status == 200
        assert response.headers.getall("Content-Length") == ["2"]
        assert await response.read() == b"{}"


async def test_an_endless_chunked_trailer_is_cut_off(
    proxy: ProxyServer, upstream: RawUpstream
) -> None:
    """vLLM's trailer is bounded (here 4 KiB): past it the response breaks off, memory stays."""
    upstream.script = answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
        b"\r\n2\r\n{}\r\n0\r\nX-Trailer: " + b"a" * 200_000,
        then=b"a",
        pause=30.0,  # the trailer never ends while the proxy waits
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.get(f"http://127.0.0.1:{proxy.port}/v1/models") as response:
                await response.read()


async def test_a_stream_dying_mid_event_ends_that_event_before_the_error_event(
    proxy: ProxyServer, upstream: RawUpstream
) -> None:
    """The partial event is terminated, so the proxy's error event parses as JSON."""
    first = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    partial = b'data: {"choices":[{"delta":{"cont'
    events = first + partial
    upstream.script = answering(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(events), events)
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{proxy.port}/v1/chat/completions",
            json={"model": "m", "stream": True},
        ) as response,
    ):
        body = await response.read()
    blocks = [block for block in body.split(b"\n\n") if block]
    assert blocks[0] + b"\n\n" == first
    assert blocks[1] == partial  # delivered as it came, then ended
    error = json.loads(blocks[2].removeprefix(b"data: "))["error"]
    assert error["type"] == "BadGatewayError"
    assert blocks[3] == b"data: [DONE]"
