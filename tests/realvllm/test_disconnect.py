"""A client that leaves mid-stream: vLLM aborts at once and does not count it; the sidecar does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from sidecar.metrics import REGISTRY
from tests.realvllm.conftest import MAX_MODEL_LEN, Backend
from tests.realvllm.front import Front, sidecar_in_front
from tests.realvllm.pages import fetch_page, total
from tests.support import wait_until


@pytest.fixture
async def front(backend: Backend, tmp_path: Path) -> AsyncIterator[Front]:
    async with sidecar_in_front(backend.url, tmp_path) as running:
        yield running


def _statuses() -> dict[str, float]:
    """The sidecar's request count by status (499: the client went away first)."""
    found: dict[str, float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "vllm_sidecar_proxy_requests_total":
                status = sample.labels["status"]
                found[status] = found.get(status, 0.0) + sample.value
    return found


async def _engine(url: str) -> tuple[float, float]:
    """vLLM's (running, waiting) request gauges, from a fresh page."""
    page = await fetch_page(url)
    return total(page, "vllm:num_requests_running"), total(page, "vllm:num_requests_waiting")


async def _engine_is(url: str, gauges: tuple[float, float]) -> bool:
    return await _engine(url) == gauges


async def _finished(url: str) -> dict[str, float]:
    """vLLM's finished-request counts by reason (a client abort is not among them)."""
    page = await fetch_page(url)
    return {
        reason: total(page, "vllm:request_success_total", finished_reason=reason)
        for reason in ("abort", "length", "stop")
    }


@dataclass(frozen=True)
class Departure:
    """One client that left mid-stream, as both sides counted it."""

    gauge: list[float]
    """vLLM's running gauge from the moment the client left until it read 0."""
    abort_seconds: float
    finished: dict[str, float]
    """vLLM's finished counts by reason since the request was sent."""
    statuses: dict[str, float]
    """The sidecar's request counts by status since then."""


async def _leave_mid_stream(backend: Backend, front: Front) -> Departure:
    # The server is shared: start from an idle engine so the gauge moves for this request only.
    await wait_until(
        lambda: _engine_is(backend.url, (0.0, 0.0)), within=60, what="vLLM idle", every=0.1
    )
    statuses, finished = _statuses(), await _finished(backend.url)
    body = {
        "model": backend.model,
        "prompt": "The long story goes",
        "max_tokens": MAX_MODEL_LEN - 32,  # ignore_eos: ~4 s of tokens on a quiet 2-core box
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
    abort_seconds = time.monotonic() - left
    await wait_until(
        lambda: sum(_statuses().values()) > sum(statuses.values()),
        within=5,
        what="the sidecar to count the request",
    )
    after = await _finished(backend.url)
    return Departure(
        gauge,
        abort_seconds,
        {reason: after[reason] - finished[reason] for reason in after},
        {
            status: count - statuses.get(status, 0.0)
            for status, count in _statuses().items()
            if count > statuses.get(status, 0.0)
        },
    )


async def test_client_disconnect_aborts_in_vllm_and_counts_in_the_sidecar(
    backend: Backend, front: Front
) -> None:
    # On a loaded box the whole stream can be generated (and buffered by the sockets) before
    # the client leaves; such a try shows nothing about aborts, so it is made again.
    tries = [await _leave_mid_stream(backend, front)]
    while sum(tries[-1].finished.values()) and len(tries) < 3:
        tries.append(await _leave_mid_stream(backend, front))
    left = tries[-1]
    assert left.finished == {"abort": 0, "length": 0, "stop": 0}, f"no try aborted: {tries}"
    assert left.abort_seconds < 1.0, f"abort took {left.abort_seconds:.2f} s: {left.gauge}"
    assert left.statuses == {"499": 1}  # the sidecar counts it; vLLM (above) does not
