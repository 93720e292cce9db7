"""A raw HTTP server that sends a metrics page the way a test asks: all at once, in many writes,
slowly, chunked or with Content-Length; and that can stop accepting new connections."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class Delivery:
    """How the page goes out: framing ``length``|``chunked``|``close``, write size, pauses."""

    framing: str = "length"
    write_bytes: int = 0
    """0: the whole page in one write."""
    pause_every: int = 0
    """Sleep ``pause_seconds`` after this many bytes (0: never)."""
    pause_seconds: float = 0.0


@dataclass
class PageServer:
    """Serves ``page`` on every GET (keep-alive unless framing is ``close``)."""

    page: bytes
    delivery: Delivery = field(default_factory=Delivery)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop_listening(self) -> None:
        """New connections are refused; connections already open keep being served."""
        assert self._server is not None
        self._server.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path == b"/version":
                    body = b'{"version":"0.33.0"}'
                    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                    writer.write(head + body)
                    await writer.drain()
                    continue
                await self._send_page(writer)
                if self.delivery.framing == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _send_page(self, writer: asyncio.StreamWriter) -> None:
        delivery = self.delivery
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        if delivery.framing == "length":
            head += b"Content-Length: %d\r\n" % len(self.page)
        elif delivery.framing == "chunked":
            head += b"Transfer-Encoding: chunked\r\n"
        else:
            head += b"Connection: close\r\n"
        writer.write(head + b"\r\n")
        step = delivery.write_bytes or len(self.page)
        sent_since_pause = 0
        for start in range(0, len(self.page), step):
            piece = self.page[start : start + step]
            if delivery.framing == "chunked":
                piece = b"%x\r\n%s\r\n" % (len(piece), piece)
            writer.write(piece)
            sent_since_pause += step
            if delivery.pause_every and sent_since_pause >= delivery.pause_every:
                sent_since_pause = 0
                await writer.drain()
                await asyncio.sleep(delivery.pause_seconds)
        if delivery.framing == "chunked":
            writer.write(b"0\r\n\r\n")
        await writer.drain()
