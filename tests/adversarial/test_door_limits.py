"""Budgets at the door: body size and bodies in flight, Expect, header size and time, idle and
too many connections, malformed requests. Each answer is a clear OpenAI-shaped error, counted."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from sidecar.config import Settings
from sidecar.proxy import ProxyServer
from tests.adversarial.raw_upstream import RawUpstream
from tests.proxy.helpers import RecordingSampler, sample_value
from tests.support import wait_until

Start = Callable[..., Awaitable[ProxyServer]]


@pytest.fixture
async def upstream() -> AsyncIterator[RawUpstream]:
    raw = RawUpstream()
    await raw.start()
    yield raw
    await raw.close()


@pytest.fixture
async def start(upstream: RawUpstream) -> AsyncIterator[Start]:
    servers: list[ProxyServer] = []

    async def make(**overrides: Any) -> ProxyServer:
        settings = Settings(upstream=upstream.url, listen="127.0.0.1:0", **overrides)
        server = ProxyServer(settings, RecordingSampler())
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


def rejections(reason: str) -> float:
    return sample_value("vllm_sidecar_proxy_rejections_total", reason=reason)


def exchange(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the proxy closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def error_of(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head, head
    error: dict[str, Any] = json.loads(body)["error"]
    return error


async def test_a_chunked_body_one_byte_over_the_limit_is_refused(
    start: Start, upstream: RawUpstream
) -> None:
    server = await start(max_body_bytes=1000)
    body = b"x" * 1001
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    answer = await asyncio.to_thread(exchange, server.port, request)
    assert status_of(answer) == 413, answer[:100]
    assert error_of(answer)["type"] == "RequestEntityTooLargeError"
    exact = b"x" * 1000
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(exact), exact)
    )
    answer = await asyncio.to_thread(exchange, server.port, request)
    assert status_of(answer) == 200, answer[:100]
    assert upstream.requests[-1].body == exact


async def test_expect_100_continue_over_the_limit_gets_413_not_continue(start: Start) -> None:
    server = await start(max_body_bytes=1000)
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    answer = await asyncio.to_thread(exchange, server.port, request, read_timeout=2.0)
    assert status_of(answer) == 413, answer[:100]
    assert b"100 Continue" not in answer


async def test_a_10_kb_header_gets_431_in_the_openai_shape_without_echo(start: Start) -> None:
    server = await start()
    before = rejections("header_too_large")
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Evil: EVIL" + b"A" * 10240 + b"\r\n\r\n"
    answer = await asyncio.to_thread(exchange, server.port, request)
    assert status_of(answer) == 431, answer[:100]
    assert error_of(answer)["code"] == 431
    assert b"EVIL" not in answer
    assert rejections("header_too_large") == before + 1


async def test_a_malformed_request_gets_a_json_400_that_echoes_nothing(start: Start) -> None:
    server = await start()
    before = rejections("bad_request")
    answer = await asyncio.to_thread(
        exchange, server.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad\x01<script>: y\r\n\r\n"
    )
    assert status_of(answer) == 400, answer[:100]
    assert error_of(answer)["type"] == "BadRequestError"
    assert b"<script>" not in answer
    assert rejections("bad_request") == before + 1


async def test_bodies_in_flight_have_one_budget_and_the_client_past_it_gets_503(
    start: Start, upstream: RawUpstream
) -> None:
    """While vLLM is slow, two 1 MiB bodies fill a 2 MiB budget: the third gets 503."""
    release = asyncio.Event()

    async def slow(writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    upstream.script = slow
    server = await start(max_body_bytes=1 << 20, max_bodies_in_flight_bytes=2 << 20)
    url = f"http://127.0.0.1:{server.port}/v1/completions"
    before = rejections("body_budget")
    async with aiohttp.ClientSession() as http:

        async def post() -> tuple[int, Any]:
            async with http.post(url, data=b"x" * (1 << 20)) as response:
                return response.status, await response.read()

        held = [asyncio.create_task(post()) for _ in range(2)]
        await wait_until(lambda: len(upstream.requests) == 2)
        status, body = await post()
        assert status == 503
        assert json.loads(body)["error"]["type"] == "ServiceUnavailableError"
        assert rejections("body_budget") == before + 1
        expecting = (
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % (1 << 20)
        )
        answer = await asyncio.to_thread(exchange, server.port, expecting, read_timeout=2.0)
        assert status_of(answer) == 503, answer[:100]  # refused before the body is sent
        assert b"100 Continue" not in answer
        release.set()
        assert [(await task)[0] for task in held] == [200, 200]
        status, _ = await post()  # the budget was given back
        assert status == 200


async def test_slowloris_and_idle_connections_are_closed_in_time(start: Start) -> None:
    server = await start(client_header_timeout=1.0, client_idle_timeout=1.0)
    before = rejections("header_timeout")

    def slowloris() -> float:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            try:
                for byte in b"GET /v1/models HTTP/1.1\r\nHost: x\r\n":
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            return time.monotonic() - started if sock.recv(1) == b"" else 999.0

    def idle() -> float:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert sock.recv(1) == b""
        return time.monotonic() - started

    slow_for, idle_for = await asyncio.gather(asyncio.to_thread(slowloris), asyncio.to_thread(idle))
    assert slow_for < 3.0
    assert idle_for < 3.0
    assert rejections("header_timeout") >= before + 2


async def test_connections_past_the_budget_get_503_and_the_rest_still_work(
    start: Start,
) -> None:
    server = await start(max_client_connections=5, client_header_timeout=30.0)
    before = rejections("connections")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    try:
        await wait_until(lambda: sample_value("vllm_sidecar_proxy_client_connections") == 5)
        answer = await asyncio.to_thread(exchange, server.port, b"")
        assert status_of(answer) == 503, answer[:100]
        assert error_of(answer)["type"] == "ServiceUnavailableError"
        assert rejections("connections") == before + 1
    finally:
        for sock in idle:
            sock.close()
    async with aiohttp.ClientSession() as http:

        async def works() -> bool:
            async with http.get(f"http://127.0.0.1:{server.port}/v1/models") as response:
                return response.status == 200

        for _ in range(100):
            if await works():
                break
            await asyncio.sleep(0.05)
        assert await works()


async def test_a_gzip_body_reaches_vllm_byte_exact_with_its_own_headers(
    start: Start, upstream: RawUpstream
) -> None:
    server = await start()
    body = gzip.compress(json.dumps({"model": "m", "prompt": "hi"}).encode())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{server.port}/v1/completions",
            data=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 200
    (seen,) = upstream.requests
    assert seen.body == body
    assert seen.header("Content-Encoding") == "gzip"
    assert seen.header("Content-Length") == str(len(body))


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    start: Start,
) -> None:
    """After a response, a silent keep-alive connection lasts ``client_idle_timeout``."""
    server = await start(client_header_timeout=60.0, client_idle_timeout=1.0)

    def idle_after_one_request() -> float:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b'{"ok":true}' not in answer:
                answer += sock.recv(65536)
            assert status_of(answer) == 200
            started = time.monotonic()
            assert sock.recv(1) == b""  # closed by the proxy
            return time.monotonic() - started

    assert await asyncio.to_thread(idle_after_one_request) < 5.0


async def test_a_silent_body_gets_408_and_gives_its_budget_back(start: Start) -> None:
    """A client that declares a body and goes silent cannot hold its share of the budget."""
    server = await start(client_body_timeout=1.0)
    before = rejections("body_timeout")
    request = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"

    def answer_and_time() -> tuple[bytes, float]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"}}"):
                answer += sock.recv(65536)
        return answer, time.monotonic() - started

    answer, took = await asyncio.to_thread(answer_and_time)
    assert status_of(answer) == 408, answer[:100]
    assert error_of(answer)["type"] == "RequestTimeoutError"
    assert took < 5.0
    assert rejections("body_timeout") == before + 1
    assert sample_value("vllm_sidecar_proxy_body_bytes_in_flight") == 0
