"""Fault injection over the admin endpoint: the fire drills users run against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from sidecar.emulator import Emulator
from sidecar.emulator.text import REFUSAL
from tests.emulator.conftest import EmulatorFactory, chat_body, scrape, value
from tests.support import wait_until


async def _faults(http: aiohttp.ClientSession, emulator: Emulator, **faults: Any) -> Any:
    async with http.post(f"{emulator.url}/_emulator/faults", json=faults) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_kv_pressure_shows_on_metrics_at_once_and_clears(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """kv_pressure 0.9 puts the KV gauge at >= 0.9 before any request; DELETE clears it."""
    assert (await _faults(http, emulator, kv_pressure=0.9))["kv_pressure"] == 0.9
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:kv_cache_usage_perc") >= 0.9
    async with http.delete(f"{emulator.url}/_emulator/faults") as response:
        assert (await response.json())["kv_pressure"] == 0
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:kv_cache_usage_perc") == 0


async def test_unhealthy_outage_503s_health_and_api_but_serves_metrics(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """An 'unhealthy' outage: /health and /v1 answer 503 (vLLM error shape), /metrics 200."""
    await _faults(http, emulator, outage="unhealthy")
    async with http.get(f"{emulator.url}/health") as response:
        assert response.status == 503
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator)
    ) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == 503
    async with http.get(f"{emulator.url}/metrics") as response:
        assert response.status == 200
    await _faults(http, emulator, outage="none")
    async with http.get(f"{emulator.url}/health") as response:
        assert response.status == 200


async def test_refuse_outage_closes_the_port_then_heals_itself(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """'refuse' makes connections fail (like a dead process) for outage_seconds, then recovers."""
    await _faults(http, emulator, outage="refuse", outage_seconds=0.5)
    await wait_until(lambda: not emulator.listening, within=1.0)
    fresh = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=fresh) as new_client:
        with pytest.raises(aiohttp.ClientConnectorError):
            await new_client.get(f"{emulator.url}/health")
        await wait_until(lambda: emulator.listening, within=2.0)
        async with new_client.get(f"{emulator.url}/health") as response:
            assert response.status == 200
    assert emulator.controls.faults.outage == "none"


async def test_refuse_outage_also_drops_kept_alive_connections(emulator: Emulator) -> None:
    """A client with a pooled connection (a scraper) fails too, as with a dead vLLM."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as pooled:
        async with pooled.get(f"{emulator.url}/metrics") as response:
            assert response.status == 200
            await response.read()
        await _faults(pooled, emulator, outage="refuse", outage_seconds=3.0)
        await wait_until(lambda: not emulator.listening, within=1.0)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with pooled.get(f"{emulator.url}/metrics") as response:
                await response.read()


async def test_error_rate_fails_requests_both_ways_and_counts_them(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """error_rate 1: HTTP 500 when not streaming, an in-band error event when streaming."""
    await _faults(http, emulator, error_rate=1.0)
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator, max_tokens=20)
    ) as response:
        assert response.status == 500
        assert (await response.json())["error"]["type"] == "InternalServerError"
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator, max_tokens=20, stream=True)
    ) as response:
        assert response.status == 200
        events = (await response.read()).decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert json.loads(events[-3].removeprefix("data: "))["error"]["code"] == 500
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:request_success_total", finished_reason="error") == 2


async def test_added_latency_shows_in_client_ttft_and_vllm_ttft(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """latency_ms delays the first token by that much, seen by the client and in the histogram."""
    await _faults(http, emulator, latency_ms=250)
    started = time.monotonic()
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator, max_tokens=3, stream=True)
    ) as response:
        await response.content.readuntil(b"\n\n")
        first = time.monotonic() - started
        await response.read()
    assert first >= 0.25
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:time_to_first_token_seconds_sum") >= 0.25
    assert value(families, "vllm:request_queue_time_seconds_sum") < 0.25


async def test_stall_freezes_streams_until_lifted(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """An engine stall sends headers but no tokens; lifting it lets the stream finish."""
    await _faults(http, emulator, stall=True)
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator, max_tokens=3, stream=True)
    ) as response:
        assert response.status == 200
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(response.content.readuntil(b"\n\n"), 0.3)
        assert emulator.engine.num_waiting == 1
        await _faults(http, emulator, stall=False)
        body = await asyncio.wait_for(response.read(), 2.0)
    assert body.endswith(b"data: [DONE]\n\n")


async def test_defer_holds_waiting_requests_as_deferred_until_lifted(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """defer: requests wait, counted as reason="deferred" (not capacity); lifting admits them."""
    await _faults(http, emulator, defer=True)
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator, max_tokens=3, stream=True)
    ) as response:
        assert response.status == 200
        await wait_until(lambda: emulator.engine.num_waiting == 1)
        async with http.get(f"{emulator.url}/metrics") as page:
            text = await page.text()
        by_reason = {
            line.split('reason="')[1].split('"')[0]: float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("vllm:num_requests_waiting_by_reason{")
        }
        assert by_reason == {"capacity": 0.0, "deferred": 1.0}
        await _faults(http, emulator, defer=False)
        body = await asyncio.wait_for(response.read(), 2.0)
    assert body.endswith(b"data: [DONE]\n\n")


async def test_stall_share_freezes_after_first_token_holding_kv(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """stall_share 1: the first token arrives, then nothing, and the KV blocks stay pinned."""
    await _faults(http, emulator, stall_share=1.0)
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator, max_tokens=9, stream=True)
    ) as response:
        await response.content.readuntil(b"\n\n")
        await response.content.readuntil(b"\n\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(response.content.readuntil(b"\n\n"), 0.3)
        assert emulator.engine.kv_cache_usage > 0
    await wait_until(lambda: emulator.engine.kv_cache_usage == 0, within=1.0)


async def test_bad_fault_update_is_rejected_and_changes_nothing(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A 400 names the bad field; the faults stay as they were."""
    for body in ({"error_rate": 2}, {"nope": 1}, {"stall": "yes"}, {"outage": "refuse"}):
        async with http.post(f"{emulator.url}/_emulator/faults", json=body) as response:
            assert response.status == 400
            assert (await response.json())["error"]
    async with http.post(f"{emulator.url}/_emulator/faults", data=b"[1,") as response:
        assert response.status == 400
    async with http.get(f"{emulator.url}/_emulator/state") as response:
        state = await response.json()
    assert state["faults"]["error_rate"] == 0
    assert state["engine"]["ranks"][0]["num_gpu_blocks"] == emulator.options.num_gpu_blocks


async def test_behaviour_switch_makes_the_model_refuse(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """refusal_share 1 at run time: the same prompt now gets the fixed refusal."""
    async with http.post(
        f"{emulator.url}/_emulator/behaviour", json={"refusal_share": 1.0}
    ) as response:
        assert (await response.json())["refusal_share"] == 1.0
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=chat_body(emulator, max_tokens=50)
    ) as response:
        reply = await response.json()
    assert reply["choices"][0]["message"]["content"] == "".join(REFUSAL)
    assert reply["choices"][0]["finish_reason"] == "stop"


async def test_queue_cap_rejects_with_503_and_counts_the_reason(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """max_num_queued_reqs: over the cap a request gets 503 and admission_rejections_total grows."""
    emulator = await start_emulator(max_num_queued_reqs=1, stall=True)
    url = f"{emulator.url}/v1/completions"
    body = {"prompt": "hi", "max_tokens": 2}
    first = asyncio.create_task(http.post(url, json=body))
    await wait_until(lambda: emulator.engine.num_waiting == 1, within=1.0)
    async with http.post(url, json=body) as response:
        assert response.status == 503
        assert (await response.json())["error"]["type"] == "QueueOverflowError"
    emulator.controls.set_faults(stall=False)
    async with await first as response:
        assert response.status == 200
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:admission_rejections_total", reason="max_num_queued_reqs") == 1


async def test_admin_can_be_switched_off(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """Without admin_enabled the /_emulator endpoints do not exist."""
    emulator = await start_emulator(admin_enabled=False)
    async with http.get(f"{emulator.url}/_emulator/state") as response:
        assert response.status == 404
