"""Load and polling helpers for the drills: concurrent streams, and waiting on async conditions."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.support import wait_until


async def until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 120.0) -> None:
    """:func:`tests.support.wait_until` with the drills' long default (a real engine on 2 cores)."""
    await wait_until(condition, within=within, what=what, every=0.2)


SETTLE_SECONDS = 2.0
"""After the load stops, both sides must scrape at least this much later (two of Prometheus'
1 s scrapes), so the counts of the streams aborted at the stop are in what each one holds."""


class Load:
    """``workers`` clients streaming completions through ``url`` until :meth:`stop`.

    Each request has its own random ``prompt_tokens`` token ids, so no two share a prefix-cache
    block and the KV cost is the full prompt on vLLM and the emulator alike.
    """

    def __init__(
        self, url: str, body: dict[str, Any], workers: int, prompt_tokens: int = 0
    ) -> None:
        self.url = url
        self.body = body
        self.workers = workers
        self.prompt_tokens = prompt_tokens
        self._random = random.Random(13)
        self.finished = 0
        self.statuses: list[int] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> Load:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
        connector = aiohttp.TCPConnector(limit=0)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def _worker(self) -> None:
        assert self._session is not None
        while True:
            body = {**self.body, "stream": True}
            if self.prompt_tokens:
                body["prompt"] = [
                    self._random.randrange(10, 4000) for _ in range(self.prompt_tokens)
                ]
            async with self._session.post(f"{self.url}/v1/completions", json=body) as reply:
                self.statuses.append(reply.status)
                async for _line in reply.content:
                    pass
            self.finished += 1

    async def stop(self) -> None:
        """Cancel every client (the streams in flight are aborted) and close the session."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task
        if self._session is not None:
            await self._session.close()
