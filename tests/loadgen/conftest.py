"""Fixtures of the load generator tests: a real emulator to load."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from sidecar.emulator import Emulator, EmulatorOptions, run_emulator

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator() -> AsyncIterator[EmulatorFactory]:
    """Start emulators (small, fast, with overrides) on free ports; all stop at test end."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Emulator:
            options = EmulatorOptions.for_tests(**overrides)
            return await stack.enter_async_context(run_emulator(options, port=0))

        yield start


@pytest.fixture
async def emulator(start_emulator: EmulatorFactory) -> Emulator:
    """A small, fast emulator."""
    return await start_emulator()
