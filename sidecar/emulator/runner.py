"""Run an emulator in-process: ``async with run_emulator(options, port=0) as emu: ...``.

The handle gives the base URL and direct access to the engine (``emu.engine.aborted``,
``emu.engine.kv_cache_usage`` ...) and the run-time controls (``emu.controls.set_faults(...)``).
It also carries out timed outages: ``refuse`` closes the listening socket (new connections are
refused) and every kept-alive connection (each closes after its request in flight, so streams
already open finish; a client's pooled connection does not outlive the "dead process"), and
reopens the socket on the same port when the time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from sidecar.emulator.controls import Controls, Faults
from sidecar.emulator.engine import Engine
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.server import EmulatorState, build_app

log = structlog.get_logger()


class Emulator:
    """A running emulator: where it listens and the levers to pull."""

    def __init__(self, state: EmulatorState, runner: web.AppRunner, host: str) -> None:
        self.state = state
        self.host = host
        self.port = 0
        self._runner = runner
        self._site: web.TCPSite | None = None
        self._outage_task: asyncio.Task[None] | None = None
        self._outage_spec: tuple[str, float | None] = ("none", None)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8000`` (append ``/v1`` for OpenAI clients)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def options(self) -> EmulatorOptions:
        return self.state.options

    @property
    def engine(self) -> Engine:
        return self.state.engine

    @property
    def controls(self) -> Controls:
        return self.state.controls

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def _listen(self, port: int) -> None:
        site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
        await site.start()
        self._site = site
        if not self.port:
            self.port = int(self._runner.addresses[0][1])

    async def _close_listener(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    def _drop_connections(self) -> None:
        """Close idle keep-alive connections now, busy ones after their current request."""
        server = self._runner.server
        for handler in server.connections if server is not None else ():
            handler.close()

    def _faults_changed(self, faults: Faults) -> None:
        spec = (faults.outage, faults.outage_seconds)
        if spec == self._outage_spec:
            return
        self._outage_spec = spec
        if self._outage_task is not None:
            self._outage_task.cancel()
            self._outage_task = None
        if faults.outage != "none" or not self.listening:
            self._outage_task = asyncio.get_running_loop().create_task(self._run_outage(faults))

    async def _run_outage(self, faults: Faults) -> None:
        """Apply the listener part of an outage, then heal it when ``outage_seconds`` pass."""
        if faults.outage == "refuse":
            await self._close_listener()
            self._drop_connections()
            log.info("emulator_outage", mode="refuse", seconds=faults.outage_seconds)
        elif not self.listening:
            await self._listen(self.port)
        if faults.outage == "none" or not faults.outage_seconds:
            return
        await asyncio.sleep(faults.outage_seconds)
        if not self.listening:
            await self._listen(self.port)
        self._outage_task = None
        self.controls.set_faults(outage="none", outage_seconds=None)
        log.info("emulator_outage_over")

    async def start(self, port: int) -> None:
        await self._listen(port)
        self.controls.on_faults_changed(self._faults_changed)
        self._faults_changed(self.controls.faults)
        self.engine.start()

    async def close(self) -> None:
        if self._outage_task is not None:
            self._outage_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._outage_task
        await self.engine.stop()
        await self._runner.cleanup()


@contextlib.asynccontextmanager
async def run_emulator(
    options: EmulatorOptions | None = None, *, host: str = "127.0.0.1", port: int = 8000
) -> AsyncIterator[Emulator]:
    """Serve an emulator on ``host:port`` (``port=0`` picks a free one) for the ``with`` body."""
    state = EmulatorState.create(options or EmulatorOptions())
    runner = web.AppRunner(build_app(state), handler_cancellation=True, access_log=None)
    await runner.setup()
    emulator = Emulator(state, runner, host)
    try:
        await emulator.start(port)
        yield emulator
    finally:
        await emulator.close()
