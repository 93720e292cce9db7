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
from sidecar.alerting.engine import AlertEngine, rule_config
from sidecar.alerting.inputs import EngineInputs, read_registry
from sidecar.config import Settings, split_host_port
from sidecar.exporter import SignalsCollector
from sidecar.masking import mask_url
from sidecar.metrics import REGISTRY
from sidecar.probe import Prober
from sidecar.proxy.keys import load_key_ring, load_upstream_key
from sidecar.proxy.server import ProxyServer
from sidecar.sampling.pipeline import SamplingPipeline
from sidecar.sampling.spool import SpoolLockedError
from sidecar.scrape.scraper import Scraper
from sidecar.signals.derive import derive
from sidecar.signals.history import History
from sidecar.snapshot import Snapshot
from sidecar.supervise import restarting, watch


@dataclass(slots=True)
class Sidecar:
    """The running parts of one sidecar process."""

    settings: Settings
    session: aiohttp.ClientSession
    history: History
    scraper: Scraper
    admin_state: AdminState
    pipeline: SamplingPipeline
    engine: AlertEngine
    proxy: ProxyServer | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    runners: list[web.AppRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)
    exit_code: int = 0
    """Set to 1 when a background task that must not end did: the orchestrator restarts us."""

    def on_snapshot(self, _snapshot: Snapshot) -> None:
        """After each good scrape: derive signals, pass vLLM's version on to the sampler."""
        self.admin_state.signals = derive(
            self.history,
            min_requests_for_ratio=self.settings.min_requests_for_ratio,
        )
        self.pipeline.upstream_version = self.scraper.status.vllm_version

    def engine_inputs(self) -> EngineInputs:
        """What the alert engine evaluates: signals, the newest scrape, our own metrics."""
        return EngineInputs(
            signals=self.admin_state.signals,
            snapshot=self.history.latest(),
            readings=read_registry(REGISTRY),
            scrape_finished=self.scraper.status.finished_once,
        )


def check(settings: Settings) -> None:
    """Every check of ``settings`` beyond their own types and bounds, before anything opens.

    The alert overrides and the key files; ``check-config`` runs exactly this, so it rejects
    what ``run`` would. Raises :class:`~sidecar.config.ConfigError`.
    """
    rule_config(settings)
    if settings.proxy_enabled:
        load_key_ring(settings.api_keys_file)
        load_upstream_key(settings.upstream_api_key_file)


def build(settings: Settings) -> Sidecar:
    """Create the parts; nothing listens or runs until :func:`start`."""
    check(settings)  # first: a bad setting must not leave a client session open
    # force_close: each scrape connects anew, so a vLLM that refuses new connections is seen
    # as down even while an old keep-alive connection would still answer.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=4, ttl_dns_cache=300, force_close=True)
    )
    history = History(max_age=settings.history_seconds)
    scraper = Scraper(settings, session, history)
    pipeline = SamplingPipeline(settings)
    engine = AlertEngine(settings)
    proxy = ProxyServer(settings, pipeline) if settings.proxy_enabled else None
    local_registry = CollectorRegistry(auto_describe=False)
    admin_state = AdminState(
        scrape=scraper.status,
        local_registry=local_registry,
        alerts=engine.alert_list,
        sampling=pipeline.status,
    )
    local_registry.register(SignalsCollector(lambda: admin_state.signals))
    return Sidecar(
        settings=settings,
        session=session,
        history=history,
        scraper=scraper,
        admin_state=admin_state,
        pipeline=pipeline,
        engine=engine,
        proxy=proxy,
    )


async def _serve_admin(sidecar: Sidecar) -> None:
    runner = web.AppRunner(
        build_admin_app(sidecar.admin_state), access_log=None, handle_signals=False
    )
    await runner.setup()
    host, port = split_host_port(sidecar.settings.admin_listen)
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    sidecar.runners.append(runner)
    bound_host, bound_port = runner.addresses[0][:2]
    sidecar.bound["admin"] = (str(bound_host), int(bound_port))


async def start(sidecar: Sidecar) -> None:
    """Open the spool, bind the servers and start the background loops.

    Raises ``OSError`` (port taken, spool unusable) or ``SpoolLockedError`` (another sidecar
    owns ``spool_dir``); whatever was already started is stopped again first.
    """
    try:
        await sidecar.pipeline.start()
        # Records sampled before the first scrape should still carry vLLM's version.
        sidecar.scraper.status.vllm_version = await sidecar.scraper.fetch_version()
        sidecar.pipeline.upstream_version = sidecar.scraper.status.vllm_version
        await _serve_admin(sidecar)
        if sidecar.proxy is not None:
            await sidecar.proxy.start()
            host, _ = split_host_port(sidecar.settings.listen)
            sidecar.bound["proxy"] = (host, sidecar.proxy.port)
    except BaseException:
        await shutdown(sidecar)
        raise
    sidecar.tasks.append(
        asyncio.create_task(
            restarting(
                "scrape",
                lambda: sidecar.scraper.run(sidecar.stop, sidecar.on_snapshot),
                stop=sidecar.stop,
                on_crash=sidecar.scraper.crashed,
            ),
            name="scrape",
        )
    )
    if sidecar.settings.probe_interval > 0:
        prober = Prober(sidecar.settings, sidecar.session)
        sidecar.tasks.append(asyncio.create_task(prober.run(sidecar.stop), name="probe"))
    await sidecar.engine.start(sidecar.engine_inputs)
    for task in (*sidecar.pipeline.tasks, *sidecar.engine.tasks):
        watch(task, name=task.get_name(), on_failure=lambda: _part_failed(sidecar))


def _part_failed(sidecar: Sidecar) -> None:
    """A background task that must run for the process's life ended: stop, exit non-zero."""
    if sidecar.admin_state.draining:
        return  # ending is what tasks do during shutdown
    sidecar.exit_code = 1
    sidecar.admin_state.draining = True  # /readyz 503 at once
    sidecar.stop.set()


async def shutdown(sidecar: Sidecar) -> None:
    """Drain in order: mark unready, finish in-flight requests, stop loops, flush samples.

    The proxy gets the grace period first (streams in flight must complete); the sampler gets
    what is left of it to upload, and leaves the rest in the spool for the next start.
    """
    deadline = time.monotonic() + sidecar.settings.shutdown_grace_seconds
    sidecar.admin_state.draining = True
    sidecar.stop.set()
    if sidecar.proxy is not None:
        await sidecar.proxy.stop()
    for task in sidecar.tasks:
        task.cancel()
    await asyncio.gather(*sidecar.tasks, return_exceptions=True)
    await sidecar.engine.stop()
    await sidecar.pipeline.stop(max(0.0, deadline - time.monotonic()))
    for runner in reversed(sidecar.runners):
        await runner.cleanup()
    await sidecar.session.close()


async def serve_forever(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain. Returns the process exit code."""
    log = structlog.get_logger("sidecar")
    sidecar = build(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, sidecar.stop.set)
    try:
        await start(sidecar)
    except (OSError, SpoolLockedError) as exc:
        log.error("sidecar_start_failed", error=str(exc))  # noqa: TRY400 - one line, no trace
        return 1
    log.info(
        "sidecar_started",
        version=__version__,
        upstream=mask_url(settings.upstream),
        proxy=":".join(map(str, sidecar.bound["proxy"])) if "proxy" in sidecar.bound else None,
        admin=":".join(map(str, sidecar.bound["admin"])),
    )
    await sidecar.stop.wait()
    log.info("sidecar_stopping", grace_seconds=settings.shutdown_grace_seconds)
    await shutdown(sidecar)
    log.info("sidecar_stopped", exit_code=sidecar.exit_code)
    return sidecar.exit_code


def run(settings: Settings) -> int:
    """Blocking entry point used by ``vllm-sidecar run``."""
    try:
        import uvloop
    except ImportError:  # optional speed-up
        return asyncio.run(serve_forever(settings))
    return uvloop.run(serve_forever(settings))
