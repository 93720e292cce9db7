"""Client disconnects free KV blocks at once; engine-side aborts are counted, client ones not."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from sidecar.emulator import Emulator
from tests.emulator.conftest import EmulatorFactory, chat_body, scrape, value
from tests.support import wait_until

LONG = {"max_tokens": 2000, "ignore_eos": True, "stream": True}


async def _open_stream(
    http: aiohttp.ClientSession, emulator: Emulator, request_id: str
) -> aiohttp.ClientResponse:
    """Start a long stream and read until generation is under way (role event + one token)."""
    response = await http.post(
        f"{emulator.url}/v1/chat/completions",
        json=chat_body(emulator, "Write a long story.", **LONG),
        headers={"X-Request-Id": request_id},
    )
    await response.content.readuntil(b"\n\n")
    await response.content.readuntil(b"\n\n")
    return response


async def test_disconnect_frees_blocks_within_100ms_and_is_not_counted(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """0.33: the abort lands in under 100 ms, KV drops to 0, no finished-request stats recorded."""
    emulator.controls.set_faults(token_latency_ms=20)
    response = await _open_stream(http, emulator, "leaving-1")
    assert emulator.engine.kv_cache_usage > 0
    closed_at = time.monotonic()
    response.close()
    await wait_until(lambda: emulator.engine.aborted, within=1.0)
    (request_id, aborted_at), *_ = emulator.engine.aborted
    assert request_id == "leaving-1"
    assert aborted_at - closed_at < 0.1
    assert emulator.engine.kv_cache_usage == 0
    assert emulator.engine.num_running == 0
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:request_success_total") == 0
    assert value(families, "vllm:e2e_request_latency_seconds_count") == 0
    assert value(families, "vllm:prompt_tokens_total") > 0
    assert value(families, "vllm:generation_tokens_total") >= 1


async def test_client_aborts_can_be_counted_when_the_version_did(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """With count_client_aborts the disconnect shows as finished_reason="abort"."""
    emulator = await start_emulator(count_client_aborts=True)
    response = await _open_stream(http, emulator, "leaving-2")
    response.close()
    await wait_until(lambda: emulator.engine.aborted, within=1.0)
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:request_success_total", finished_reason="abort") == 1
    assert value(families, "vllm:e2e_request_latency_seconds_count") == 1


async def test_queued_request_abandoned_by_its_client_leaves_the_queue(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A non-streaming request waiting in a stalled engine is dropped when its client times out."""
    emulator.controls.set_faults(stall=True)
    with_timeout = aiohttp.ClientTimeout(total=0.3)
    with pytest.raises(TimeoutError):
        await http.post(
            f"{emulator.url}/v1/chat/completions",
            json=chat_body(emulator, max_tokens=5),
            timeout=with_timeout,
        )
    await wait_until(lambda: emulator.engine.aborted, within=1.0)
    assert emulator.engine.num_waiting == 0
    async with http.get(f"{emulator.url}/health") as health:
        assert health.status == 200


async def test_engine_side_abort_reaches_the_client_and_is_counted(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """POST /_emulator/abort ends the stream with finish_reason "abort", counted as finished."""
    emulator.controls.set_faults(token_latency_ms=20)
    response = await _open_stream(http, emulator, "victim")
    async with http.post(f"{emulator.url}/_emulator/abort", json={}) as admin:
        assert await admin.json() == {"aborted": 1}
    rest = (await asyncio.wait_for(response.read(), 2.0)).decode()
    response.close()
    assert '"finish_reason":"abort"' in rest
    assert rest.endswith("data: [DONE]\n\n")
    assert emulator.engine.aborted == []
    _, families = await scrape(http, emulator)
    assert value(families, "vllm:request_success_total", finished_reason="abort") == 1
