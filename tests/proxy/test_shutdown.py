"""Shutdown: no new connections, in-flight streams run to [DONE] within the grace period."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import aiohttp
import pytest

from sidecar.emulator import Emulator
from sidecar.proxy.observe import find_usage
from tests.conftest import Processes
from tests.proxy.conftest import ProxyFactory
from tests.proxy.fake_vllm import MODEL
from tests.support import free_port, wait_for_port

TOKENS = 10


def _stream_body(tokens: int = TOKENS) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": tokens,
        "stream": True,
    }


async def _stream(
    http: aiohttp.ClientSession,
    url: str,
    started: asyncio.Event,
    tokens: int = TOKENS,
    body: dict[str, object] | None = None,
) -> bytes:
    """One streamed chat; sets ``started`` once the first event arrived; returns the body."""
    json_body = body or _stream_body(tokens)
    async with http.post(f"{url}/v1/chat/completions", json=json_body) as response:
        first = await response.content.readuntil(b"\n\n")
        started.set()
        return first + await response.read()


async def _refuses_connections(url: str) -> bool:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"{url}/health"):
                return False
        except aiohttp.ClientConnectorError:
            return True


async def test_stop_lets_in_flight_streams_finish(make_proxy: ProxyFactory) -> None:
    """stop() refuses new connections at once and returns when the streams are done."""
    proxied = await make_proxy(shutdown_grace_seconds=5)
    proxied.fake.token_delay = 0.04
    async with aiohttp.ClientSession() as http:
        started = [asyncio.Event() for _ in range(4)]
        streams = [asyncio.ensure_future(_stream(http, proxied.url, event)) for event in started]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 2)
        stopping = asyncio.ensure_future(proxied.server.stop())
        await asyncio.sleep(0.05)
        assert proxied.server.draining
        assert await _refuses_connections(proxied.url)
        bodies = await asyncio.gather(*streams)
        began = time.perf_counter()
        await asyncio.wait_for(stopping, 2)
    assert time.perf_counter() - began < 0.5
    for body in bodies:
        assert body.endswith(b"data: [DONE]\n\n")
        assert body.count(b"\n\n") == TOKENS + 2
    assert all(exchange.error is None for exchange, _ in proxied.sampler.offers)


async def test_streams_past_the_grace_are_cut_and_aborted_upstream(
    make_proxy: ProxyFactory,
) -> None:
    """A stream outlasting shutdown_grace_seconds is cancelled, recorded, and vLLM aborts it."""
    proxied = await make_proxy(shutdown_grace_seconds=0.2)
    proxied.fake.token_delay = 0.1
    async with aiohttp.ClientSession() as http:
        started = asyncio.Event()
        stream = asyncio.ensure_future(_stream(http, proxied.url, started, tokens=50))
        await asyncio.wait_for(started.wait(), 2)
        began = time.perf_counter()
        await proxied.server.stop()
        assert time.perf_counter() - began < 1.0
        with pytest.raises(aiohttp.ClientPayloadError):
            await stream
    assert proxied.fake.aborted_at
    assert proxied.sampler.offers[-1][0].error == "shutdown"


@pytest.mark.slow
async def test_sigterm_under_load_completes_in_flight_streams(
    emulator: Emulator, processes: Processes
) -> None:
    """`python -m sidecar.proxy` on SIGTERM: refuses new work, finishes 16 streams, exits 0."""
    emulator.controls.set_faults(token_latency_ms=40)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = processes.start(
        [sys.executable, "-m", "sidecar.proxy"],
        env={
            "VLLM_SIDECAR_UPSTREAM": emulator.url,
            "VLLM_SIDECAR_LISTEN": f"127.0.0.1:{port}",
            "VLLM_SIDECAR_SHUTDOWN_GRACE_SECONDS": "10",
            "VLLM_SIDECAR_LOG_FORMAT": "json",
        },
    )
    await asyncio.to_thread(wait_for_port, port)
    body = {
        "model": emulator.options.model,
        "messages": [{"role": "user", "content": "Count to twenty."}],
        "max_tokens": 20,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with aiohttp.ClientSession() as http:
        started = [asyncio.Event() for _ in range(16)]
        streams = [asyncio.ensure_future(_stream(http, url, event, body=body)) for event in started]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started)), 5)
        child.send_signal(signal.SIGTERM)
        signalled = time.perf_counter()
        await asyncio.sleep(0.1)
        assert await _refuses_connections(url)
        bodies = await asyncio.gather(*streams)
    assert await asyncio.to_thread(child.wait, 10) == 0
    assert time.perf_counter() - signalled < 3
    for relayed in bodies:
        assert relayed.endswith(b"data: [DONE]\n\n")
        usage = find_usage(relayed)
        assert usage is not None
        assert usage.completion_tokens == 20
    assert not emulator.engine.aborted
