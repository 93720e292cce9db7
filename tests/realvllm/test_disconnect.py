"""A client that leaves mid-stream: vLLM aborts at once and does not count it; the sidecar does.

The engine is frozen (``kill -STOP`` of the EngineCore) while the client leaves, so the stream
cannot run to its end first; the abort must land within 1 s of the thaw."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
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


@contextlib.contextmanager
def _engine_frozen(backend: Backend) -> Iterator[Callable[[], None]]:
    """Freeze the engine (``kill -STOP`` of vLLM's EngineCore, the emulator's stall fault) and
    give a thaw; the API server keeps answering. Thawed on the way out whatever happens."""
    if backend.server is not None:
        engine = backend.server.pid_of("EngineCore")
        assert engine is not None, "no EngineCore process in the server's group"
        os.kill(engine, signal.SIGSTOP)
        thaw: Callable[[], None] = functools.partial(os.kill, engine, signal.SIGCONT)
    else:
        assert backend.emulator is not None
        controls = backend.emulator.controls
        controls.set_faults(stall=True)
        thaw = functools.partial(controls.set_faults, stall=False)
    try:
        yield thaw
    finally:
        thaw()  # a second SIGCONT or stall=False changes nothing


async def test_client_disconnect_aborts_in_vllm_and_counts_in_the_sidecar(
    backend: Backend, front: Front
) -> None:
    """The engine is frozen while the client leaves, so the stream cannot run to its end first
    (on a busy box the whole 2,016 tokens could otherwise be generated and buffered by the
    sockets before the client left); once thawed, vLLM must drop the request within 1 s."""
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
        with _engine_frozen(backend) as thaw:
            # The engine reported the request running with its first token; a frozen engine
            # keeps that report on the page.
            await wait_until(
                lambda: _engine_is(backend.url, (1.0, 0.0)),
                within=10,
                what="vLLM's running gauge to show the request",
                every=0.05,
            )
            reply.close()  # the client leaves mid-stream
            await wait_until(
                lambda: _statuses() != statuses, within=5, what="the sidecar to count it"
            )
            thaw()
            thawed = time.monotonic()
            gauge = [1.0]
            while gauge[-1] != 0:  # each read is a fresh page: ends once vLLM dropped it
                assert time.monotonic() - thawed < 10, f"vLLM still running it: {gauge}"
                gauge.append((await _engine(backend.url))[0])
            abort_seconds = time.monotonic() - thawed
    assert abort_seconds < 1.0, f"abort took {abort_seconds:.2f} s: {gauge}"
    assert await _finished(backend.url) == finished  # aborted, not finished: vLLM counts neither
    after = _statuses()
    assert {status: after[status] - statuses.get(status, 0.0) for status in after} == {
        **dict.fromkeys(statuses, 0.0),
        "499": 1.0,
    }
