"""Building and running the proxy: the app factory, the pooled upstream connections, the lifecycle.

Shutdown (aiohttp 3.14 ``AppRunner.cleanup()``, which :meth:`ProxyServer.stop` calls): the
listening socket closes first (new connections are refused), idle keep-alive connections are
closed, ``on_shutdown`` marks the handler as draining, then every in-flight request gets up to
``shutdown_grace_seconds`` to finish (streams run to ``[DONE]``); stragglers are cancelled
(recorded with ``error="shutdown"``). Only then does ``on_cleanup`` close the upstream pool,
so draining streams keep their vLLM connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web

from sidecar.config import Settings, split_host_port
from sidecar.proxy.keys import load_key_ring, load_upstream_key
from sidecar.proxy.limits import BodyBudget, GuardedSite, connection_limit
from sidecar.proxy.relay import ProxyHandler
from sidecar.proxy.upstream import UpstreamPool
from sidecar.sampling.exchange import Sampler

UPSTREAM_KEEPALIVE_SECONDS = 4.0
"""Idle pooled connections to vLLM are dropped after this; below uvicorn's 5 s keep-alive so the
proxy never sends a request on a connection vLLM is closing (POSTs are not retried)."""

PROXY_HANDLER: web.AppKey[ProxyHandler] = web.AppKey("proxy_handler", ProxyHandler)
"""The app's handler; tests and the composer read ``draining`` or the pool through it."""

RUNNER_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"handler_cancellation": True, "access_log": None, "auto_decompress": False}
)
"""``AppRunner`` options the proxy needs if someone runs its app with their own runner:
cancellation is how a client disconnect reaches vLLM at once; per-request access logs cost
more than the relay itself; bodies are relayed as sent (a gzip body stays gzip, with its
``Content-Encoding``, and the size limit applies to the bytes on the wire)."""


def make_upstream_pool(settings: Settings) -> UpstreamPool:
    """The pooled connections to vLLM.

    Bodies are relayed as they are (no decompression), and vLLM sees the client's headers
    (minus hop-by-hop ones), not a client library's defaults. No total deadline (streams may
    run for minutes); only connect time and silence bound a request. Must be called inside a
    running event loop.
    """
    return UpstreamPool(
        settings.upstream,
        max_connections=settings.upstream_max_connections,
        keepalive_seconds=UPSTREAM_KEEPALIVE_SECONDS,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        max_trailer_bytes=settings.upstream_max_trailer_bytes,
    )


def build_proxy_app(
    settings: Settings, sampler: Sampler, *, pool: UpstreamPool | None = None
) -> web.Application:
    """The pass-through as an aiohttp app that answers every path on ``settings.upstream``.

    Key files are read here, so a bad file fails fast with a
    :class:`~sidecar.config.ConfigError`. Without ``pool`` the app opens its own on start-up
    and closes it on cleanup; a given pool stays the caller's to close. Run the app with
    :data:`RUNNER_OPTIONS` (or use :class:`ProxyServer`).
    """
    handler = ProxyHandler(
        sampler=sampler,
        key_ring=load_key_ring(settings.api_keys_file, allow_insecure=settings.allow_insecure_keys),
        upstream_key=load_upstream_key(
            settings.upstream_api_key_file, allow_insecure=settings.allow_insecure_keys
        ),
        max_body_bytes=settings.max_body_bytes,
        max_response_bytes=settings.sample_max_response_bytes,
        body_budget=BodyBudget(settings.max_bodies_in_flight_bytes),
        body_timeout=settings.client_body_timeout,
    )
    # aiohttp rejects a body once its size reaches client_max_size; +1 makes the limit inclusive.
    app = web.Application(client_max_size=settings.max_body_bytes + 1)
    app[PROXY_HANDLER] = handler
    app.router.add_route("*", "/{path:.*}", handler.handle, expect_handler=handler.expect)

    async def open_session(_app: web.Application) -> None:
        handler.session = pool or make_upstream_pool(settings)

    async def mark_draining(_app: web.Application) -> None:
        handler.draining = True

    async def close_session(_app: web.Application) -> None:
        if pool is None and handler.session is not None:
            await handler.session.close()

    app.on_startup.append(open_session)
    app.on_shutdown.append(mark_draining)
    app.on_cleanup.append(close_session)
    return app


class ProxyServer:
    """The proxy listening on ``settings.listen``: ``await start()``, later ``await stop()``."""

    def __init__(
        self, settings: Settings, sampler: Sampler, *, pool: UpstreamPool | None = None
    ) -> None:
        self._settings = settings
        self.app = build_proxy_app(settings, sampler, pool=pool)
        self._runner = web.AppRunner(
            self.app,
            shutdown_timeout=settings.shutdown_grace_seconds,
            keepalive_timeout=settings.client_idle_timeout,
            **RUNNER_OPTIONS,
        )
        self._stopped = False
        self._port = 0

    async def start(self) -> None:
        """Open the upstream pool and start listening (``OSError`` if the port is taken)."""
        await self._runner.setup()
        host, port = split_host_port(self._settings.listen)
        site = GuardedSite(
            self._runner,
            host,
            port,
            max_connections=connection_limit(
                self._settings.max_client_connections, self._settings.upstream_max_connections
            ),
            header_timeout=self._settings.client_header_timeout,
        )
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()  # closes the pool the start-up hook opened
            raise
        self._port = int(self._runner.addresses[0][1])

    @property
    def port(self) -> int:
        """The bound port (useful with ``listen: 127.0.0.1:0``)."""
        return self._port

    @property
    def draining(self) -> bool:
        """Whether :meth:`stop` has begun."""
        return self.app[PROXY_HANDLER].draining

    async def stop(self) -> None:
        """Refuse new connections, let in-flight requests finish within the grace, close.

        Idempotent; returns once every request has finished or been cancelled at the deadline.
        """
        if self._stopped:
            return
        self._stopped = True
        await self._runner.cleanup()
