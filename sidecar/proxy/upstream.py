"""Keep-alive HTTP/1.1 connections to vLLM on bare asyncio protocols, built for relaying.

Why not aiohttp's client: for every relayed read it wakes a task, walks a ``StreamReader``
(which re-enters the protocol to resume reading) and reschedules a ``sock_read`` timer, and
every request builds a ``ClientRequest``; measured on a 2-core EPYC that made the proxy spend
~3x nginx's CPU per SSE event and ~0.5 ms per request. Here the socket's ``data_received``
decodes the body framing and hands each piece to the relay's :class:`BodySink` synchronously:
no task switch, no future, no timer per read. The usual SSE read (one whole chunk at a chunk
boundary) is recognised inline and handed over with its raw bytes, which a chunked client can
receive as they are; any other read goes through the exact
:class:`~sidecar.proxy.framing.ChunkedDecoder`.

Scope (what vLLM and the proxy need): requests with a complete body (``Content-Length``),
responses framed by ``Content-Length``, ``chunked`` or connection close, 1xx responses skipped,
no body for ``HEAD``/204/304. No redirects, no decompression (bodies pass as they are), and one
retry only: a request written to a *reused* keep-alive connection that vLLM closes before
sending a single byte is sent again on a fresh connection. That is uvicorn's idle timeout
racing the request (under load vLLM's event loop runs the overdue timer before it reads the
request), not an answer; vLLM never started it, so resending cannot run a generation twice.
Any other failure is the client's to see (generation requests are not idempotent).

Timeouts: ``connect_timeout`` bounds the TCP (and TLS) handshake; ``read_timeout`` bounds every
silence of vLLM, before the response head and between body reads, like aiohttp's
``sock_read``. One timer per connection checks it and re-arms at most once per
``read_timeout``, not per read nor per request (between requests it lapses when it next
finds the connection at rest). Silence while the relay has paused reading (slow client) does
not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Final, Protocol, cast
from urllib.parse import urlsplit

from multidict import CIMultiDict

from sidecar.proxy.framing import (
    DEFAULT_MAX_TRAILER,
    ChunkedDecoder,
    FramingError,
    ResponseHead,
    parse_response_head,
    request_head,
    whole_chunks,
)
from sidecar.proxy.metrics import UPSTREAM_RETRIES

_HEAD_END: Final = b"\r\n\r\n"
MAX_HEAD_BYTES: Final = 64 * 1024
"""A response head larger than this is a broken upstream, not a response."""
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_SINGLE_WRITE_BYTES: Final = 64 * 1024

# What the connection is reading. _CHUNK_START: a chunked body at a chunk boundary with a sink
# attached (the fast path); _CHUNKED: anywhere else in a chunked body (the exact decoder).
_IDLE, _HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _CHUNK_START = range(6)
_CRLF: Final = b"\r\n"
_LAST_CHUNK: Final = b"0\r\n\r\n"
_ZERO: Final = ord("0")
_CR: Final = ord("\r")
_LF: Final = ord("\n")


class UpstreamError(Exception):
    """vLLM could not be reached or broke off; ``kind`` is connect|timeout|disconnect.

    ``unanswered``: the connection closed before a single byte of the response arrived.
    """

    def __init__(self, kind: str, message: str, *, unanswered: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.unanswered = unanswered


class BodySink(Protocol):
    """Where a response body goes; called from the event loop's I/O callbacks."""

    def data(self, piece: bytes) -> None:
        """The body bytes of one upstream read (never empty)."""

    def chunks(self, wire: bytes, piece: bytes) -> None:
        """Whole chunks of one read as they came (``wire``: sizes without leading zeros or
        extensions, never the last chunk) and the body bytes they carry (``piece``, not empty).
        """

    def end(self) -> None:
        """The body is complete."""

    def fail(self, error: BaseException) -> None:
        """The body broke off: an :class:`UpstreamError` or a ``TimeoutError``."""


_Outcome = BaseException | bool | None
"""True: body complete; an exception: broke off; None: still running."""


class UpstreamConnection(asyncio.Protocol):
    """One connection: writes a request, parses the response head, decodes the body to a sink."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read_timeout: float,
        max_trailer: int = DEFAULT_MAX_TRAILER,
    ) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self._max_trailer = max_trailer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self._reading = _IDLE
        self._buffer = b""
        self._remaining = 0
        self._chunks: ChunkedDecoder | None = None
        self._head_only = False
        self._head: asyncio.Future[ResponseHead] | None = None
        self._sink: BodySink | None = None
        self._early: list[bytes] = []
        self._early_outcome: _Outcome = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._answered = False
        self.framing = "none"
        """How the current response body is delimited: none|length|chunked|close."""
        self.on_lost: Callable[[UpstreamConnection], None] | None = None

    # --- asyncio callbacks --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._stop_timer()
        reading, self._reading = self._reading, _IDLE
        if reading == _HEAD:
            self._fail_head(
                UpstreamError(
                    "disconnect", "vLLM closed the connection", unanswered=not self._answered
                )
            )
        elif reading == _UNTIL_CLOSE:
            self._finish(True)
        elif reading != _IDLE:
            self._finish(UpstreamError("disconnect", "vLLM closed the connection mid-body"))
        if self.on_lost is not None:
            self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        reading = self._reading
        if reading == _CHUNK_START:
            # The usual read, inline: exactly one whole plain chunk (one SSE event).
            digits, _, rest = data.partition(_CRLF)
            if digits.isalnum() and digits[0] != _ZERO:  # no sign, space, 0x or leading zero
                try:
                    size = int(digits, 16)
                except ValueError:
                    pass
                else:
                    if len(rest) == size + 2 and rest[size] == _CR and rest[size + 1] == _LF:
                        sink = self._sink
                        assert sink is not None
                        sink.chunks(data, rest[:size])
                        return
            self._chunk_start(data)
        elif reading == _CHUNKED:
            self._chunked(data)
        elif reading == _HEAD:
            self._answered = True
            self._buffer += data
            self._parse_head()
        elif reading == _LENGTH:
            self._sized(data)
        elif reading == _UNTIL_CLOSE:
            self._deliver(data)
        else:  # bytes outside a response: this connection cannot be trusted
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the body

    # --- the relay's side -----------------------------------------------------------------------
    def send(self, head: bytes, body: bytes, *, head_only: bool) -> asyncio.Future[ResponseHead]:
        """Write one request; the future resolves with the response head."""
        assert self.transport is not None
        self._head = self._loop.create_future()
        self._head_only = head_only
        self._buffer = b""
        self._sink = None
        self._early = []
        self._early_outcome = None
        self.reusable = False
        self._answered = False
        self._reading = _HEAD
        if len(body) < _SINGLE_WRITE_BYTES:
            self.transport.write(head + body)  # one send for typical requests
        else:
            self.transport.write(head)
            self.transport.write(body)
        self._last_read = self._loop.time()
        if self._timer is None:  # else the running one re-arms from _last_read when it fires
            self._arm_timer(self._read_timeout)
        return self._head

    def take_early(self) -> bytes:
        """Body bytes that arrived before a sink was attached (with the head), now or never."""
        early, self._early = self._early, []
        return early[0] if len(early) == 1 else b"".join(early)

    def attach(self, sink: BodySink) -> None:
        """Route the body to ``sink``, delivering what already arrived first."""
        self._sink = sink
        if self._early:
            early, self._early = self._early, []
            sink.data(b"".join(early))
        if self._reading == _CHUNKED and self._chunks is not None and self._chunks.at_boundary:
            self._reading = _CHUNK_START
        outcome, self._early_outcome = self._early_outcome, None
        if outcome is True:
            sink.end()
        elif isinstance(outcome, BaseException):
            sink.fail(outcome)

    def detach(self) -> None:
        """Forget the finished response's sink and bytes: an idle pooled connection must not
        keep the last request's body (and through the sink, its prompt) alive."""
        self._sink = None
        self._early = []
        self._early_outcome = None

    def pause_reading(self) -> None:
        """Stop reading from vLLM (the client is behind); silence is not counted meanwhile."""
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self._last_read = self._loop.time()
            self.transport.resume_reading()

    def close(self) -> None:
        """Close the socket now (vLLM sees the client gone and aborts the request)."""
        self.reusable = False
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    # --- silence timer --------------------------------------------------------------------------
    def _arm_timer(self, delay: float) -> None:
        self._timer = self._loop.call_at(self._loop.time() + delay, self._check_silence)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_silence(self) -> None:
        self._timer = None
        if self._reading == _IDLE:
            return
        due = self._last_read + self._read_timeout
        now = self._loop.time()
        if self._paused or now < due:
            self._arm_timer(self._read_timeout if self._paused else due - now)
            return
        error = TimeoutError(f"vLLM sent nothing for {self._read_timeout}s")
        reading, self._reading = self._reading, _IDLE
        if reading == _HEAD:
            self._fail_head(error)
        else:
            self._finish(error)
        self.close()

    # --- response head --------------------------------------------------------------------------
    def _parse_head(self) -> None:
        while True:
            end = self._buffer.find(_HEAD_END)
            if end == -1:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._bad_head("response head too large")
                return
            raw, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            try:
                head = parse_response_head(raw)
            except FramingError as exc:
                self._bad_head(str(exc))
                return
            if not 100 <= head.status < 200:  # 1xx (100 Continue, 103 ...): the real one follows
                break
        rest, self._buffer = self._buffer, b""
        self._start_body(head)
        future, self._head = self._head, None
        if future is not None and not future.done():
            future.set_result(head)
        if self._reading == _IDLE:
            if rest:
                self.reusable = False  # bytes after a body-less response
            self._finish(True)
        elif rest:
            self.data_received(rest)

    def _fail_head(self, error: BaseException) -> None:
        future, self._head = self._head, None
        if future is not None and not future.done():
            future.set_exception(error)

    def _bad_head(self, why: str) -> None:
        self._reading = _IDLE
        self._fail_head(UpstreamError("disconnect", f"bad response from vLLM: {why}"))
        self.close()

    def _start_body(self, head: ResponseHead) -> None:
        headers = head.headers
        self.reusable = head.keep_alive
        if self._head_only or head.status in _NO_BODY_STATUSES:
            self._reading = _IDLE
            self.framing = "none"
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._chunks = ChunkedDecoder(self._max_trailer)
            self._reading = _CHUNKED
            self.framing = "chunked"
        elif (length := headers.get("Content-Length", "").strip()).isdigit():
            self._remaining = int(length)
            self._reading = _LENGTH if self._remaining else _IDLE
            self.framing = "length"
        else:
            self._reading = _UNTIL_CLOSE
            self.reusable = False
            self.framing = "close"

    @property
    def at_rest(self) -> bool:
        """No response is being read (the last one ended, or none was sent)."""
        return self._reading == _IDLE

    # --- response body --------------------------------------------------------------------------
    def _chunked(self, data: bytes) -> None:
        decoder = self._chunks
        assert decoder is not None
        try:
            piece = decoder.feed(data)
        except FramingError as exc:
            self._reading = _IDLE
            self._finish(UpstreamError("disconnect", f"bad chunked body from vLLM: {exc}"))
            self.close()
            return
        if piece:
            self._deliver(piece)
        if decoder.done:
            self._reading = _IDLE
            if decoder.leftover:
                self.reusable = False
            self._finish(True)
        elif self._sink is not None and decoder.at_boundary:
            self._reading = _CHUNK_START
        else:
            self._reading = _CHUNKED

    def _chunk_start(self, data: bytes) -> None:
        """A read at a chunk boundary that is not exactly one chunk: whole chunks go out as
        they came, the last chunk ends the body, anything else goes to the exact decoder."""
        pieces, position = whole_chunks(data)
        if position:
            sink = self._sink
            assert sink is not None
            piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if position == len(data):
                sink.chunks(data, piece)
                return
            sink.chunks(data[:position], piece)
            data = data[position:]
        if data == _LAST_CHUNK:  # aiohttp's write_eof writes the client's own last chunk
            self._reading = _IDLE
            self._finish(True)
        else:
            self._chunked(data)

    def _sized(self, data: bytes) -> None:
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
            self._deliver(data)
            return
        if len(data) > remaining:
            data = data[:remaining]
            self.reusable = False  # bytes after the body: do not trust this connection
        self._remaining = 0
        self._reading = _IDLE
        self._deliver(data)
        self._finish(True)

    def _deliver(self, piece: bytes) -> None:
        sink = self._sink
        if sink is None:
            self._early.append(piece)
        else:
            sink.data(piece)

    def _finish(self, outcome: BaseException | bool) -> None:
        """The body ended (True) or broke off (an exception)."""
        if self._paused and outcome is True:
            self.resume_reading()  # the pipe paused on the last read: nobody will drain
        sink = self._sink
        if sink is None:
            self._early_outcome = outcome
        elif outcome is True:
            sink.end()
        elif isinstance(outcome, BaseException):
            sink.fail(outcome)


class UpstreamResponse:
    """A response being relayed; the relay calls :meth:`release` or :meth:`close` once."""

    __slots__ = ("connection", "head", "pool")

    def __init__(
        self, head: ResponseHead, connection: UpstreamConnection, pool: UpstreamPool
    ) -> None:
        self.head = head
        self.connection = connection
        self.pool = pool

    def release(self) -> None:
        """Back to the pool if the body was read to its end and the connection allows it."""
        self.pool.give_back(self.connection, reuse=True)

    def close(self) -> None:
        """Close the connection (the body was not read to its end)."""
        self.pool.give_back(self.connection, reuse=False)


class UpstreamPool:
    """Pooled connections to one vLLM base URL (``http`` or ``https``).

    At most ``max_connections`` requests are in flight (more wait); up to as many idle
    connections are kept for ``keepalive_seconds``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        keepalive_seconds: float,
        connect_timeout: float,
        read_timeout: float,
        max_trailer_bytes: int = DEFAULT_MAX_TRAILER,
    ) -> None:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        default_port = 443 if tls else 80
        self.host = parts.hostname or "localhost"
        self.port = parts.port or default_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        self._keepalive = keepalive_seconds
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_trailer = max_trailer_bytes
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[UpstreamConnection, asyncio.TimerHandle]] = []
        self._busy: set[UpstreamConnection] = set()
        self.closed = False

    async def request(
        self, method: str, target: str, headers: CIMultiDict[str], body: bytes
    ) -> UpstreamResponse:
        """Send one request and wait for the response head; raises :class:`UpstreamError`.

        ``target`` is the raw path and query of the client's request. Cancelled while waiting,
        the connection is closed (vLLM sees the client gone).
        """
        if self.closed:
            raise UpstreamError("connect", "the upstream pool is closed")
        await self._slots.acquire()
        connection: UpstreamConnection | None = None
        head_only = method == "HEAD"
        try:
            head = request_head(method, self.base_path + target, self.host_header, headers, body)
            connection = self._take_idle()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            self._busy.add(connection)
            try:
                response_head = await self._send(connection, head, body, head_only)
            except UpstreamError as exc:
                if not (reused and exc.unanswered):
                    raise
                # A stale keep-alive connection (see the module docstring): once more, fresh.
                UPSTREAM_RETRIES.inc()
                self._busy.discard(connection)
                connection.close()
                connection = None
                connection = await self._connect()
                self._busy.add(connection)
                response_head = await self._send(connection, head, body, head_only)
        except BaseException:  # including cancellation: the request must not stay open
            if connection is not None:
                self._busy.discard(connection)
                connection.close()
            self._slots.release()
            raise
        return UpstreamResponse(response_head, connection, self)

    async def _send(
        self, connection: UpstreamConnection, head: bytes, body: bytes, head_only: bool
    ) -> ResponseHead:
        try:
            return await connection.send(head, body, head_only=head_only)
        except TimeoutError:
            raise UpstreamError("timeout", f"no response within {self._read_timeout}s") from None

    def _take_idle(self) -> UpstreamConnection | None:
        while self._idle:
            connection, expiry = self._idle.pop()  # the most recently used: warmest
            expiry.cancel()
            transport = connection.transport
            if not connection.closed and transport is not None and not transport.is_closing():
                return connection
        return None

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(loop, self._read_timeout, self._max_trailer),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise UpstreamError(
                "timeout", f"connecting to vLLM took over {self._connect_timeout}s"
            ) from None
        except OSError as exc:
            raise UpstreamError("connect", f"cannot connect to vLLM: {exc}") from None
        connection.on_lost = self._forget
        return connection

    def give_back(self, connection: UpstreamConnection, *, reuse: bool) -> None:
        """End of one request on ``connection``: keep it idle, or close it. Idempotent."""
        if connection not in self._busy:
            return
        self._busy.discard(connection)
        self._slots.release()
        connection.detach()
        if reuse and connection.reusable and connection.at_rest and not self.closed:
            expiry = asyncio.get_running_loop().call_later(
                self._keepalive, self._expire, connection
            )
            self._idle.append((connection, expiry))
        else:
            connection.close()

    def _expire(self, connection: UpstreamConnection) -> None:
        self._drop_idle(connection)
        connection.close()

    def _forget(self, connection: UpstreamConnection) -> None:
        self._drop_idle(connection)

    def _drop_idle(self, connection: UpstreamConnection) -> None:
        kept = []
        for idle, expiry in self._idle:
            if idle is connection:
                expiry.cancel()
            else:
                kept.append((idle, expiry))
        self._idle = kept

    async def close(self) -> None:
        """Close every connection; relays still running see their upstream break off."""
        self.closed = True
        for connection, expiry in self._idle:
            expiry.cancel()
            connection.close()
        self._idle.clear()
        for connection in list(self._busy):
            connection.close()
        await asyncio.sleep(0)  # let the transports report connection_lost
