"""The relay's inner loop, run from the upstream socket's I/O callback: one read in, one write out.

:class:`Pipe` is the :class:`~sidecar.proxy.upstream.BodySink` of one response. For each
upstream read it notes the arrival time, appends the piece to the body kept for the sampler,
counts SSE events and writes to the client's transport, all without leaving the callback: no
task wake-up, no future. When vLLM's read held whole plain chunks and the client response is
chunked too, vLLM's bytes go out as they came (the usual SSE read, no re-framing); otherwise
the piece is written framed as a chunk (or bare, for HTTP/1.0 clients).
The handler coroutine sleeps in :meth:`Pipe.wait` until the body ends, breaks off, the client
goes away, or the client falls behind (then it waits for the client to drain with upstream
reads paused, so a slow client never makes the proxy buffer).
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Final

from aiohttp import web

from sidecar.proxy.flight import Flight
from sidecar.proxy.observe import StreamMeter
from sidecar.proxy.upstream import UpstreamConnection


class ClientGone(Exception):  # a signal, not an error
    """The client's connection closed while the proxy was relaying to it."""


class _Backpressure:
    """The client's transport asked the proxy to stop writing for a while."""


BACKPRESSURE: Final = _Backpressure()
ENDED: Final = True
Outcome = BaseException | _Backpressure | bool
"""``ENDED``, ``BACKPRESSURE``, :class:`ClientGone`, or the upstream's failure."""


class Pipe:
    """Relays one response body from vLLM to the client as it arrives."""

    __slots__ = (
        "_chunked",
        "_first",
        "_flight",
        "_outcome",
        "_protocol",
        "_transport",
        "_upstream",
        "_waiter",
        "body",
        "meter",
    )

    def __init__(
        self,
        request: web.BaseRequest,
        flight: Flight,
        upstream: UpstreamConnection,
        *,
        chunked: bool,
        meter: StreamMeter | None,
    ) -> None:
        transport = request.transport
        if transport is None:
            raise ClientGone
        self._transport = transport
        self._protocol = request.protocol
        self._upstream = upstream
        self._chunked = chunked
        self._flight = flight
        self._first = True
        self._outcome: Outcome | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.body = flight.body
        self.meter = meter

    def note(self, piece: bytes, arrived: float) -> None:
        """Account for body bytes the handler writes itself (the first ones, with the headers)."""
        self._first = False
        self._flight.keep(piece)
        if self.meter is not None:
            self.meter.feed(piece, arrived)

    # --- BodySink: called from the upstream connection's data_received --------------------------
    def data(self, piece: bytes) -> None:
        self.chunks(b"%x\r\n%b\r\n" % (len(piece), piece) if self._chunked else piece, piece)

    def chunks(self, wire: bytes, piece: bytes) -> None:
        """One read: ``wire`` goes out as it is to a chunked client (vLLM's chunks are valid
        chunks of the client's response too), ``piece`` to any other."""
        arrived = perf_counter()
        body = self.body
        if len(body) + len(piece) <= self._flight.held:
            body += piece
        else:
            self._flight.keep(piece)  # reserves more, or keeps the piece in the tail
        meter = self.meter
        if meter is not None:
            meter.feed(piece, arrived)
        transport = self._transport
        if transport.is_closing():
            self._settle(ClientGone())
            return
        transport.write(wire if self._chunked else piece)
        if self._first:
            self._first = False
            self._flight.overhead += perf_counter() - arrived
        # An empty write buffer means writing is not paused (the transport resumes the
        # protocol once it drains), so the property is only read when bytes are queued.
        if transport.get_write_buffer_size() and self._protocol.writing_paused:
            self._upstream.pause_reading()
            self._settle(BACKPRESSURE)

    def end(self) -> None:
        self._settle(ENDED)

    def fail(self, error: BaseException) -> None:
        self._settle(error)

    # --- the handler's side ---------------------------------------------------------------------
    def _settle(self, outcome: Outcome) -> None:
        if self._outcome is not None and self._outcome is not BACKPRESSURE:
            return  # the first final outcome wins
        self._outcome = outcome
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> Outcome:
        """The next thing the handler must act on (the latest outcome, read after waking)."""
        if self._outcome is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        outcome = self._outcome
        assert outcome is not None
        if outcome is BACKPRESSURE:
            self._outcome = None
        return outcome

    async def drain(self, request: web.BaseRequest) -> None:
        """Wait for the client to catch up, then read from vLLM again."""
        try:
            await request.writer.drain()
        except ConnectionError:
            raise ClientGone from None
        self._upstream.resume_reading()
