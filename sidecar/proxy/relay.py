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
from typing import Final

import structlog
from aiohttp import HttpVersion11, hdrs, web

from sidecar.proxy import metrics
from sidecar.proxy.errors import error_response, sse_error_events
from sidecar.proxy.flight import CLIENT_CLOSED, DEFAULT_BODY_LIMIT, Flight
from sidecar.proxy.headers import REQUEST_ID, client_headers, new_request_id, upstream_headers
from sidecar.proxy.keys import KeyRing, requires_key
from sidecar.proxy.limits import REJECTIONS, BodyBudget, json_error
from sidecar.proxy.observe import StreamMeter, shape_for
from sidecar.proxy.paths import canonical_target, guard_view
from sidecar.proxy.pipe import BACKPRESSURE, ENDED, ClientGone, Pipe
from sidecar.proxy.upstream import UpstreamError, UpstreamPool, UpstreamResponse
from sidecar.sampling.exchange import NoSampling, Sampler

_SSE = "text/event-stream"
_AT_THE_DOOR: Final = frozenset(
    {"unauthorized", "body_too_large", "body_budget", "body_timeout", "bad_path"}
)
"""Errors of the proxy's own door: counted in metrics, never offered to the sampler (they are
not vLLM errors, and a keyless client must not spend the sampler's error keep-budget)."""
_EVENT_END: Final = b"\n\n"
_NOTHING_KEPT: Final = NoSampling()
"""The sampler for requests refused at the door: nothing is offered."""


class _Held:
    """The body-budget bytes one request holds; released once when it ends."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> bool:
        if not self.budget.reserve(size):
            return False
        self.size += size
        return True

    def release(self) -> None:
        self.budget.release(self.size)
        self.size = 0


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
        body_budget: BodyBudget | None = None,
        body_timeout: float = 30.0,
    ) -> None:
        self._sampler = sampler
        self._keys = key_ring
        self._upstream_authorization = f"Bearer {upstream_key}" if upstream_key else None
        self._max_body = max_body_bytes
        self._max_response = max_response_bytes
        self._budget = body_budget or BodyBudget(1 << 62)
        self._body_timeout = body_timeout
        self._models = models or metrics.ModelLabels()
        self._log = structlog.get_logger("sidecar.proxy")
        self.session: UpstreamPool | None = None
        """The pooled connections to vLLM; set by the app's start-up hook."""
        self.draining = False
        """Set when shutdown begins, so requests cancelled by the grace deadline say so."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Relay one request; never raises except to propagate cancellation."""
        target = canonical_target(request.raw_path)
        flight = Flight(perf_counter(), time.time(), request.method, request.path)
        flight.body_limit = self._max_response
        held = _Held(self._budget)
        metrics.IN_FLIGHT.inc()
        try:
            return await self._serve(request, flight, target, held)
        except ClientGone:
            flight.error = "client_disconnect"
            return web.Response(status=CLIENT_CLOSED)  # nobody will read it
        except asyncio.CancelledError:
            flight.error = "shutdown" if self.draining else "client_disconnect"
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            flight.close_upstream()
            held.release()
            door = flight.error in _AT_THE_DOOR
            flight.finish(_NOTHING_KEPT if door else self._sampler, self._models, self._log)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse a body over the limit before the client sends it."""
        if request.version != HttpVersion11:
            return None
        expect = request.headers.get(hdrs.EXPECT, "").lower()
        if expect != "100-continue":
            return json_error(417, "Unsupported Expect header.", "BadRequestError")
        length = request.content_length
        if length is not None and length > self._max_body:
            REJECTIONS.labels(reason="body_too_large").inc()
            return json_error(
                413,
                f"Request body is larger than {self._max_body} bytes.",
                "RequestEntityTooLargeError",
            )
        if length is not None and self._budget.held + length > self._budget.capacity:
            REJECTIONS.labels(reason="body_budget").inc()
            return json_error(
                503,
                "The proxy is holding too many request bodies; retry shortly.",
                "ServiceUnavailableError",
                **{"Retry-After": "1"},
            )
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    async def _serve(
        self, request: web.Request, flight: Flight, target: str | None, held: _Held
    ) -> web.StreamResponse:
        headers = request.headers
        flight.request_id = request_id = headers.get(REQUEST_ID) or new_request_id()
        if target is None:
            return self._refuse(flight, 400, "Malformed request path.", "BadRequestError",
                                error="bad_path")  # fmt: skip
        keep_client_authorization = True
        if self._keys is not None:
            keep_client_authorization = False
            if requires_key(request.method, guard_view(target)):
                flight.key_name = self._keys.identify(headers.get(hdrs.AUTHORIZATION))
                if flight.key_name is None:
                    return self._refuse(
                        flight, 401, "Missing or invalid API key.", "AuthenticationError",
                        error="unauthorized",
                    )  # fmt: skip
        body = await self._read_body(request, held)
        if isinstance(body, int):
            return self._refuse_body(flight, body)
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
            upstream = await pool.request(request.method, target, outgoing, body)
        except UpstreamError as exc:
            return self._upstream_failed(flight, exc.kind, called_at)
        flight.upstream = upstream
        return await self._relay(request, flight, upstream)

    def _refuse_body(self, flight: Flight, status: int) -> web.Response:
        """The answer to a body :meth:`_read_body` refused with ``status``."""
        if status == 413:
            return self._refuse(
                flight, 413, f"Request body is larger than {self._max_body} bytes.",
                "RequestEntityTooLargeError", error="body_too_large",
            )  # fmt: skip
        if status == 408:
            return self._refuse(
                flight, 408, f"No request body bytes for {self._body_timeout:g}s.",
                "RequestTimeoutError", error="body_timeout",
            )  # fmt: skip
        return self._refuse(
            flight, 503, "The proxy is holding too many request bodies; retry shortly.",
            "ServiceUnavailableError", error="body_budget", retry_after="1",
        )  # fmt: skip

    async def _read_body(  # noqa: PLR0911 - one return per outcome
        self, request: web.Request, held: _Held
    ) -> bytes | int:
        """The whole request body as sent, or the refusal's status: 413 when it is over
        ``max_body_bytes``, 503 when the bodies-in-flight budget has no room for it, 408 when
        the client goes silent for ``client_body_timeout`` mid-body.

        A declared length is reserved before a byte is read (so the uploads that start also
        finish); a chunked body is reserved as it arrives and refused the moment it passes the
        limit (even by one byte). The silence limit keeps a client from holding a reservation
        without sending.
        """
        length = request.content_length
        if length is not None and length > self._max_body:
            return 413
        if not request.body_exists:
            return b""
        if length is not None and not held.take(length):
            return 503
        pieces: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._body_timeout) as silence:
                while piece := await request.content.readany():
                    silence.reschedule(loop.time() + self._body_timeout)
                    size += len(piece)
                    if size > self._max_body:
                        return 413
                    if length is None and not held.take(len(piece)):
                        return 503
                    pieces.append(piece)
        except TimeoutError:
            return 408
        except ConnectionError:  # the client left mid-upload (without handler cancellation)
            raise ClientGone from None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

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
            # The client must see the proxy's event as an event of its own: end a partial one.
            relayed = flight.tail or flight.body
            ending = bytes(relayed[-2:])
            separator = (
                b""
                if not relayed or ending == _EVENT_END
                else (b"\n" if ending.endswith(b"\n") else _EVENT_END)
            )
            tail = separator + sse_error_events(
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
    def _refuse(
        flight: Flight,
        status: int,
        message: str,
        error_type: str,
        *,
        error: str,
        retry_after: str | None = None,
    ) -> web.Response:
        """A rejection at the door, counted. After a 413 the connection is closed (the body is
        unread and too large); after others aiohttp reads and drops any unread body for a few
        seconds (never buffering it), so the client reads the answer after sending."""
        REJECTIONS.labels(reason=error).inc()
        response = ProxyHandler._reply(flight, status, message, error_type, error=error)
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        if status in (408, 413):
            response.force_close()
        return response

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
