"""The official openai SDK gets through the sidecar what it gets from the backend directly.

Run on the emulator and on a real vLLM. Streams are compared by what a client reads (text and
logprobs per choice, finish reasons, usage, ids), not by event boundaries: vLLM merges tokens into
one SSE event when its HTTP handler falls behind, so two identical requests may be cut differently.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from tests.realvllm.conftest import Backend
from tests.realvllm.front import Front, sidecar_in_front

Call = Callable[[AsyncOpenAI, str], Awaitable[Any]]
GREEDY: dict[str, Any] = {"max_tokens": 8, "extra_body": {"ignore_eos": True}}


@pytest.fixture
async def front(backend: Backend, tmp_path: Path) -> AsyncIterator[Front]:
    async with sidecar_in_front(backend.url, tmp_path) as running:
        yield running


def _client(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def _without_created(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_created(v) for k, v in value.items() if k != "created"}
    if isinstance(value, list):
        return [_without_created(item) for item in value]
    return value


def _read_stream(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client takes from a stream: text, logprobs and finish per choice; usage; ids."""
    text: dict[int, str] = {}
    logprobs: dict[int, dict[str, list[Any]]] = {}
    finish: dict[int, Any] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            index = choice["index"]
            delta = choice.get("delta") or {}
            text[index] = text.get(index, "") + (delta.get("content") or choice.get("text") or "")
            for key, values in (choice.get("logprobs") or {}).items():
                if isinstance(values, list):  # per-token lists, however the events cut them
                    logprobs.setdefault(index, {}).setdefault(key, []).extend(values)
            if choice.get("finish_reason"):
                finish[index] = choice["finish_reason"]
    return {
        "text": text,
        "logprobs": logprobs,
        "finish": finish,
        "usage": [c["usage"] for c in chunks if c.get("usage") and not c["choices"]],
        "ids": sorted({c["id"] for c in chunks}),
        "objects": sorted({c["object"] for c in chunks}),
        "role_first": bool(chunks and chunks[0]["choices"] and "role" in str(chunks[0])),
    }


async def _chat(client: AsyncOpenAI, model: str, **kwargs: Any) -> Any:
    kwargs.setdefault("temperature", 0)
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    headers = {"X-Request-Id": "parity-chat"}
    if not kwargs.get("stream"):
        reply = await client.chat.completions.create(
            model=model, messages=messages, extra_headers=headers, **GREEDY, **kwargs
        )
        return _without_created(reply.model_dump())
    events = await client.chat.completions.create(
        model=model, messages=messages, extra_headers=headers, **GREEDY, **kwargs
    )
    return _read_stream([chunk.model_dump() async for chunk in events])


async def _completion(client: AsyncOpenAI, model: str, **kwargs: Any) -> Any:
    kwargs.setdefault("temperature", 0)
    headers = {"X-Request-Id": "parity-completion"}
    if not kwargs.get("stream"):
        reply = await client.completions.create(
            model=model, prompt="Once upon a time", extra_headers=headers, **GREEDY, **kwargs
        )
        return _without_created(reply.model_dump())
    events = await client.completions.create(
        model=model, prompt="Once upon a time", extra_headers=headers, **GREEDY, **kwargs
    )
    return _read_stream([chunk.model_dump() async for chunk in events])


CASES: dict[str, Call] = {
    "chat": _chat,
    "chat-stream": lambda c, m: _chat(c, m, stream=True),
    "chat-stream-usage": lambda c, m: _chat(
        c, m, stream=True, stream_options={"include_usage": True}
    ),
    "chat-stream-continuous-usage": lambda c, m: _chat(
        c,
        m,
        stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True},
    ),
    # n > 1 needs sampling (vLLM refuses n=2 with temperature 0); a seed keeps it repeatable
    "chat-n2": lambda c, m: _chat(c, m, n=2, temperature=1.0, seed=7),
    "chat-logprobs": lambda c, m: _chat(c, m, logprobs=True, top_logprobs=2),
    "chat-stream-logprobs": lambda c, m: _chat(c, m, stream=True, logprobs=True),
    "completions": _completion,
    "completions-stream-usage": lambda c, m: _completion(
        c, m, stream=True, stream_options={"include_usage": True}
    ),
    "completions-n2-logprobs": lambda c, m: _completion(
        c, m, n=2, logprobs=2, temperature=1.0, seed=7
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_sdk_through_sidecar_gets_what_it_gets_directly(
    backend: Backend, front: Front, case: str
) -> None:
    async with _client(backend.url) as to_backend, _client(front.url) as to_front:
        direct = await CASES[case](to_backend, backend.model)
        proxied = await CASES[case](to_front, backend.model)
    assert proxied == direct
    if case == "chat" and backend.kind == "real-vllm":
        assert direct["id"] == "chatcmpl-parity-chat"  # vLLM makes X-Request-Id the response id


ERROR_CASES: dict[str, tuple[str, bytes]] = {
    "unknown-model": (
        "/v1/chat/completions",
        b'{"model":"nope","messages":[{"role":"user","content":"hi"}],"max_tokens":4}',
    ),
    "unknown-model-stream": (
        "/v1/chat/completions",
        b'{"model":"nope","messages":[{"role":"user","content":"hi"}],"stream":true}',
    ),
    "max-tokens-too-large": (
        "/v1/chat/completions",
        b'{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":100000}',
    ),
    "max-tokens-too-large-stream": (
        "/v1/completions",
        b'{"model":"tiny-llama","prompt":"hi","max_tokens":100000,"stream":true}',
    ),
    "prompt-too-long": (
        "/v1/completions",
        json.dumps({"model": "tiny-llama", "prompt": [7] * 5000, "max_tokens": 4}).encode(),
    ),
    "bad-json": ("/v1/chat/completions", b'{"model": "tiny-llama", "messages": ['),
    "unknown-route": ("/v1/nothing", b"{}"),
}


async def _raw(url: str, path: str, body: bytes) -> tuple[int, str, Any]:
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, data=body, headers=headers) as reply,
    ):
        return reply.status, reply.content_type, await reply.json(content_type=None)


@pytest.mark.parametrize("case", list(ERROR_CASES))
async def test_error_bodies_and_statuses_pass_through(
    backend: Backend, front: Front, case: str
) -> None:
    path, body = ERROR_CASES[case]
    direct = await _raw(backend.url, path, body)
    assert direct[0] >= 400
    assert direct[1] == "application/json"  # errors on streams are plain JSON, not SSE
    assert await _raw(front.url, path, body) == direct


async def test_sdk_raises_the_same_error_through_the_sidecar(
    backend: Backend, front: Front
) -> None:
    errors = []
    for url in (backend.url, front.url):
        async with _client(url) as client:
            with pytest.raises(openai.NotFoundError) as caught:
                await client.chat.completions.create(
                    model="nope", messages=[{"role": "user", "content": "hi"}], max_tokens=2
                )
        errors.append((caught.value.status_code, caught.value.body))
    assert errors[0] == errors[1]


async def test_responses_and_messages_routes_pass_through(backend: Backend, front: Front) -> None:
    """/v1/responses and /v1/messages (Anthropic) answer the same through the sidecar."""
    for path, payload in (
        ("/v1/responses", {"model": "tiny-llama", "input": "hi", "max_output_tokens": 4}),
        (
            "/v1/messages",
            {
                "model": "tiny-llama",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
    ):
        body = json.dumps({**payload, "temperature": 0}).encode()
        status, ctype, direct = await _raw(backend.url, path, body)
        proxied = await _raw(front.url, path, body)
        assert proxied[:2] == (status, ctype)
        if backend.kind == "real-vllm":
            assert status == 200, direct
            assert _without_ids(proxied[2]) == _without_ids(direct)


def _without_ids(value: Any) -> Any:
    """Response objects get a fresh id and timestamp per request: drop those to compare."""
    volatile = {"id", "created_at", "created", "completed_at"}
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [_without_ids(item) for item in value]
    return value
