"""Serving alerts fire drills: both paths fire; the time from fault to firing is printed.

Each drill runs against every backend in :data:`tests.alerting.drills.BACKENDS`: the emulator and
real vLLM (marked ``realvllm``; stall = ``kill -STOP`` of its EngineCore). Timings print as
``drill ALERT on BACKEND: ...`` (run with ``-s`` to see them) and are attached to the test report
as properties.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.alerting.drills import ADMISSION_LIMIT, BACKENDS, DrillStack, drill_stack, open_backend
from tests.support import Processes, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend_name", BACKENDS)]
Record = Callable[[str, object], None]


async def _stream(stack: DrillStack, max_tokens: int, *, abandon: bool) -> int:
    """One streamed completion through the proxy; ``abandon`` hangs up after the first chunk."""
    body = {
        "model": stack.backend.model,
        "messages": [{"role": "user", "content": "Tell the drill story."}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    async with stack.session.post(
        f"{stack.proxy}/v1/chat/completions", json=body, timeout=aiohttp.ClientTimeout(total=600)
    ) as response:
        if response.status != 200 or abandon:
            if response.status == 200:
                await response.content.readline()
            response.close()
            return response.status
        async for _line in response.content:
            pass
        return response.status


async def _workers(
    count: int, job: Callable[[int], Awaitable[object]], stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    async def loop(index: int) -> None:
        while not stop.is_set():
            await job(index)

    return [asyncio.create_task(loop(index)) for index in range(count)]


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_engine_stall_fires_on_both_paths_and_resolves(
    backend_name: str,
    request: pytest.FixtureRequest,
    processes: Processes,
    tmp_path: Path,
    record_property: Record,
) -> None:
    """Requests in flight and a frozen engine (/health still 200): VLLMEngineStalled fires."""
    async with contextlib.AsyncExitStack() as exits:
        backend = await exits.enter_async_context(open_backend(backend_name, request))
        stack = await exits.enter_async_context(drill_stack(backend, processes, tmp_path))
        stop = asyncio.Event()
        clients = await _workers(4, lambda _i: _stream(stack, 400, abandon=False), stop)
        try:

            async def busy() -> bool:
                body = await stack.json(
                    f"{stack.prometheus}/api/v1/query",
                    query="model_name:vllm_requests_running:sum > 0",
                )
                return bool(body["data"]["result"])

            await wait_until(busy, within=60, what="requests running in vLLM", every=0.2)
            assert await stack.firing("VLLMEngineStalled") == (False, False)
            await backend.stall()
            timing = await stack.time_to_fire("VLLMEngineStalled", time.monotonic())
            async with stack.session.get(f"{backend.url}/health") as response:
                assert response.status == 200, "the server must still answer while stalled"
            await backend.resume()
            await wait_until(
                lambda: stack.resolved("VLLMEngineStalled"),
                within=60,
                what="the stall to resolve",
                every=0.2,
            )
        finally:
            stop.set()
            await _stop(clients)
    record_property("fault_to_firing_seconds", timing.line())
    assert timing.prometheus is not None, timing.line()
    assert timing.sidecar is not None, timing.line()


async def test_admission_rejections_fire_on_both_paths(
    backend_name: str,
    request: pytest.FixtureRequest,
    processes: Processes,
    tmp_path: Path,
    record_property: Record,
) -> None:
    """--max-num-queued-reqs 2 and a burst of eight clients: VLLMAdmissionRejections fires."""
    async with contextlib.AsyncExitStack() as exits:
        backend = await exits.enter_async_context(
            open_backend(backend_name, request, admission_limit=ADMISSION_LIMIT)
        )
        stack = await exits.enter_async_context(drill_stack(backend, processes, tmp_path))
        statuses: list[int] = []

        async def request(_index: int) -> None:
            statuses.append(await _stream(stack, 16, abandon=False))

        stop = asyncio.Event()
        started = time.monotonic()
        clients = await _workers(8, request, stop)
        try:
            timing = await stack.time_to_fire("VLLMAdmissionRejections", started)
        finally:
            stop.set()
            await _stop(clients)
    record_property("fault_to_firing_seconds", timing.line())
    assert 503 in statuses, sorted(set(statuses))
    assert 200 in statuses, sorted(set(statuses))
    assert timing.prometheus is not None, timing.line()
    assert timing.sidecar is not None, timing.line()


async def test_clients_abandoning_streams_fire_on_both_paths(
    backend_name: str,
    request: pytest.FixtureRequest,
    processes: Processes,
    tmp_path: Path,
    record_property: Record,
) -> None:
    """Half the clients hang up after the first chunk: VLLMClientAbortsHigh fires."""
    async with contextlib.AsyncExitStack() as exits:
        backend = await exits.enter_async_context(open_backend(backend_name, request))
        stack = await exits.enter_async_context(drill_stack(backend, processes, tmp_path))
        stop = asyncio.Event()
        started = time.monotonic()
        clients = await _workers(4, lambda index: _stream(stack, 64, abandon=index % 2 == 0), stop)
        try:
            timing = await stack.time_to_fire("VLLMClientAbortsHigh", started)
        finally:
            stop.set()
            await _stop(clients)
    record_property("fault_to_firing_seconds", timing.line())
    assert timing.prometheus is not None, timing.line()
    assert timing.sidecar is not None, timing.line()
