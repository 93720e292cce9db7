"""Composition root: builds every part from the settings, runs them, drains them on SIGTERM.

Each arrow of the data flow goes one way: the scraper feeds the history; derived signals feed the
admin server and the alert engine; the proxy hands finished exchanges to the sampler. Nothing on
the proxy path waits for the scraper, the alert engine or S3.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar import __version__
from sidecar.admin import AdminState, build_admin_app
from sidecar.config import Settings, split_host_port
from sidecar.exporter import SignalsCollector
from sidecar.scrape.scraper import Scraper
from sidecar.signals.derive import derive
from sidecar.signals.history import History


@dataclass(slots=True)
class Sidecar:
    """The running parts of one sidecar process."""

    settings: Settings
    session: aiohttp.ClientSession
    history: History
    scraper: Scraper
    admin_state: AdminState
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    runners: list[web.AppRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)

    def refresh_signals(self) -> None:
        """Derive signals from the history (called after each good scrape)."""
        self.admin_state.signals = derive(
            self.history,
            min_requests_for_ratio=self.settings.min_requests_for_ratio,
        )


def build(settings: Settings) -> Sidecar:
    """Create the parts; nothing runs until :func:`start`."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=4, ttl_dns_cache=300),
        auto_decompress=True,
    )
    history = History(max_age=settings.history_seconds)
    scraper = Scraper(settings, session, history)
    local_registry = CollectorRegistry(auto_describe=False)
    admin_state = AdminState(scrape=scraper.status, local_registry=local_registry)
    local_registry.register(SignalsCollector(lambda: admin_state.signals))
    return Sidecar(
        settings=settings,
        session=session,
        history=history,
        scraper=scraper,
        admin_state=admin_state,
    )


async def _serve(sidecar: Sidecar, name: str, app: web.Application, address: str) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = split_host_port(address)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    sidecar.runners.append(runner)
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = sockets[0].getsockname()[:2] if sockets else (host, port)
    sidecar.bound[name] = (str(actual[0]), int(actual[1]))


async def start(sidecar: Sidecar) -> None:
    """Bind the servers and start the background loops."""
    await _serve(
        sidecar, "admin", build_admin_app(sidecar.admin_state), sidecar.settings.admin_listen
    )
    sidecar.tasks.append(
        asyncio.create_task(
            sidecar.scraper.run(sidecar.stop, lambda _snapshot: sidecar.refresh_signals()),
            name="scrape",
        )
    )


async def shutdown(sidecar: Sidecar) -> None:
    """Stop loops, close servers and the upstream session, within the grace period."""
    sidecar.stop.set()
    for task in sidecar.tasks:
        task.cancel()
    await asyncio.gather(*sidecar.tasks, return_exceptions=True)
    for runner in reversed(sidecar.runners):
        await runner.cleanup()
    await sidecar.session.close()


async def serve_forever(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain."""
    log = structlog.get_logger("sidecar")
    sidecar = build(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, sidecar.stop.set)
    await start(sidecar)
    log.info(
        "sidecar_started",
        version=__version__,
        upstream=settings.upstream,
        admin=":".join(map(str, sidecar.bound["admin"])),
        started_at=time.time(),
    )
    await sidecar.stop.wait()
    log.info("sidecar_stopping", grace_seconds=settings.shutdown_grace_seconds)
    await shutdown(sidecar)
    log.info("sidecar_stopped")


def run(settings: Settings) -> int:
    """Blocking entry point used by ``vllm-sidecar run``."""
    try:
        import uvloop
    except ImportError:  # optional speed-up
        asyncio.run(serve_forever(settings))
    else:
        uvloop.run(serve_forever(settings))
    return 0
