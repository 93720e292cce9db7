"""The official openai SDK gets the same answers through the proxy as from vLLM (the emulator)."""

from __future__ import annotations

from typing import Any

import pytest
from openai import AsyncOpenAI

from sidecar.emulator import Emulator
from tests.proxy.conftest import ProxyFactory
from tests.proxy.helpers import Proxied


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A response object without ``created`` (wall-clock seconds, may tick between calls)."""
    return {key: value for key, value in result.items() if key != "created"}


async def _chat(client: AsyncOpenAI, model: str, *, stream: bool, usage: bool) -> Any:
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": 12,
        "extra_headers": {"X-Request-Id": "parity-chat"},
    }
    if not stream:
        return _comparable((await client.chat.completions.create(**kwargs)).model_dump())
    if usage:
        kwargs["stream_options"] = {"include_usage": True}
    events = await client.chat.completions.create(stream=True, **kwargs)
    return [_comparable(chunk.model_dump()) async for chunk in events]


async def _completion(client: AsyncOpenAI, model: str, *, stream: bool, usage: bool) -> Any:
    kwargs: dict[str, Any] = {
        "model": model,
        "prompt": "Once upon a time",
        "max_tokens": 12,
        "extra_headers": {"X-Request-Id": "parity-completion"},
    }
    if not stream:
        return _comparable((await client.completions.create(**kwargs)).model_dump())
    if usage:
        kwargs["stream_options"] = {"include_usage": True}
    events = await client.completions.create(stream=True, **kwargs)
    return [_comparable(chunk.model_dump()) async for chunk in events]


@pytest.fixture
async def proxied_emulator(make_proxy: ProxyFactory, emulator: Emulator) -> Proxied:
    """The proxy in front of the emulator."""
    return await make_proxy(upstream=emulator.url)


@pytest.mark.parametrize("call", [_chat, _completion], ids=["chat", "completions"])
@pytest.mark.parametrize(
    ("stream", "usage"),
    [(False, False), (True, False), (True, True)],
    ids=["plain", "stream", "stream+usage"],
)
async def test_sdk_sees_the_same_answer_direct_and_proxied(
    proxied_emulator: Proxied, emulator: Emulator, call: Any, stream: bool, usage: bool
) -> None:
    """Chat and completions, streamed or not, with or without include_usage: identical objects."""
    model = emulator.options.model
    async with (
        AsyncOpenAI(base_url=f"{emulator.url}/v1", api_key="k", max_retries=0) as direct,
        AsyncOpenAI(base_url=f"{proxied_emulator.url}/v1", api_key="k", max_retries=0) as proxied,
    ):
        expected = await call(direct, model, stream=stream, usage=usage)
        got = await call(proxied, model, stream=stream, usage=usage)
    assert got == expected
    if stream:
        assert len(got) >= 3
        assert (got[-1]["usage"] is not None) is usage
        assert "".join(
            (chunk["choices"][0].get("delta") or {}).get("content")
            or chunk["choices"][0].get("text")
            or ""
            for chunk in got
            if chunk["choices"]
        )
    else:
        assert got["usage"]["completion_tokens"] > 0
    exchange, _ = proxied_emulator.sampler.offers[-1]
    assert exchange.status == 200
    assert exchange.streamed is stream
    assert exchange.error is None


async def test_sdk_error_is_the_same_exception_direct_and_proxied(
    proxied_emulator: Proxied, emulator: Emulator
) -> None:
    """vLLM's 404 for an unknown model reaches the SDK as the same typed error and body."""
    errors = []
    for base in (emulator.url, proxied_emulator.url):
        async with AsyncOpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0) as client:
            with pytest.raises(Exception) as caught:  # noqa: PT011 - compared below
                await client.chat.completions.create(
                    model="no-such-model", messages=[{"role": "user", "content": "hi"}]
                )
            errors.append(caught.value)
    direct, proxied = errors
    assert type(proxied) is type(direct)
    assert type(direct).__name__ == "NotFoundError"
    assert proxied.body == direct.body  # type: ignore[attr-defined]
    assert proxied.status_code == direct.status_code == 404  # type: ignore[attr-defined]
