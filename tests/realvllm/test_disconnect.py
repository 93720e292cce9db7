"""A client that leaves mid-stream: vLLM aborts at once and does not count it; the sidecar does.

The engine is frozen (``kill -STOP`` of the EngineCore) while the client leaves, so the stream
cannot run to its end first; the abort must land within 1 s of the thaw."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
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


class _Engine:
    """Freezes and thaws the engine: ``kill -STOP``/``-CONT`` of vLLM's EngineCore, the
    emulator's stall fault. The API server keeps answering meanwhile. Both are idempotent."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._pid: int | None = None
        if backend.server is not None:
            self._pid = backend.server.pid_of("EngineCore")
            assert self._pid is not None, "no EngineCore process in the server's group"

    def freeze(self) -> None:
        if self._pid is not None:
            os.kill(self._pid, signal.SIGSTOP)
        else:
            assert self._backend.emulator is not None
            self._backend.emulator.controls.set_faults(stall=True)

    def thaw(self) -> None:
        if self._pid is not None:
            os.kill(self._pid, signal.SIGCONT)
        else:
            assert self._backend.emulator is not None
            self._backend.emulator.controls.set_faults(stall=False)


async def _shows(url: str, gauges: tuple[float, float], within: float) -> bool:
    """Whether vLLM's page shows ``gauges`` (running, waiting) within ``within`` seconds."""
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: _engine_is(url, gauges), within=within, every=0.05)
        return True
    return False


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
    engine = _Engine(backend)
    try:
        async with aiohttp.ClientSession() as session:
            reply = await session.post(f"{front.url}/v1/completions", json=body)
            assert reply.status == 200
            await reply.content.readuntil(b"\n\n")  # the first event: vLLM is generating
            # The running gauge follows the engine's stats a moment behind its tokens: a freeze
            # can catch the page before it shows the request. Then let the engine run until it
            # does, and freeze again (each try costs the stream a few of its 2,016 tokens).
            for _ in range(5):
                engine.freeze()
                if await _shows(backend.url, (1.0, 0.0), within=1.0):
                    break
                engine.thaw()
                await _shows(backend.url, (1.0, 0.0), within=2.0)
            else:
                pytest.fail("the frozen engine's page never showed the request running")
            reply.close()  # the client leaves mid-stream
            await wait_until(
                lambda: _statuses() != statuses, within=5, what="the sidecar to count it"
            )
        engine.thaw()
        thawed = time.monotonic()
        gauge = [1.0]
        while gauge[-1] != 0:  # each read is a fresh page: ends once vLLM dropped it
            assert time.monotonic() - thawed < 10, f"vLLM still running it: {gauge}"
            gauge.append((await _engine(backend.url))[0])
        abort_seconds = time.monotonic() - thawed
    finally:
        engine.thaw()
    assert abort_seconds < 1.0, f"abort took {abort_seconds:.2f} s: {gauge}"
    assert await _finished(backend.url) == finished  # aborted, not finished: vLLM counts neither
    after = _statuses()
    assert {status: after[status] - statuses.get(status, 0.0) for status in after} == {
        **dict.fromkeys(statuses, 0.0),
        "499": 1.0,
    }
