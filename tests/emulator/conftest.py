"""Fixtures of the emulator tests: emulators on free ports, SDK clients, scrape helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI
from prometheus_client.metrics_core import Metric

from sidecar.emulator import Emulator, EmulatorOptions, run_emulator
from sidecar.scrape.parse import parse_families

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator() -> AsyncIterator[EmulatorFactory]:
    """Start emulators (``EmulatorOptions.for_tests`` plus overrides); all stop at test end."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Emulator:
            options = EmulatorOptions.for_tests(**overrides)
            return await stack.enter_async_context(run_emulator(options, port=0))

        yield start


@pytest.fixture
async def emulator(start_emulator: EmulatorFactory) -> Emulator:
    """One small, fast emulator with the current (0.33) metrics profile."""
    return await start_emulator()


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[AsyncOpenAI]:
    """The official openai SDK pointed at the emulator."""
    async with AsyncOpenAI(base_url=f"{emulator.url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client for raw bytes, headers and status codes."""
    async with aiohttp.ClientSession() as session:
        yield session


async def scrape(
    session: aiohttp.ClientSession, emulator: Emulator, accept: str | None = None
) -> tuple[bytes, list[Metric]]:
    """GET /metrics and parse it with the sidecar's own parser."""
    headers = {"Accept": accept} if accept else {}
    async with session.get(f"{emulator.url}/metrics", headers=headers) as response:
        assert response.status == 200
        body = await response.read()
        return body, parse_families(body, response.headers["Content-Type"])


def by_name(families: list[Metric]) -> dict[str, Metric]:
    """Families keyed by name (counters without ``_total``, as the parser names them)."""
    return {family.name: family for family in families}


def value(families: list[Metric], sample_name: str, **labels: str) -> float:
    """The sum of samples called ``sample_name`` whose labels include ``labels``."""
    total = 0.0
    found = False
    for family in families:
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
                found = True
    assert found, f"no sample {sample_name} {labels}"
    return total


def chat_body(emulator: Emulator, content: str = "Hello there", **extra: Any) -> dict[str, Any]:
    """A chat request body for the emulator's model."""
    return {
        "model": emulator.options.model,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }
