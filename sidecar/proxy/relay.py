"""The pass-through request handler: forward bytes, note times, hand the exchange to the sampler.

Per request the hot path does: one header filter each way and one request on a pooled upstream
connection (:mod:`sidecar.proxy.upstream`); the response headers leave with the first body
bytes when those came with vLLM's head (one ``send``). Then per upstream read, inside the
socket's I/O callback: the chunk's size line checked, one slice appended to the body, a
``memchr`` for the event count and one ``transport.write`` of vLLM's own chunk bytes
(:mod:`sidecar.proxy.upstream`, :mod:`sidecar.proxy.pipe`). Everything else (the request's
model, the sample decision, the tail scan for usage, histogram observations, the sampler's
``offer``) happens after the last byte went out.

Failure rules (the proxy must never be the reason a request fails):

* vLLM unreachable -> 502, silent past ``upstream_read_timeout`` (or connect timeout) -> 504,
  both OpenAI-shaped (``BadGatewayError`` / ``GatewayTimeoutError``); no retries, since
  generation requests are not idempotent (nginx does the same).
* vLLM fails after the status line went out: a stream gets vLLM's own in-band error event and
  ``[DONE]``; any other body is cut off (the client connection is closed) so a truncated JSON
  body can never look complete.
* The client goes away: the handler is cancelled (the server must run with
  ``handler_cancellation=True``, as :class:`~sidecar.proxy.server.ProxyServer` does) or its next
  write fails; either way the upstream connection is closed at once, which makes vLLM abort the
  request and free its KV blocks.
* The sampler raising is counted and ignored.
"""

from __future__ import annotations

import asyncio
import time
from time import perf_counter

import structlog
from aiohttp import HttpVersion11, hdrs, web

from sidecar.proxy import metrics
from sidecar.proxy.errors import error_response, sse_error_events
from sidecar.proxy.flight import CLIENT_CLOSED, DEFAULT_BODY_LIMIT, Flight
from sidecar.proxy.headers import REQUEST_ID, client_headers, new_request_id, upstream_headers
from sidecar.proxy.keys import KeyRing, requires_key
from sidecar.proxy.observe import StreamMeter, shape_for
from sidecar.proxy.pipe import BACKPRESSURE, ENDED, ClientGone, Pipe
from sidecar.proxy.upstream import UpstreamError, UpstreamPool, UpstreamResponse
from sidecar.sampling.exchange import Sampler

_SSE = "text/event-stream"


class _HeadersWithFirstBytes(web.StreamResponse):
    """A response whose headers wait for the first body write (aiohttp then sends both at once).

    Used only when the first body bytes are already here, so nothing is held back.
    """

    _send_headers_immediately = False


class ProxyHandler:
    """The aiohttp handler for every path; one per proxy app."""

    def __init__(
        self,
        *,
        sampler: Sampler,
        key_ring: KeyRing | None,
        upstream_key: str | None,
        max_body_bytes: int,
        max_response_bytes: int = DEFAULT_BODY_LIMIT,
        models: metrics.ModelLabels | None = None,
    ) -> None:
        self._sampler = sampler
        self._keys = key_ring
        self._upstream_authorization = f"Bearer {upstream_key}" if upstream_key else None
        self._max_body = max_body_bytes
        self._max_response = max_response_bytes
        self._models = models or metrics.ModelLabels()
        self._log = structlog.get_logger("sidecar.proxy")
        self.session: UpstreamPool | None = None
        """The pooled connections to vLLM; set by the app's start-up hook."""
        self.draining = False
        """Set when shutdown begins, so requests cancelled by the grace deadline say so."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Relay one request; never raises except to propagate cancellation."""
        flight = Flight(perf_counter(), time.time(), request.method, request.path)
        flight.body_limit = self._max_response
        metrics.IN_FLIGHT.inc()
        try:
            return await self._serve(request, flight)
        except ClientGone:
            flight.error = "client_disconnect"
            return web.Response(status=CLIENT_CLOSED)  # nobody will read it
        except asyncio.CancelledError:
            flight.error = "shutdown" if self.draining else "client_disconnect"
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            flight.close_upstream()
            flight.finish(self._sampler, self._models, self._log)

    async def _serve(self, request: web.Request, flight: Flight) -> web.StreamResponse:
        headers = request.headers
        flight.request_id = request_id = headers.get(REQUEST_ID) or new_request_id()
        keep_client_authorization = True
        if self._keys is not None:
            keep_client_authorization = False
            if requires_key(request.method, flight.path):
                flight.key_name = self._keys.identify(headers.get(hdrs.AUTHORIZATION))
                if flight.key_name is None:
                    return self._reply(
                        flight, 401, "Missing or invalid API key.", "AuthenticationError",
                        error="unauthorized",
                    )  # fmt: skip
        body = await self._read_body(request)
        if body is None:
            return self._reply(
                flight, 413, f"Request body is larger than {self._max_body} bytes.",
                "RequestEntityTooLargeError", error="body_too_large",
            )  # fmt: skip
        flight.request_body = body  # its model and the sample decision wait for the end

        pool = self.session
        if pool is None:  # pragma: no cover - the start-up hook always runs first
            raise RuntimeError("proxy session not started")
        outgoing = upstream_headers(
            headers,
            request_id=request_id,
            authorization=self._upstream_authorization,
            keep_client_authorization=keep_client_authorization,
        )
        called_at = perf_counter()
        flight.overhead = called_at - flight.t0
        try:
            upstream = await pool.request(request.method, request.raw_path, outgoing, body)
        except UpstreamError as exc:
            return self._upstream_failed(flight, exc.kind, called_at)
        flight.upstream = upstream
        return await self._relay(request, flight, upstream)

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The whole request body, or None when it is over the limit."""
        length = request.content_length
        if length is not None and length > self._max_body:
            return None
        if not request.body_exists:
            return b""
        try:
            return await request.read()  # the app's client_max_size enforces the limit
        except web.HTTPRequestEntityTooLarge:
            return None
        except ConnectionError:  # the client left mid-upload (without handler cancellation)
            raise ClientGone from None

    async def _relay(
        self, request: web.Request, flight: Flight, upstream: UpstreamResponse
    ) -> web.StreamResponse:
        headers_at = perf_counter()
        head = upstream.head
        flight.status = head.status
        streamed = head.content_type == _SSE
        flight.streamed = streamed
        flight.encoded = hdrs.CONTENT_ENCODING in head.headers
        headers = client_headers(head.headers, request_id=flight.request_id)
        delimited = upstream.connection.framing in ("chunked", "close")
        if delimited:  # the body's length is unknown: never pass a Content-Length on
            headers.popall(hdrs.CONTENT_LENGTH, None)
        connection = upstream.connection
        early = connection.take_early()
        response_class = _HeadersWithFirstBytes if early else web.StreamResponse
        out = response_class(status=head.status, reason=head.reason, headers=headers)
        if delimited and request.version >= HttpVersion11:
            out.enable_chunked_encoding()  # so the pipe knows the framing it must write
        meter = None
        if streamed and not flight.encoded:
            flight.shape = shape_for(flight.endpoint)
            flight.meter = meter = StreamMeter(flight.shape, metrics.INTER_TOKEN_SECONDS.tally())
        try:
            try:
                await out.prepare(request)
                flight.decide(self._sampler)  # how much of the body to keep for the sampler
                pipe = Pipe(request, flight, connection, chunked=out.chunked, meter=meter)
                if early:
                    pipe.note(early, headers_at)
                    await out.write(early)  # one send: headers and the first body bytes
            except ConnectionError:
                raise ClientGone from None
            flight.overhead += perf_counter() - headers_at
            connection.attach(pipe)
            while (outcome := await pipe.wait()) is BACKPRESSURE:
                await pipe.drain(request)
            if isinstance(outcome, BaseException):
                raise outcome
        except ClientGone:
            flight.error = "client_disconnect"
            return out
        except (TimeoutError, UpstreamError) as exc:
            return await self._failed_mid_response(request, flight, out, exc)
        assert outcome is ENDED
        try:
            await out.write_eof()
        except ConnectionError:
            flight.error = "client_disconnect"
            return out
        flight.end = perf_counter()
        flight.complete = True
        return out

    async def _failed_mid_response(
        self,
        request: web.Request,
        flight: Flight,
        out: web.StreamResponse,
        exc: BaseException,
    ) -> web.StreamResponse:
        """vLLM broke off after its status line was relayed."""
        metrics.UPSTREAM_ERRORS.labels(kind="mid_response").inc()
        timed_out = isinstance(exc, TimeoutError)
        flight.error = "upstream_timeout" if timed_out else "upstream_mid_response"
        self._log.warning(
            "upstream failed mid-response",
            request_id=flight.request_id,
            error_type=type(exc).__name__,
            streamed=flight.streamed,
        )
        if flight.streamed:
            tail = sse_error_events(
                "vLLM stopped responding mid-stream."
                if timed_out
                else "vLLM broke off the stream.",
                "GatewayTimeoutError" if timed_out else "BadGatewayError",
                504 if timed_out else 502,
            )
            flight.body += tail
            try:
                await out.write(tail)
                await out.write_eof()
            except ConnectionError:
                flight.error = "client_disconnect"
            flight.end = perf_counter()
        elif request.transport is not None:
            request.transport.close()  # a cut-off body must not look complete
        return out

    def _upstream_failed(self, flight: Flight, kind: str, called_at: float) -> web.Response:
        """vLLM gave no response: a clean 502/504 of the proxy's own."""
        metrics.UPSTREAM_ERRORS.labels(kind=kind).inc()
        waited = perf_counter() - called_at
        self._log.warning(
            "upstream request failed",
            request_id=flight.request_id,
            kind=kind,
            waited_seconds=round(waited, 4),
        )
        if kind == "timeout":
            return self._reply(
                flight, 504, f"vLLM did not respond within {waited:.1f}s.",
                "GatewayTimeoutError", error="upstream_timeout",
            )  # fmt: skip
        message = (
            "Cannot connect to vLLM."
            if kind == "connect"
            else "vLLM closed the connection without a response."
        )
        return self._reply(flight, 502, message, "BadGatewayError", error=f"upstream_{kind}")

    @staticmethod
    def _reply(
        flight: Flight, status: int, message: str, error_type: str, *, error: str
    ) -> web.Response:
        response, body = error_response(status, message, error_type, request_id=flight.request_id)
        flight.status = status
        flight.error = error
        flight.body += body
        flight.complete = True
        return response
