"""Bytes, statuses, headers and request ids cross the proxy unchanged; its own errors are clean."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from tests.proxy.conftest import ProxyFactory
from tests.proxy.fake_vllm import MODEL
from tests.proxy.helpers import Proxied

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client that leaves bodies and headers alone."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def test_stream_bytes_are_identical_direct_and_proxied(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """The SSE body through the proxy is byte-for-byte vLLM's, with its content type."""
    bodies = []
    for base in (proxy.fake.url, proxy.url):
        async with http.post(
            f"{base}/v1/chat/completions",
            json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
            headers={"X-Request-Id": "same"},
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            bodies.append(await response.read())
    assert bodies[0] == bodies[1]
    assert bodies[1].endswith(b"data: [DONE]\n\n")


async def test_events_are_relayed_as_they_arrive(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """Each event reaches the client when vLLM sends it, not when the stream ends."""
    proxy.fake.token_delay = 0.08
    arrivals: list[float] = []
    async with http.post(f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        async for _chunk in r.content.iter_any():
            arrivals.append(time.perf_counter())
    # role, 4 tokens, finish, [DONE]: separated by the upstream's 80 ms pauses.
    assert len(arrivals) >= 6
    assert arrivals[-1] - arrivals[0] >= 0.3
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert sum(1 for gap in gaps if gap >= 0.05) >= 5


async def test_status_and_headers_pass_through_minus_hop_by_hop(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """Status, body and end-to-end headers come back; hop-by-hop ones do not."""
    url = URL(f"{proxy.url}/custom/path?a=1&b=%2F", encoded=True)
    async with http.put(url, data=b"xyz") as response:
        assert response.status == 201
        assert response.headers["X-Custom"] == "kept"
        assert response.headers["Set-Cookie"] == "a=b"
        assert "Keep-Alive" not in response.headers
        assert await response.json() == {
            "path": "/custom/path?a=1&b=%2F",
            "method": "PUT",
            "length": 3,
        }


async def test_request_headers_forwarded_minus_hop_by_hop(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """Client headers reach vLLM except hop-by-hop ones and those named by Connection."""
    headers = {
        "X-Tenant": "t1",
        "Connection": "keep-alive, X-Private",
        "X-Private": "secret-hop",
        "Proxy-Authorization": "Basic abc",
        "User-Agent": "my-app/1.0",
    }
    async with http.post(f"{proxy.url}/v1/chat/completions", json=CHAT, headers=headers) as r:
        assert r.status == 200
    seen = {name.lower(): value for name, value in proxy.fake.seen[-1].headers.items()}
    assert seen["x-tenant"] == "t1"
    assert seen["user-agent"] == "my-app/1.0"
    assert seen["content-type"] == "application/json"
    assert "x-private" not in seen
    assert "proxy-authorization" not in seen
    assert json.loads(proxy.fake.seen[-1].body) == CHAT


async def test_client_request_id_is_forwarded_and_returned(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """A client's X-Request-Id goes to vLLM and comes back, though vLLM does not echo it."""
    async with http.post(
        f"{proxy.url}/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "client-id-7"}
    ) as response:
        assert response.headers["X-Request-Id"] == "client-id-7"
        assert (await response.json())["id"] == "chatcmpl-client-id-7"
    assert proxy.fake.seen[-1].headers["X-Request-Id"] == "client-id-7"
    assert proxy.sampler.decisions[-1] == ("client-id-7", MODEL)


async def test_request_id_is_generated_when_missing(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """Without one, the proxy makes a random 32-hex-digit id, sends it to vLLM and returns it."""
    proxy.fake.echo_request_id = True
    async with http.get(f"{proxy.url}/v1/models") as response:
        generated = response.headers.getall("X-Request-Id")
    assert len(generated) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", generated[0])
    assert proxy.fake.seen[-1].headers["X-Request-Id"] == generated[0]


async def test_vllm_error_body_passes_unchanged(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """vLLM's 404 for an unknown model arrives with its exact status and body."""
    bodies = []
    for base in (proxy.fake.url, proxy.url):
        async with http.post(
            f"{base}/v1/chat/completions", json={**CHAT, "model": "nope"}
        ) as response:
            assert response.status == 404
            bodies.append(await response.read())
    assert bodies[0] == bodies[1]
    assert json.loads(bodies[1])["error"]["type"] == "NotFoundError"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_the_limit_is_413(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession, chunked: bool
) -> None:
    """A body over max_body_bytes gets an OpenAI-shaped 413 and never reaches vLLM."""
    proxied = await make_proxy(max_body_bytes=1000)
    body = json.dumps({**CHAT, "pad": "x" * 1000}).encode()

    async def produce() -> AsyncIterator[bytes]:
        yield body

    data = produce() if chunked else body
    async with http.post(f"{proxied.url}/v1/chat/completions", data=data) as response:
        assert response.status == 413
        error = (await response.json())["error"]
    assert error["code"] == 413
    assert error["type"] == "RequestEntityTooLargeError"
    assert proxied.fake.seen == []


async def test_body_at_the_limit_is_relayed(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A body of exactly max_body_bytes is still accepted."""
    body = json.dumps(CHAT).encode()
    proxied = await make_proxy(max_body_bytes=len(body))
    async with http.post(f"{proxied.url}/v1/chat/completions", data=body) as response:
        assert response.status == 200
    assert proxied.fake.seen[-1].body == body


async def test_upstream_down_is_502(make_proxy: ProxyFactory, http: aiohttp.ClientSession) -> None:
    """Nothing listening upstream: a clean OpenAI-shaped 502 with the request id."""
    from tests.support import free_port

    proxied = await make_proxy(upstream=f"http://127.0.0.1:{free_port()}")
    async with http.post(
        f"{proxied.url}/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "down-1"}
    ) as response:
        assert response.status == 502
        assert response.headers["X-Request-Id"] == "down-1"
        body = await response.json()
    assert body == {
        "error": {
            "message": "Cannot connect to vLLM.",
            "type": "BadGatewayError",
            "param": None,
            "code": 502,
        }
    }
    assert proxied.sampler.offers[-1][0].error == "upstream_connect"


async def test_upstream_silent_before_headers_is_504(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """vLLM silent past upstream_read_timeout before answering: a clean 504, promptly."""
    proxied = await make_proxy(upstream_read_timeout=0.3)
    proxied.fake.mode = "stall_headers"
    started = time.perf_counter()
    async with http.post(f"{proxied.url}/v1/chat/completions", json=CHAT) as response:
        assert response.status == 504
        error = (await response.json())["error"]
    assert time.perf_counter() - started < 2
    assert error["type"] == "GatewayTimeoutError"
    assert error["code"] == 504


@pytest.mark.parametrize(
    ("mode", "error_type"),
    [("stall_mid_stream", "GatewayTimeoutError"), ("break_mid_stream", "BadGatewayError")],
)
async def test_stream_failure_after_headers_is_reported_in_band(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession, mode: str, error_type: str
) -> None:
    """A stream vLLM abandons ends with vLLM's in-band error event and [DONE]."""
    proxied = await make_proxy(upstream_read_timeout=0.3)
    proxied.fake.mode = mode
    async with http.post(
        f"{proxied.url}/v1/chat/completions", json={**CHAT, "stream": True}
    ) as response:
        assert response.status == 200
        body = await response.read()
    events = body.split(b"\n\n")
    assert events[-1] == b""
    assert events[-2] == b"data: [DONE]"
    error = json.loads(events[-3].removeprefix(b"data: "))["error"]
    assert error["type"] == error_type
    assert body.count(b"\n\n") == 4  # role, one token, error, [DONE]


async def test_body_cut_off_by_vllm_is_not_passed_off_as_complete(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """A non-streamed body vLLM breaks off ends the client connection with an error."""
    proxy.fake.mode = "break_mid_body"
    async with http.post(f"{proxy.url}/v1/chat/completions", json=CHAT) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert proxy.sampler.offers[-1][0].error == "upstream_mid_response"
