"""Fixtures of the proxy tests: a fake vLLM, the proxy in front of it, a recording sampler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sidecar.config import Settings
from sidecar.emulator import Emulator, EmulatorOptions, run_emulator
from sidecar.proxy import ProxyServer
from tests.proxy.fake_vllm import FakeVLLM, run_fake_vllm
from tests.proxy.helpers import Proxied, RecordingSampler

ProxyFactory = Callable[..., Awaitable[Proxied]]


@pytest.fixture
async def fake_vllm() -> AsyncIterator[FakeVLLM]:
    """The fake vLLM on a free port."""
    async with run_fake_vllm() as fake:
        yield fake


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The project's vLLM emulator (small, ten times real time) on a free port."""
    async with run_emulator(EmulatorOptions.for_tests(), port=0) as emu:
        yield emu


@pytest.fixture
async def make_proxy(fake_vllm: FakeVLLM) -> AsyncIterator[ProxyFactory]:
    """Start proxies in front of the fake vLLM with extra settings; all are stopped at the end."""
    servers: list[ProxyServer] = []

    async def start(sampler: RecordingSampler | None = None, **overrides: Any) -> Proxied:
        values: dict[str, Any] = {
            "upstream": fake_vllm.url,
            "listen": "127.0.0.1:0",
            "shutdown_grace_seconds": 2.0,
        }
        values.update(overrides)
        recorder = sampler or RecordingSampler()
        server = ProxyServer(Settings(**values), recorder)
        await server.start()
        servers.append(server)
        return Proxied(server, recorder, fake_vllm)

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> Proxied:
    """A proxy with default settings in front of the fake vLLM."""
    return await make_proxy()
