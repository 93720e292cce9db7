"""The proxy's explicit budgets: body bytes in flight, client connections, header and idle time.

Each budget, when hit, gives the client a clear answer in the OpenAI error shape and is counted
in ``vllm_sidecar_proxy_rejections_total{reason}``:

* request bodies: at most ``max_body_bytes`` each (413) and ``max_bodies_in_flight_bytes`` held
  by all requests together (503 + ``Retry-After``), reserved *before* a body is read;
* connections: at most ``max_client_connections`` open at once, also capped by the open-file
  limit so the admin server (its own listener, outside this budget) and vLLM connections always
  have descriptors left; a connection past it gets 503 and is closed;
* time: a new connection must send a whole request head within ``client_header_timeout``
  (slowloris), a body may not go silent for ``client_body_timeout`` (408), an idle keep-alive
  connection is closed after ``client_idle_timeout``;
* parse errors (bad request line, header too large: 431) are answered as JSON without echoing
  the client's bytes, and are not logged with a traceback.

The connection guard sits in the listening socket's protocol factory (:class:`GuardedSite`),
so a refused connection never reaches aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import Counter, Gauge

from sidecar.metrics import REGISTRY
from sidecar.proxy.errors import JSON_CONTENT_TYPE, error_body

log = structlog.get_logger("sidecar.proxy.limits")

REJECTIONS = Counter(
    "vllm_sidecar_proxy_rejections_total",
    "Requests or connections the proxy refused at the door because a limit or budget was hit, "
    "by reason.",
    ["reason"],
    registry=REGISTRY,
)
REJECTION_REASONS: Final = (
    "unauthorized",
    "body_too_large",
    "body_budget",
    "body_timeout",
    "connections",
    "header_timeout",
    "header_too_large",
    "bad_request",
    "bad_path",
)
for _reason in REJECTION_REASONS:
    REJECTIONS.labels(reason=_reason)

BODY_BYTES_IN_FLIGHT = Gauge(
    "vllm_sidecar_proxy_body_bytes_in_flight",
    "Request-body bytes held by the proxy right now (budget: max_bodies_in_flight_bytes).",
    registry=REGISTRY,
)
CLIENT_CONNECTIONS = Gauge(
    "vllm_sidecar_proxy_client_connections",
    "Open client connections to the proxy (budget: max_client_connections).",
    registry=REGISTRY,
)

FD_RESERVE: Final = 64
"""Descriptors kept out of the connection budget: the admin server, logs, the spool, S3."""


class BodyBudget:
    """Bytes of request bodies all requests may hold together; reserve before reading."""

    __slots__ = ("capacity", "held")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes of the budget; False (nothing taken) if they are not there."""
        if self.held + size > self.capacity:
            return False
        self.held += size
        BODY_BYTES_IN_FLIGHT.set(self.held)
        return True

    def release(self, size: int) -> None:
        """Give back what :meth:`reserve` took."""
        self.held = max(0, self.held - size)
        BODY_BYTES_IN_FLIGHT.set(self.held)


def connection_limit(configured: int, upstream_connections: int) -> int:
    """``configured``, capped by the open-file limit.

    A proxied request holds two descriptors (client and vLLM); ``FD_RESERVE`` stay free for
    everything else. The soft limit is raised to the hard one first when that is allowed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft == resource.RLIM_INFINITY:
        return configured
    upstream = min(upstream_connections, (soft - FD_RESERVE) // 2)
    usable = max(1, soft - FD_RESERVE - upstream)
    if usable < configured:
        log.warning(
            "client_connection_budget_capped",
            configured=configured,
            effective=usable,
            open_file_limit=soft,
        )
    return min(configured, usable)


def json_error(status: int, message: str, error_type: str, **headers: str) -> web.Response:
    """An OpenAI-shaped error that closes the connection (the request may be unread)."""
    response = web.Response(
        status=status,
        body=error_body(message, error_type, status),
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )
    response.force_close()
    return response


class _ProxyRequestHandler(RequestHandler):
    """aiohttp's connection handler, with parse errors answered in the OpenAI error shape."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        del message  # aiohttp's message quotes the client's bytes: never echo them
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        if status == 500:
            log.error("proxy_internal_error", exc_info=exc)
            return json_error(500, "Internal error in the proxy.", "InternalServerError")
        too_large = isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower()
        )
        if too_large:
            REJECTIONS.labels(reason="header_too_large").inc()
            return json_error(431, "Request header fields too large.", "BadRequestError")
        REJECTIONS.labels(reason="bad_request").inc()
        return json_error(
            status if 400 <= status < 500 else 400, "Malformed HTTP request.", "BadRequestError"
        )


_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)


_REFUSED_LINGERING_MAX: Final = FD_RESERVE // 2
"""Refused connections kept open for a moment (so the client reads the 503 before the close);
past this many at once, the rest are closed at once: a connect flood must not take the
descriptors kept for the admin server."""


class _Refused(asyncio.Protocol):
    """A connection past the budget: a 503, then close (reading and dropping what comes)."""

    lingering = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = error_body(
            "The proxy has too many open connections; retry shortly.",
            "ServiceUnavailableError",
            503,
        )
        write_transport: Any = transport
        write_transport.write(_REFUSAL % (len(body), body))
        with contextlib.suppress(OSError, NotImplementedError, RuntimeError):
            write_transport.write_eof()
        if _Refused.lingering >= _REFUSED_LINGERING_MAX:
            transport.close()
            return
        _Refused.lingering += 1
        asyncio.get_running_loop().call_later(1.0, self._close, transport)

    @staticmethod
    def _close(transport: asyncio.BaseTransport) -> None:
        _Refused.lingering -= 1
        transport.close()

    def data_received(self, data: bytes) -> None:
        del data


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through the connection budget and the header timer."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int,
        header_timeout: float,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog, reuse_address=True)
        self.max_connections = max_connections
        self.header_timeout = header_timeout

    async def start(self) -> None:
        """As ``TCPSite.start``, with the guarded protocol factory."""
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        handler_options = dict(server._kwargs)

        def accept() -> asyncio.BaseProtocol:
            if len(server.connections) >= self.max_connections:
                REJECTIONS.labels(reason="connections").inc()
                return _Refused()
            handler = _ProxyRequestHandler(server, loop=loop, **handler_options)
            loop.call_later(self.header_timeout, _header_deadline, handler)
            return handler

        CLIENT_CONNECTIONS.set_function(lambda: len(server.connections))

        self._server = await loop.create_server(
            accept,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


def _header_deadline(handler: RequestHandler) -> None:
    """Close a connection that has not sent one whole request head in time."""
    if handler.transport is None or handler._request_count:
        return
    REJECTIONS.labels(reason="header_timeout").inc()
    handler.force_close()
