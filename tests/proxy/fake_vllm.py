"""A small vLLM stand-in speaking the OpenAI wire format, with switchable misbehaviour.

It frames streams exactly as vLLM does (role event, one event per token, a finish event, the
usage event when asked, ``[DONE]``), answers errors in vLLM's shape, and records what reached
it: request headers and bodies, and when a stream was aborted by the client side.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.support import free_port

MODEL = "fake-model"
CREATED = 1_700_000_000


@dataclass
class Seen:
    """One request as the fake upstream received it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class FakeVLLM:
    """Behaviour knobs (tests flip them) and what the fake saw."""

    url: str = ""
    mode: str = "ok"
    """ok | stall_headers | stall_mid_stream | break_mid_stream | break_mid_body"""
    # Streams: role event, one event per token (the last carries finish_reason), the usage
    # event when asked, then [DONE]; like vLLM for a request that stops on max_tokens.
    token_delay: float = 0.0
    echo_request_id: bool = False
    seen: list[Seen] = field(default_factory=list)
    aborted_at: dict[str, float] = field(default_factory=dict)
    """request id -> perf_counter() when the fake noticed the client side was gone."""
    stream_started: dict[str, float] = field(default_factory=dict)
    stall: asyncio.Event = field(default_factory=asyncio.Event)

    def tokens(self, count: int) -> list[str]:
        return [f" tok{index}" for index in range(count)]


def _error(status: int, message: str, error_type: str) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": status}}
    return web.json_response(body, status=status)


def _chat_chunk(rid: str, delta: dict[str, Any] | None, finish: str | None) -> dict[str, Any]:
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, "stop_reason": None}
    ]  # fmt: skip
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": choices,
    }


def _completion_chunk(rid: str, text: str | None, finish: str | None) -> dict[str, Any]:
    choices = [] if text is None else [
        {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
    ]  # fmt: skip
    return {
        "id": f"cmpl-{rid}",
        "object": "text_completion",
        "created": CREATED,
        "model": MODEL,
        "choices": choices,
    }


def _finish(index: int, count: int) -> str | None:
    """vLLM puts the finish reason on the event of the last token."""
    return "length" if index == count - 1 else None


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def build_app(fake: FakeVLLM) -> web.Application:
    """The fake's routes."""

    async def record(request: web.Request) -> bytes:
        body = await request.read()
        fake.seen.append(Seen(request.method, request.raw_path, CIMultiDict(request.headers), body))
        return body

    async def models(request: web.Request) -> web.Response:
        await record(request)
        card = {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "vllm"}
        return web.json_response({"object": "list", "data": [card]})

    async def health(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=200)

    async def generate(request: web.Request) -> web.StreamResponse:
        raw = await record(request)
        chat = request.path.endswith("/chat/completions")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "Invalid JSON body.", "BadRequestError")
        if body.get("model") != MODEL:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        header_id = request.headers.get("X-Request-Id")
        rid = header_id or "fixed"
        if fake.mode == "stall_headers":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                fake.aborted_at[rid] = time.perf_counter()
                raise
        count = int(body.get("max_tokens") or 5)
        tokens = fake.tokens(count)
        usage = {"prompt_tokens": 7, "total_tokens": 7 + count, "completion_tokens": count}
        extra_headers = {"X-Request-Id": header_id} if fake.echo_request_id and header_id else {}
        extra_headers["X-Upstream"] = "fake-vllm"
        if not body.get("stream"):
            if chat:
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "logprobs": None,
                    "finish_reason": "length",
                    "stop_reason": None,
                }
            else:
                choice = {"index": 0, "text": "".join(tokens), "logprobs": None,
                          "finish_reason": "length", "stop_reason": None}  # fmt: skip
            payload = {
                "id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}",
                "object": "chat.completion" if chat else "text_completion",
                "created": CREATED,
                "model": MODEL,
                "choices": [choice],
                "usage": usage,
            }
            if fake.mode == "break_mid_body":
                data = json.dumps(payload).encode()
                response = web.StreamResponse(headers={"Content-Length": str(len(data))})
                response.content_type = "application/json"
                await response.prepare(request)
                await response.write(data[: len(data) // 2])
                await asyncio.sleep(0.05)
                assert request.transport is not None
                request.transport.close()
                return response
            return web.json_response(payload, headers=extra_headers)

        response = web.StreamResponse(headers=extra_headers)
        response.content_type = "text/event-stream"
        await response.prepare(request)
        fake.stream_started[rid] = time.perf_counter()
        events: list[bytes] = []
        if chat:
            events.append(_event(_chat_chunk(rid, {"role": "assistant", "content": ""}, None)))
            events += [
                _event(_chat_chunk(rid, {"content": t}, _finish(i, count)))
                for i, t in enumerate(tokens)
            ]
        else:
            events += [
                _event(_completion_chunk(rid, t, _finish(i, count))) for i, t in enumerate(tokens)
            ]
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            chunk = (_chat_chunk if chat else _completion_chunk)(rid, None, None)
            chunk["usage"] = usage
            events.append(_event(chunk))
        events.append(b"data: [DONE]\n\n")
        try:
            for index, event in enumerate(events):
                if index == 2 and fake.mode == "stall_mid_stream":
                    await asyncio.sleep(30)
                if index == 2 and fake.mode == "break_mid_stream":
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(event)
                if fake.token_delay:
                    await asyncio.sleep(fake.token_delay)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            fake.aborted_at[rid] = time.perf_counter()
            raise
        return response

    async def echo(request: web.Request) -> web.Response:
        """Everything else: 200 with a JSON echo, plus the odd headers tests look for."""
        raw = await record(request)
        return web.json_response(
            {"path": request.raw_path, "method": request.method, "length": len(raw)},
            status=201 if request.method == "PUT" else 200,
            headers={"X-Custom": "kept", "Keep-Alive": "timeout=5", "Set-Cookie": "a=b"},
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", generate)
    app.router.add_post("/v1/completions", generate)
    app.router.add_route("*", "/{path:.*}", echo)
    return app


@asynccontextmanager
async def run_fake_vllm() -> AsyncIterator[FakeVLLM]:
    """Serve the fake on a free loopback port for the duration of the block."""
    fake = FakeVLLM()
    runner = web.AppRunner(
        build_app(fake), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
