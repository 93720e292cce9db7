"""A fake vLLM for the benchmarks: OpenAI chat streams at engine-step pace, for a few µs a token.

``python -m bench.upstream --port 18000`` serves ``POST /v1/chat/completions`` (streamed or
not), ``GET /metrics`` (a real-size vLLM page whose counters move on every scrape), ``/version``,
``/health`` and ``/v1/models``.

Why not the emulator: its zero-latency path still runs the engine model (scheduler, KV blocks,
text plan, metric bookkeeping) for every step, and on a 2-core machine that, not the proxy under
test, would set the pace. This server is a bare ``asyncio.Protocol`` (on uvloop when installed)
writing pre-encoded events.

Timing model (vLLM's): one engine step gives every running stream one token. A stream asks for
its step length with the ``X-Bench-Step-Ms`` request header (default 0 = the next event-loop
iteration, i.e. as fast as the machine allows); streams with the same step share one ticker, so
64 streams at 10 ms get their tokens together every 10 ms, as from a batched engine. The first
token is written with the role event, at once: TTFT then measures the path, not the phase of
the ticker. A stream whose client does not keep up (transport paused) skips steps instead of
buffering.

Wire format as vLLM's: HTTP/1.1 keep-alive, ``Transfer-Encoding: chunked``, one SSE event per
chunk: the role event, ``max_tokens`` content events (the last with ``finish_reason":"stop"``)
and ``data: [DONE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import cast

from bench.pages import V1_PAGE, advanced, read_page

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
STEP_HEADER = "x-bench-step-ms"
WORDS = (" the", " model", " answers", " with", " a", " short", " and", " useful", " reply", ".")
_HEADER_END = b"\r\n\r\n"
_MAX_HEADER_BYTES = 64 * 1024


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def _response_head(status: str, content_type: str, *, chunked: bool, length: int = 0) -> bytes:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{framing}\r\n"
        "server: bench-upstream\r\n\r\n"
    ).encode()


class Events:
    """Pre-encoded stream events, built once: a request costs a list slice, not JSON encoding.

    Every stream carries the same ``id`` and ``created`` (the proxy never parses events, so
    this changes nothing it does), which keeps a burst of new requests from stalling the
    engine loop.
    """

    def __init__(self) -> None:
        self._head = (
            f'data: {{"id":"chatcmpl-bench","object":"chat.completion.chunk",'
            f'"created":{int(time.time())},"model":"{MODEL}","choices":[{{"index":0,'
        ).encode()
        role = b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
        self.opening = _response_head("200 OK", "text/event-stream", chunked=True)
        self.opening += _chunk(self._head + role + b"\n\n")
        self.done = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        self._tokens: list[bytes] = []

    def _token(self, index: int, *, last: bool) -> bytes:
        word = json.dumps(WORDS[index % len(WORDS)]).encode()
        finish = b'"stop"' if last else b"null"
        delta = b'"delta":{"content":%b},"logprobs":null,"finish_reason":%b}]}\n\n'
        return _chunk(self._head + delta % (word, finish))

    def for_tokens(self, tokens: int) -> list[bytes]:
        """The events after the role event: ``tokens`` tokens (the last one finishes), [DONE]."""
        while len(self._tokens) < tokens:
            self._tokens.append(self._token(len(self._tokens), last=False))
        return [*self._tokens[: tokens - 1], self._token(tokens - 1, last=True), self.done]


class Stream:
    """One SSE response in progress."""

    __slots__ = ("connection", "events", "position")

    def __init__(self, connection: Connection, events: list[bytes], opening: bytes) -> None:
        self.connection = connection
        self.events = events
        self.position = 0
        connection.write(opening)
        self.step()  # prefill: the first token comes at once, whatever the phase of the ticker

    def step(self) -> bool:
        """Write the next event; False once the stream is over (finished or client gone)."""
        connection = self.connection
        if connection.closed:
            return False
        if connection.paused:
            return True  # the client is behind: this stream skips the step
        connection.write(self.events[self.position])
        self.position += 1
        if self.position < len(self.events):
            return True
        connection.stream_finished()
        return False


class Ticker:
    """The engine loop of one step length: every step, each of its streams gets one event."""

    def __init__(self, step_seconds: float, tickers: dict[float, Ticker]) -> None:
        self.step_seconds = step_seconds
        self.streams: list[Stream] = []
        self._tickers = tickers
        self._task: asyncio.Task[None] | None = None

    def add(self, stream: Stream) -> None:
        self.streams.append(stream)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        sleep = asyncio.sleep
        step = self.step_seconds
        while self.streams:
            await sleep(step)
            self.streams = [stream for stream in self.streams if stream.step()]
        self._task = None
        if not self.streams:
            self._tickers.pop(self.step_seconds, None)


class Server:
    """Shared state of all connections: the tickers, request ids and the /metrics page."""

    def __init__(self, metrics_page: str) -> None:
        self.tickers: dict[float, Ticker] = {}
        self.scrapes = 0
        self.events = Events()
        self._page = metrics_page

    def start_stream(self, connection: Connection, tokens: int, step_seconds: float) -> None:
        ticker = self.tickers.get(step_seconds)
        if ticker is None:
            ticker = self.tickers[step_seconds] = Ticker(step_seconds, self.tickers)
        events = self.events
        ticker.add(Stream(connection, events.for_tokens(tokens), events.opening))

    def metrics_page(self) -> bytes:
        """The page with counters grown by 1% per scrape, so the sidecar derives real rates."""
        self.scrapes += 1
        return advanced(self._page, 1.0 + 0.01 * self.scrapes).encode()


class Connection(asyncio.Protocol):
    """One keep-alive client connection; requests are served one after the other."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.streaming = False
        self.paused = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve_buffered()

    def stream_finished(self) -> None:
        self.streaming = False
        self._serve_buffered()

    def _serve_buffered(self) -> None:
        while not self.streaming and not self.closed:
            end = self.buffer.find(_HEADER_END)
            if end == -1:
                if len(self.buffer) > _MAX_HEADER_BYTES:
                    self._fail("431 Request Header Fields Too Large")
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            method, path, *_ = [*head[0].split(" "), "", ""]
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", ""):
                self._fail("411 Length Required")
                return
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._dispatch(method, path.split("?", 1)[0], headers, body)

    def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if method == "POST" and path == "/v1/chat/completions":
            self._chat(headers, body)
        elif method == "GET" and path == "/metrics":
            self._reply(
                "200 OK", "text/plain; version=0.0.4; charset=utf-8", self.server.metrics_page()
            )
        elif method == "GET" and path == "/version":
            self._reply("200 OK", "application/json", b'{"version":"0.33.0"}')
        elif method == "GET" and path == "/health":
            self._reply("200 OK", "application/json", b"")
        elif method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
            self._reply("200 OK", "application/json", json.dumps(models).encode())
        else:
            self._reply("404 Not Found", "application/json", b'{"detail":"Not Found"}')

    def _chat(self, headers: dict[str, str], body: bytes) -> None:
        try:
            request = json.loads(body)
            tokens = int(request.get("max_tokens") or 16)
            step_seconds = float(headers.get(STEP_HEADER, "0") or 0) / 1000.0
        except (ValueError, TypeError, AttributeError):
            self._reply("400 Bad Request", "application/json", b'{"error":"bad request"}')
            return
        tokens = max(1, min(tokens, 100_000))
        if request.get("stream"):
            self.streaming = True
            self.server.start_stream(self, tokens, max(step_seconds, 0.0))
            return
        text = "".join(WORDS[index % len(WORDS)] for index in range(tokens))
        answer = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 16,
                "completion_tokens": tokens,
                "total_tokens": tokens + 16,
            },
        }
        self._reply("200 OK", "application/json", json.dumps(answer).encode())

    def _reply(self, status: str, content_type: str, payload: bytes) -> None:
        head = _response_head(status, content_type, chunked=False, length=len(payload))
        self.write(head + payload)

    def _fail(self, status: str) -> None:
        self._reply(status, "text/plain", b"")
        if self.transport is not None:
            self.transport.close()
        self.closed = True


async def serve(host: str, port: int, metrics_page: Path) -> None:
    """Serve until SIGTERM/SIGINT."""
    server = Server(read_page(metrics_page))
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: Connection(server), host, port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    listener.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-page", type=Path, default=V1_PAGE)
    args = parser.parse_args(argv)
    runner: asyncio.Runner
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(serve(args.host, args.port, args.metrics_page))


if __name__ == "__main__":
    main()
