"""The proxy's own upstream connections: keep-alive, framing variants, timeouts, back-pressure."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from sidecar.config import Settings
from sidecar.metrics import REGISTRY
from sidecar.proxy import NoSampling, ProxyServer
from sidecar.proxy.upstream import UpstreamError, UpstreamPool
from tests.support import free_port

Reply = Callable[[bytes], list[bytes]]
"""Given one request (head and body), the byte strings to write back, in order."""


@dataclass
class Scripted:
    """A raw TCP server answering each request with scripted bytes; counts connections."""

    reply: Reply
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    pause: float = 0.0


async def _serve(
    scripted: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    scripted.connections += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            request = head + await reader.readexactly(length)
            scripted.requests.append(request)
            for part in scripted.reply(request):
                if part == b"<close>":
                    writer.close()
                    return
                writer.write(part)
                await writer.drain()
                if scripted.pause:
                    await asyncio.sleep(scripted.pause)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def scripted_server(reply: Reply, pause: float = 0.0) -> AsyncIterator[tuple[Scripted, str]]:
    scripted = Scripted(reply, pause=pause)
    server = await asyncio.start_server(lambda r, w: _serve(scripted, r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield scripted, f"http://127.0.0.1:{port}"
    finally:
        server.close()


def _pool(url: str, read_timeout: float = 5.0) -> UpstreamPool:
    return UpstreamPool(
        url,
        max_connections=10,
        keepalive_seconds=4.0,
        connect_timeout=2.0,
        read_timeout=read_timeout,
    )


class Collect:
    """A BodySink that keeps what it gets."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.outcome: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )

    def data(self, piece: bytes) -> None:
        self.pieces.append(piece)

    def chunks(self, wire: bytes, piece: bytes) -> None:
        del wire
        self.pieces.append(piece)

    def end(self) -> None:
        self.outcome.set_result(None)

    def fail(self, error: BaseException) -> None:
        self.outcome.set_result(error)


async def _fetch(
    pool: UpstreamPool, method: str = "POST", body: bytes = b"{}"
) -> tuple[int, bytes, BaseException | None, bool]:
    response = await pool.request(method, "/v1/x", CIMultiDict({"X-A": "1"}), body)
    sink = Collect()
    early = response.connection.take_early()
    if early:
        sink.data(early)
    response.connection.attach(sink)
    outcome = await asyncio.wait_for(sink.outcome, 5)
    if outcome is None:
        response.release()
    else:
        response.close()
    return response.head.status, b"".join(sink.pieces), outcome, response.connection.reusable


CHUNKED_OK = [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
]


async def test_keep_alive_reuses_one_connection_and_sends_host_and_length() -> None:
    """Two requests in a row share a connection; vLLM sees Host, the headers and the body."""
    async with scripted_server(lambda _: CHUNKED_OK) as (scripted, url):
        pool = _pool(url)
        assert (await _fetch(pool))[:3] == (200, b"abc", None)
        assert (await _fetch(pool))[:3] == (200, b"abc", None)
        await pool.close()
    assert scripted.connections == 1
    host = url.removeprefix("http://")
    assert scripted.requests[0] == (
        f"POST /v1/x HTTP/1.1\r\nHost: {host}\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    )


def _counted_retries() -> float:
    return REGISTRY.get_sample_value("vllm_sidecar_proxy_upstream_retries_total") or 0.0


def _nth_request_gets(n: int, parts: list[bytes]) -> Reply:
    """``CHUNKED_OK`` to every request but the ``n``-th (1-based), which gets ``parts``."""
    seen = [0]

    def reply(_: bytes) -> list[bytes]:
        seen[0] += 1
        return parts if seen[0] == n else CHUNKED_OK

    return reply


async def test_a_reused_connection_closed_unanswered_is_retried_once_fresh() -> None:
    """uvicorn's idle timeout racing a request: vLLM reads nothing and closes; the request goes
    again on a new connection, and the client never sees the race."""
    before = _counted_retries()
    async with scripted_server(_nth_request_gets(2, [b"<close>"])) as (scripted, url):
        pool = _pool(url)
        assert (await _fetch(pool))[:3] == (200, b"abc", None)
        assert (await _fetch(pool))[:3] == (200, b"abc", None)
        await pool.close()
    assert scripted.connections == 2
    assert len(scripted.requests) == 3
    assert scripted.requests[1] == scripted.requests[2]
    assert _counted_retries() == before + 1


@pytest.mark.parametrize(
    ("nth", "parts"),
    [
        pytest.param(1, [b"<close>"], id="fresh-connection-closed-unanswered"),
        pytest.param(2, [b"HTTP/1.1 200 OK\r\n", b"<close>"], id="reused-closed-mid-head"),
    ],
)
async def test_other_closes_before_a_response_are_not_retried(nth: int, parts: list[bytes]) -> None:
    """Only the stale keep-alive case is resent: a new connection closed without an answer, or
    one that began to answer, may have run the generation, so the client sees the failure."""
    before = _counted_retries()
    async with scripted_server(_nth_request_gets(nth, parts)) as (scripted, url):
        pool = _pool(url)
        if nth == 2:
            await _fetch(pool)
        with pytest.raises(UpstreamError) as failure:
            await _fetch(pool)
        await pool.close()
    assert failure.value.kind == "disconnect"
    assert len(scripted.requests) == nth
    assert _counted_retries() == before


@pytest.mark.parametrize(
    ("reply", "body", "reusable"),
    [
        pytest.param(
            [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", b"56789"],
            b"0123456789", True, id="content-length-in-two-reads",
        ),
        pytest.param(
            [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
            b"ok", True, id="1xx-skipped",
        ),
        pytest.param(
            [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil", b" close", b"<close>"],
            b"until close", False, id="close-delimited",
        ),
        pytest.param(
            [b"HTTP/1.1 204 No Content\r\n\r\n"], b"", True, id="no-content",
        ),
    ],
)  # fmt: skip
async def test_response_framings(reply: list[bytes], body: bytes, reusable: bool) -> None:
    """Length, 1xx, close-delimited and empty responses all end where they should."""
    async with scripted_server(lambda _: reply) as (_, url):
        pool = _pool(url)
        _, got, outcome, can_reuse = await _fetch(pool)
        await pool.close()
    assert (got, outcome, can_reuse) == (body, None, reusable)


async def test_head_request_has_no_body_even_with_a_length() -> None:
    """A HEAD response ends after its head although it announces a Content-Length."""
    async with scripted_server(lambda _: [b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"]) as (
        scripted,
        url,
    ):
        pool = _pool(url)
        assert (await _fetch(pool, "HEAD", b""))[1:3] == (b"", None)
        assert (await _fetch(pool, "HEAD", b""))[1:3] == (b"", None)
        await pool.close()
    assert scripted.connections == 1


async def test_body_cut_short_is_a_disconnect() -> None:
    """vLLM closing mid-body is reported to the sink as a disconnect, never as the end."""
    reply = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", b"<close>"]
    async with scripted_server(lambda _: reply) as (_, url):
        pool = _pool(url)
        _, got, outcome, _ = await _fetch(pool)
        await pool.close()
    assert got == b"0123"
    assert isinstance(outcome, UpstreamError)
    assert outcome.kind == "disconnect"


async def test_silence_mid_body_times_out() -> None:
    """No byte for ``read_timeout`` after the head: the sink gets a TimeoutError."""
    reply = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"]
    async with scripted_server(lambda _: reply) as (_, url):
        pool = _pool(url, read_timeout=0.2)
        _, got, outcome, _ = await _fetch(pool)
        await pool.close()
    assert got == b"abc"
    assert isinstance(outcome, TimeoutError)


async def test_silence_before_the_head_and_refused_connect_raise() -> None:
    """No head within ``read_timeout`` is a timeout; a closed port is a connect error."""
    async with scripted_server(lambda _: []) as (_, url):
        pool = _pool(url, read_timeout=0.2)
        with pytest.raises(UpstreamError) as silent:
            await pool.request("GET", "/", CIMultiDict(), b"")
        await pool.close()
    assert silent.value.kind == "timeout"
    pool = _pool(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamError) as refused:
        await pool.request("GET", "/", CIMultiDict(), b"")
    assert refused.value.kind == "connect"


@pytest.mark.parametrize("idle", [0.0, 0.3], ids=["timer-running", "timer-lapsed"])
async def test_silence_on_a_reused_connection_times_out(idle: float) -> None:
    """The connection's silence timer outlives a request (or lapses while the connection is
    idle): either way the next request on it is still bounded."""
    answers = [CHUNKED_OK, []]
    async with scripted_server(lambda _: answers.pop(0)) as (scripted, url):
        pool = _pool(url, read_timeout=0.2)
        assert (await _fetch(pool))[:3] == (200, b"abc", None)
        await asyncio.sleep(idle)
        with pytest.raises(UpstreamError) as silent:
            await pool.request("GET", "/", CIMultiDict(), b"")
        await pool.close()
    assert silent.value.kind == "timeout"
    assert scripted.connections == 1


async def test_garbage_instead_of_a_head_is_a_disconnect() -> None:
    """A response that is not HTTP/1.x fails the request cleanly."""
    async with scripted_server(lambda _: [b"SSH-2.0-OpenSSH\r\n\r\n"]) as (_, url):
        pool = _pool(url)
        with pytest.raises(UpstreamError) as bad:
            await pool.request("GET", "/", CIMultiDict(), b"")
        await pool.close()
    assert bad.value.kind == "disconnect"


@pytest.mark.slow
async def test_a_client_that_stops_reading_stops_the_upstream() -> None:
    """Back-pressure: while the client reads nothing, vLLM cannot push the whole stream through.

    The fake writes 64 MiB of SSE; with the client paused the proxy must stop reading, so the
    fake's writes block well before the end. Then every byte arrives, in order.
    """
    event = b"data: " + b"x" * 1016 + b"\n\n"
    batch = event * 64  # 64 KiB
    total = 1024 * len(batch)  # 64 MiB
    written = 0
    finished = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while written < total:
            await response.write(batch)
            written += len(batch)
        await response.write_eof()
        finished.set()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    proxy = ProxyServer(
        Settings(upstream=f"http://127.0.0.1:{port}", listen="127.0.0.1:0"), NoSampling()
    )
    await proxy.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{proxy.port}/v1/chat/completions", data=b"{}"
            ) as response,
        ):
            first = await response.content.read(1024)
            await asyncio.sleep(1.0)  # read nothing: buffers fill up along the chain
            assert not finished.is_set()
            assert written < total // 2, written
            received = len(first)
            while chunk := await response.content.read(1 << 20):
                received += len(chunk)
        assert received == total
        await asyncio.wait_for(finished.wait(), 5)
    finally:
        await proxy.stop()
        await runner.cleanup()


async def test_an_idle_pooled_connection_keeps_nothing_of_the_last_response() -> None:
    """Given back to the pool, a connection drops its sink: the finished request's body and
    prompt (reachable through it) must not live on for as long as the connection idles."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="x" * 10_000)

    app = web.Application()
    app.router.add_post("/v1/x", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    pool = UpstreamPool(
        f"http://127.0.0.1:{port}",
        max_connections=2,
        keepalive_seconds=60,
        connect_timeout=5,
        read_timeout=5,
    )

    class Sink:
        def __init__(self) -> None:
            self.body = bytearray()
            self.done = asyncio.Event()

        def data(self, piece: bytes) -> None:
            self.body += piece

        def chunks(self, wire: bytes, piece: bytes) -> None:
            self.body += piece

        def end(self) -> None:
            self.done.set()

        def fail(self, error: BaseException) -> None:
            self.done.set()

    try:
        response = await pool.request("POST", "/v1/x", CIMultiDict(), b"{}")
        sink = Sink()
        response.connection.attach(sink)
        await sink.done.wait()
        assert len(sink.body) == 10_000
        response.release()
        gone = weakref.ref(sink)
        del sink
        gc.collect()
        assert gone() is None
    finally:
        await pool.close()
        await runner.cleanup()
