"""The admin HTTP server (default :9400): metrics, health, readiness and the derived signals.

It is separate from the proxy port so that Prometheus, probes and humans never compete with LLM
traffic, and so the proxy port can be exposed while the admin port stays inside the cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

from sidecar import __version__
from sidecar.metrics import REGISTRY
from sidecar.scrape.scraper import ScrapeStatus
from sidecar.signals.derive import Signals
from sidecar.signals_api import document

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


class WithoutCreated:
    """A registry's metrics minus prometheus_client's ``*_created`` samples.

    They are start timestamps of each counter and histogram child (85 of ~550 lines) that no
    query of ours uses; filtering here keeps the process-wide switch
    (``disable_created_metrics``) alone, so the emulator's vLLM-like page keeps its own.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if metric.type in ("counter", "histogram", "summary", "gauge_histogram"):
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


@dataclass(slots=True)
class AdminState:
    """What the admin routes read; owned by the app, updated by the scrape loop."""

    scrape: ScrapeStatus
    local_registry: CollectorRegistry
    signals: Signals | None = None
    alerts: Callable[[], list[dict[str, Any]]] | None = None
    sampling: Callable[[], dict[str, Any]] | None = None
    draining: bool = False
    """Set on SIGTERM: /readyz answers 503 so load balancers stop sending new requests."""
    extra_routes: list[web.RouteDef] = field(default_factory=list)


def build_admin_app(state: AdminState) -> web.Application:
    """The aiohttp application serving the admin endpoints."""

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(WithoutCreated(REGISTRY)) + generate_latest(
            WithoutCreated(state.local_registry)
        )
        return web.Response(body=body, headers={"Content-Type": TEXT_FORMAT})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(_request: web.Request) -> web.Response:
        scrape = state.scrape
        ready = scrape.ready and not state.draining
        body = {
            "ready": ready,
            "draining": state.draining,
            "consecutive_failures": scrape.consecutive_failures,
            "last_error": scrape.last_error_reason,
            "last_success": scrape.last_success_wall,
        }
        return web.json_response(body, status=200 if ready else 503)

    async def signals(_request: web.Request) -> web.Response:
        return web.json_response(document(state.scrape, state.signals, state.sampling))

    async def alerts(_request: web.Request) -> web.Response:
        current = state.alerts() if state.alerts else []
        return web.json_response({"status": "success", "data": {"alerts": current}})

    app = web.Application()
    handlers: list[tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("/metrics", metrics),
        ("/healthz", healthz),
        ("/readyz", readyz),
        ("/api/v1/signals", signals),
        ("/api/v1/alerts", alerts),
    ]
    for path, handler in handlers:
        app.router.add_get(path, handler)
    app.add_routes(state.extra_routes)
    return app
