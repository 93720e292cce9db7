"""vLLM killed and restarted: ``kill -9`` of the EngineCore, then of the API server.

While it is down the sidecar says so (``/readyz`` 503, ``VLLMDown`` from the in-process engine
and from a real Prometheus on the shipped rules) and its proxy answers OpenAI-shaped 502s. Once
a new server listens on the same port, everything recovers and the counters, which restarted
from zero, never give a negative rate. The emulator's equivalent of the kill is stopping it and
starting a fresh one on the same port (its counters restart from zero too).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.realvllm.launch import SERVED_MODEL, VllmServer
from tests.realvllm.conftest import KINDS, MAX_MODEL_LEN, RealVllmFactory
from tests.realvllm.drill import until
from tests.realvllm.front import Front, sidecar_in_front
from tests.realvllm.prom import Prometheus
from tests.support import Processes, free_port

SETTINGS: dict[str, Any] = {
    "scrape_interval": 0.5,
    "scrape_timeout": 2.0,
    "alert_evaluation_interval": 0.5,
    "alert_for": {"VLLMDown": 1},
}
BODY = {"model": SERVED_MODEL, "prompt": "Restart", "max_tokens": 8, "ignore_eos": True}


class Killable:
    """One backend that can be killed and brought back on the same port."""

    def __init__(self, url: str, kill: Callable[[], Coroutine[Any, Any, None]],
                 restart: Callable[[], Coroutine[Any, Any, None]]) -> None:  # fmt: skip
        self.url = url
        self.kill = kill
        self.restart = restart


@contextlib.asynccontextmanager
async def _emulator() -> AsyncIterator[Killable]:
    port = free_port()
    options = EmulatorOptions.for_tests(
        model=SERVED_MODEL, max_model_len=MAX_MODEL_LEN, metrics_profile="v0.32"
    )
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(run_emulator(options, port=port))

    async def kill() -> None:
        await stack.aclose()

    async def restart() -> None:
        await stack.enter_async_context(run_emulator(options, port=port))

    try:
        yield Killable(f"http://127.0.0.1:{port}", kill, restart)
    finally:
        await stack.aclose()


@contextlib.asynccontextmanager
async def _real(real_vllm: RealVllmFactory) -> AsyncIterator[Killable]:
    """The session's default server, killed and started again in place (same port, same work
    dir): the tests after this one find it healthy, with counters that restarted from zero."""
    server: VllmServer = real_vllm()

    async def kill() -> None:
        engine = server.pid_of("EngineCore")
        assert engine is not None, "no EngineCore process in the server's group"
        os.kill(engine, signal.SIGKILL)
        assert server.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.process.pid, signal.SIGKILL)
        await asyncio.to_thread(server.stop)

    async def restart() -> None:
        await asyncio.to_thread(server.start)

    yield Killable(server.url, kill, restart)


async def _post(url: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/completions", json=BODY) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


async def _ready(front: Front) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{front.admin_url}/readyz") as reply,
    ):
        return reply.status


def _down_firing(front: Front) -> bool:
    return any(
        a["labels"]["alertname"] == "VLLMDown" and a["state"] == "firing"
        for a in front.sidecar.engine.alert_list()
    )


def _rates(front: Front) -> list[float]:
    signals = front.sidecar.admin_state.signals
    target = signals.for_model(SERVED_MODEL) if signals else None
    if target is None:
        return []
    found = []
    for series in (target.requests_per_second, target.generation_tokens_per_second):
        found += [value for value in series.values() if value is not None]
    return found


@pytest.mark.parametrize("kind", KINDS)
async def test_kill_and_restart(
    kind: str, request: pytest.FixtureRequest, processes: Processes, tmp_path: Path
) -> None:
    backend = _real(request.getfixturevalue("real_vllm")) if kind == "real-vllm" else _emulator()
    async with backend as server:
        prometheus = await Prometheus(tmp_path / "prom", server.url, SETTINGS).start(processes)
        async with sidecar_in_front(server.url, tmp_path, **SETTINGS) as front:
            await until(lambda: _is(_ready(front), 200), "the sidecar to be ready", within=30)
            for _ in range(3):
                assert (await _post(front.url))[0] == 200
            await until(lambda: _positive(front), "request rates before the kill", within=30)

            await server.kill()
            await until(lambda: _is(_ready(front), 503), "/readyz to say vLLM is gone")
            status, body = await _post(front.url)
            assert status == 502
            assert set(body["error"]) == {"message", "type", "param", "code"}
            assert body["error"]["code"] == 502

            async def down_everywhere() -> bool:
                return _down_firing(front) and bool(await prometheus.alerts("VLLMDown"))

            await until(down_everywhere, "VLLMDown on both paths", within=60)

            await server.restart()
            await until(lambda: _is(_ready(front), 200), "/readyz after the restart", within=60)
            for _ in range(2):
                assert (await _post(front.url))[0] == 200

            async def recovered() -> bool:
                rates = _rates(front)
                assert all(rate >= 0 for rate in rates), rates  # counter reset, no negatives
                return not _down_firing(front) and not await prometheus.alerts("VLLMDown")

            await until(recovered, "VLLMDown to resolve on both paths", within=60)
            negative = await prometheus.query(
                'rate({__name__=~"vllm[:_]request_success_total"}[5m]) < 0'
            )
            assert negative == []


async def _is(status: Coroutine[Any, Any, int], expected: int) -> bool:
    return await status == expected


async def _positive(front: Front) -> bool:
    return any(rate > 0 for rate in _rates(front))
