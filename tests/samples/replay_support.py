"""A real HTTP front for replay tests: counts what arrives, then forwards it to a backend.

It records every request (path, ``X-Replay-Of``, start and end), the most requests in flight at
once, and can answer every request with a redirect instead (to prove replay never follows one).
The backend is any OpenAI-compatible base URL: the emulator here, a real vLLM in the real-vLLM
tier.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.samples.replay.client import REPLAY_HEADER


@dataclass(slots=True)
class Seen:
    path: str
    replay_of: str | None
    started: float
    ended: float = 0.0


@dataclass(slots=True)
class Front:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def replay_ids(self) -> list[str]:
        return [item.replay_of for item in self.seen if item.replay_of is not None]


@asynccontextmanager
async def run_front(backend: str | None, redirect_to: str | None = None) -> AsyncIterator[Front]:
    """Serve on 127.0.0.1 (free port); forward to ``backend`` or redirect to ``redirect_to``."""
    front = Front()
    session = aiohttp.ClientSession(trust_env=False)

    async def handle(request: web.Request) -> web.StreamResponse:
        seen = Seen(request.path, request.headers.get(REPLAY_HEADER), time.monotonic())
        front.seen.append(seen)
        front.in_flight += 1
        front.most_in_flight = max(front.most_in_flight, front.in_flight)
        try:
            if redirect_to is not None or backend is None:
                raise web.HTTPTemporaryRedirect(f"{redirect_to}{request.path}")
            body = await request.read()
            headers: dict[str, Any] = {"Content-Type": "application/json"}
            async with session.post(f"{backend}{request.path}", data=body, headers=headers) as up:
                response = web.StreamResponse(status=up.status)
                response.content_type = up.content_type
                with contextlib.suppress(ConnectionResetError):
                    await response.prepare(request)
                with contextlib.suppress(ConnectionResetError):  # the client was killed
                    async for chunk in up.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                return response
        finally:
            front.in_flight -= 1
            seen.ended = time.monotonic()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    front.url = f"http://127.0.0.1:{port}"
    try:
        yield front
    finally:
        await runner.cleanup()
        await session.close()
