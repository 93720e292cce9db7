"""A client that leaves mid-stream: vLLM aborts at once and does not count it; the sidecar does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.metrics import REGISTRY
from tests.realvllm.conftest import MAX_MODEL_LEN, Backend
from tests.realvllm.front import Front, sidecar_in_front
from tests.realvllm.pages import fetch_page, read_total, total
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


async def _engine(url: str) -> tuple[float, float]:
    """vLLM's (running, waiting) request gauges, from a fresh page."""
    page = await fetch_page(url)
    return total(page, "vllm:num_requests_running"), total(page, "vllm:num_requests_waiting")


async def _engine_is(url: str, gauges: tuple[float, float]) -> bool:
    return await _engine(url) == gauges


async def test_client_disconnect_aborts_in_vllm_and_counts_in_the_sidecar(
    backend: Backend, front: Front
) -> None:
    # The server is shared: start from an idle engine so the gauge moves for this request only.
    await wait_until(
        lambda: _engine_is(backend.url, (0.0, 0.0)), within=60, what="vLLM idle", every=0.1
    )
    aborts_before = _client_aborts()
    engine_aborts_before = await read_total(
        backend.url, "vllm:request_success_total", finished_reason="abort"
    )
    body = {
        "model": backend.model,
        "prompt": "The long story goes",
        "max_tokens": MAX_MODEL_LEN - 32,  # ignore_eos: runs for as long as the context allows
        "stream": True,
        "ignore_eos": True,
    }
    async with aiohttp.ClientSession() as session:
        reply = await session.post(f"{front.url}/v1/completions", json=body)
        assert reply.status == 200
        await reply.content.readuntil(b"\n\n")  # the first event: vLLM is generating
        # vLLM's gauge follows its stats loop, a moment after the first token.
        await wait_until(
            lambda: _engine_is(backend.url, (1.0, 0.0)),
            within=10,
            what="vLLM's running gauge to show the request",
            every=0.02,
        )
        reply.close()  # the client leaves mid-stream
        left = time.monotonic()
    gauge = [1.0]
    while gauge[-1] != 0:  # each read is a fresh page: the loop ends once vLLM dropped it
        assert time.monotonic() - left < 10, f"vLLM still running the request: {gauge}"
        gauge.append((await _engine(backend.url))[0])
    assert time.monotonic() - left < 1.0, f"abort took {time.monotonic() - left:.2f} s: {gauge}"
    await wait_until(lambda: _client_aborts() == aborts_before + 1, within=5)
    engine_aborts = await read_total(
        backend.url, "vllm:request_success_total", finished_reason="abort"
    )
    assert engine_aborts == engine_aborts_before  # vLLM does not count client aborts
