"""A client that goes away makes vLLM abort the request at once (so it frees its KV blocks)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from sidecar.config import Settings
from sidecar.emulator import Emulator
from sidecar.proxy import build_proxy_app
from tests.proxy.conftest import ProxyFactory
from tests.proxy.fake_vllm import MODEL, FakeVLLM
from tests.proxy.helpers import Proxied, RecordingSampler, sample_value
from tests.support import free_port, wait_until

STREAM = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 50,
    "stream": True,
}


@pytest.mark.parametrize("token_latency_ms", [0.0, 300.0], ids=["busy-stream", "between-tokens"])
async def test_disconnect_mid_stream_aborts_upstream_within_100ms(
    make_proxy: ProxyFactory, emulator: Emulator, token_latency_ms: float
) -> None:
    """Closing the client socket mid-stream makes the emulator's engine abort in < 100 ms."""
    emulator.controls.set_faults(token_latency_ms=token_latency_ms)
    proxied = await make_proxy(upstream=emulator.url)
    body = {
        "model": emulator.options.model,
        "messages": [{"role": "user", "content": "Write a long story."}],
        "max_tokens": 2000,
        "ignore_eos": True,
        "stream": True,
    }
    labels = {"model_name": "other", "key": "none", "status": "499"}
    disconnects = sample_value(
        "vllm_sidecar_proxy_requests_total", endpoint="/v1/chat/completions", **labels
    )
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{proxied.url}/v1/chat/completions", json=body, headers={"X-Request-Id": "gone-1"}
        )
        await response.content.readuntil(b"\n\n")  # the role event
        await response.content.readuntil(b"\n\n")  # a token: generation is under way
        closed_at = time.monotonic()
        response.close()  # drops the connection, like a killed client
    await wait_until(lambda: emulator.engine.aborted)
    (aborted_id, aborted_at), *_ = emulator.engine.aborted
    assert aborted_id == "gone-1"
    assert aborted_at - closed_at < 0.1
    await wait_until(lambda: proxied.sampler.offers)
    exchange, _ = proxied.sampler.offers[-1]
    assert exchange.error == "client_disconnect"
    assert exchange.status == 499
    assert exchange.response_chunks
    after = sample_value(
        "vllm_sidecar_proxy_requests_total", endpoint="/v1/chat/completions", **labels
    )
    assert after == disconnects + 1


async def test_disconnect_before_vllm_answers_aborts_upstream(proxy: Proxied) -> None:
    """A client leaving while vLLM still queues the request cancels the upstream request."""
    proxy.fake.mode = "stall_headers"
    async with aiohttp.ClientSession() as http:
        request = asyncio.ensure_future(
            http.post(
                f"{proxy.url}/v1/chat/completions", json=STREAM, headers={"X-Request-Id": "gone-2"}
            )
        )
        await wait_until(lambda: proxy.fake.seen)
        closed_at = time.perf_counter()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    await wait_until(lambda: "gone-2" in proxy.fake.aborted_at)
    assert proxy.fake.aborted_at["gone-2"] - closed_at < 0.1
    await wait_until(lambda: proxy.sampler.offers)
    assert proxy.sampler.offers[-1][0].error == "client_disconnect"


async def test_disconnect_noticed_on_write_without_handler_cancellation(
    fake_vllm: FakeVLLM,
) -> None:
    """Run by a runner without handler_cancellation, the next relayed chunk still aborts vLLM."""
    fake_vllm.token_delay = 0.01
    sampler = RecordingSampler()
    app = build_proxy_app(Settings(upstream=fake_vllm.url, listen="127.0.0.1:0"), sampler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=STREAM,
                headers={"X-Request-Id": "gone-3"},
            )
            await response.content.readuntil(b"\n\n")
            closed_at = time.perf_counter()
            response.close()
        await wait_until(lambda: "gone-3" in fake_vllm.aborted_at)
        assert fake_vllm.aborted_at["gone-3"] - closed_at < 0.1
        await wait_until(lambda: sampler.offers)
        assert sampler.offers[-1][0].error == "client_disconnect"
    finally:
        await runner.cleanup()


async def test_client_leaving_mid_upload_is_recorded_not_forwarded(fake_vllm: FakeVLLM) -> None:
    """A client that drops the connection mid-body never reaches vLLM and is recorded as gone."""
    sampler = RecordingSampler()
    app = build_proxy_app(Settings(upstream=fake_vllm.url, listen="127.0.0.1:0"), sampler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b'Content-Type: application/json\r\n\r\n{"model": '
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: sampler.offers)
        assert sampler.offers[-1][0].error == "client_disconnect"
        assert sampler.offers[-1][0].status == 499
        assert fake_vllm.seen == []
    finally:
        await runner.cleanup()
