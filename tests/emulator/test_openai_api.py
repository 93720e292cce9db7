"""The official openai SDK and raw HTTP against the emulator: shapes, framing, ids, content."""

from __future__ import annotations

import json

import aiohttp
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from sidecar.emulator import Emulator
from tests.emulator.conftest import EmulatorFactory, chat_body

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me about rivers."}]


async def test_sdk_chat_non_streaming(client: AsyncOpenAI, emulator: Emulator) -> None:
    """A chat completion has vLLM's fields, a non-empty answer and consistent usage."""
    reply = await client.chat.completions.create(
        model=emulator.options.model, messages=MESSAGES, max_tokens=50
    )
    choice = reply.choices[0]
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == emulator.options.model
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert 0 < reply.usage.completion_tokens <= 50


async def test_sdk_chat_streaming_with_usage(client: AsyncOpenAI, emulator: Emulator) -> None:
    """Role chunk, one token per chunk, finish on the last token, then the usage chunk."""
    stream = await client.chat.completions.create(
        model=emulator.options.model,
        messages=MESSAGES,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content_chunks = chunks[1:-1]
    assert all(chunk.choices[0].delta.content for chunk in content_chunks)
    assert content_chunks[-1].choices[0].finish_reason == "length"
    assert all(chunk.choices[0].finish_reason is None for chunk in content_chunks[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 12 == len(content_chunks)
    assert len({chunk.id for chunk in chunks}) == 1


async def test_sdk_streaming_without_usage_has_no_usage_chunk(
    client: AsyncOpenAI, emulator: Emulator
) -> None:
    """Without stream_options.include_usage no chunk carries usage."""
    stream = await client.chat.completions.create(
        model=emulator.options.model, messages=MESSAGES, max_tokens=5, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_sdk_completions_both_ways_agree(client: AsyncOpenAI, emulator: Emulator) -> None:
    """Legacy completions: streamed text equals the non-streamed text for the same prompt."""
    model = emulator.options.model
    whole = await client.completions.create(model=model, prompt="Once upon a time", max_tokens=20)
    assert whole.object == "text_completion"
    assert whole.id.startswith("cmpl-")
    stream = await client.completions.create(
        model=model,
        prompt="Once upon a time",
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    streamed = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert streamed == whole.choices[0].text
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


async def test_same_prompt_same_answer_and_seed_changes_it(
    start_emulator: EmulatorFactory,
) -> None:
    """Deterministic text: two requests agree; an emulator with another seed answers otherwise."""
    answers = []
    for seed in (7, 7, 8):
        emu = await start_emulator(seed=seed)
        async with AsyncOpenAI(base_url=f"{emu.url}/v1", api_key="k", max_retries=0) as sdk:
            reply = await sdk.chat.completions.create(
                model=emu.options.model, messages=MESSAGES, max_tokens=30
            )
        answers.append(reply.choices[0].message.content)
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


async def test_stop_and_n_choices(client: AsyncOpenAI, emulator: Emulator) -> None:
    """stop ends the answer before the stop string; n=3 gives three indexed, distinct choices."""
    model = emulator.options.model
    free = await client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=40)
    text = free.choices[0].message.content or ""
    needle = text.split()[3]
    stopped = await client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=40, stop=[needle]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(needle)]
    many = await client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8, n=3)
    assert [choice.index for choice in many.choices] == [0, 1, 2]
    assert len({choice.message.content for choice in many.choices}) == 3


async def test_raw_sse_framing_and_request_id(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Events are exactly ``data: <json>\\n\\n``, end with [DONE]; the request id shapes the id."""
    body = chat_body(emulator, max_tokens=4, stream=True)
    async with http.post(
        f"{emulator.url}/v1/chat/completions", json=body, headers={"X-Request-Id": "trace-42"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["X-Request-Id"] == "trace-42"
        raw = await response.read()
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    assert events[-2] == b"data: [DONE]"
    payloads = [json.loads(event.removeprefix(b"data: ")) for event in events[:-2]]
    assert all(event.startswith(b"data: {") for event in events[:-2])
    assert all(payload["id"] == "chatcmpl-trace-42" for payload in payloads)
    assert [p["choices"][0]["finish_reason"] for p in payloads] == [
        None,
        None,
        None,
        None,
        "length",
    ]
    assert "stop_reason" in payloads[-1]["choices"][0]


async def test_request_id_is_created_when_absent(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Without X-Request-Id the response still carries one (a uuid4 hex), and so do errors."""
    async with http.post(
        f"{emulator.url}/v1/completions", json={"prompt": "x", "max_tokens": 2}
    ) as response:
        created = response.headers["X-Request-Id"]
        body = await response.json()
    assert len(created) == 32
    assert body["id"].startswith("cmpl-")
    async with http.get(f"{emulator.url}/nowhere") as response:
        assert response.status == 404
        assert await response.json() == {"detail": "Not Found"}
        assert "X-Request-Id" in response.headers


async def test_request_id_header_can_be_switched_off(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """With enable_request_id_headers off no header is added, but the body id still uses it."""
    emu = await start_emulator(enable_request_id_headers=False)
    async with http.post(
        f"{emu.url}/v1/chat/completions",
        json=chat_body(emu, max_tokens=2),
        headers={"X-Request-Id": "abc"},
    ) as response:
        assert "X-Request-Id" not in response.headers
        assert (await response.json())["id"] == "chatcmpl-abc"


async def test_models_health_version(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """/v1/models lists the served model like vLLM; /health is an empty 200; /version names it."""
    async with http.get(f"{emulator.url}/v1/models") as response:
        models = await response.json()
    card = models["data"][0]
    assert models["object"] == "list"
    assert (card["id"], card["owned_by"], card["max_model_len"]) == (
        emulator.options.model,
        "vllm",
        emulator.options.max_model_len,
    )
    async with http.get(f"{emulator.url}/health") as response:
        assert (response.status, await response.read()) == (200, b"")
    async with http.get(f"{emulator.url}/version") as response:
        assert await response.json() == {"version": "0.33.0"}


@pytest.mark.parametrize(
    ("body", "status", "err_type"),
    [
        ({"model": "other", "messages": MESSAGES}, 404, "NotFoundError"),
        ({"messages": []}, 400, "BadRequestError"),
        ({"messages": MESSAGES, "max_tokens": 0}, 400, "BadRequestError"),
        ({"messages": MESSAGES, "max_tokens": 5000}, 400, "BadRequestError"),
        ({"messages": MESSAGES, "stream_options": {"include_usage": True}}, 400, "BadRequestError"),
    ],
    ids=[
        "unknown-model",
        "no-messages",
        "zero-max-tokens",
        "context-overflow",
        "options-no-stream",
    ],
)
async def test_errors_have_vllm_shape(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    body: dict[str, object],
    status: int,
    err_type: str,
) -> None:
    """Bad requests get vLLM's status and ``{"error": {message, type, param, code}}`` body."""
    async with http.post(f"{emulator.url}/v1/chat/completions", json=body) as response:
        assert response.status == status
        error = (await response.json())["error"]
    assert error["type"] == err_type
    assert error["code"] == status
    assert error["message"]
    assert set(error) == {"message", "type", "param", "code"}


async def test_invalid_json_and_old_flat_error_shape(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """Bad JSON is a 400; the v0.9 profile answers errors in the older flat shape."""
    emu = await start_emulator(metrics_profile="v0.9")
    async with http.post(f"{emu.url}/v1/chat/completions", data=b"{nope") as response:
        assert response.status == 400
        body = await response.json()
    assert body["object"] == "error"
    # FastAPI's request validation error, as a real 0.32.0 server reports it
    assert body["type"] == "Bad Request"
    assert body["param"] == "body.1"
    assert body["code"] == 400
