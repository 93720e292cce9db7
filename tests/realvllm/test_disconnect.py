"""A client that leaves mid-stream: vLLM aborts at once and does not count it; the sidecar does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.metrics import REGISTRY
from tests.realvllm.conftest import Backend
from tests.realvllm.front import Front, sidecar_in_front
from tests.realvllm.pages import read_total
from tests.support import wait_until


@pytest.fixture
async def front(backend: Backend, tmp_path: Path) -> AsyncIterator[Front]:
    async with sidecar_in_front(backend.url, tmp_path) as running:
        yield running


def _client_aborts() -> float:
    """The sidecar's own count of requests whose client went away first (status 499)."""
    found = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "vllm_sidecar_proxy_requests_total":
                found += sample.value if sample.labels.get("status") == "499" else 0.0
    return found


async def test_client_disconnect_aborts_in_vllm_and_counts_in_the_sidecar(
    backend: Backend, front: Front
) -> None:
    aborts_before = _client_aborts()
    engine_aborts_before = await read_total(
        backend.url, "vllm:request_success_total", finished_reason="abort"
    )
    body = {
        "model": backend.model,
        "prompt": "The long story goes",
        "max_tokens": 1500,
        "stream": True,
        "ignore_eos": True,
    }
    async with aiohttp.ClientSession() as session:
        reply = await session.post(f"{front.url}/v1/completions", json=body)
        assert reply.status == 200
        await reply.content.readuntil(b"\n\n")  # the first event: vLLM is generating
        running = 0.0
        started = time.monotonic()
        while running != 1:  # vLLM's gauge follows its stats loop, a moment after the first token
            assert time.monotonic() - started < 10, "vLLM's running gauge never showed the request"
            running = await read_total(backend.url, "vllm:num_requests_running")
        reply.close()  # the client leaves mid-stream
        left = time.monotonic()
    gauge = [running]
    while gauge[-1] != 0:  # each read is a fresh page: the loop ends once vLLM dropped it
        assert time.monotonic() - left < 10, f"vLLM still running the request: {gauge}"
        gauge.append(await read_total(backend.url, "vllm:num_requests_running"))
    assert time.monotonic() - left < 1.0, f"abort took {time.monotonic() - left:.2f} s: {gauge}"
    await wait_until(lambda: _client_aborts() == aborts_before + 1, within=5)
    engine_aborts = await read_total(
        backend.url, "vllm:request_success_total", finished_reason="abort"
    )
    assert engine_aborts == engine_aborts_before  # vLLM does not count client aborts
