"""Per-request histograms and counters, and the exchange the sampler is offered."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sidecar.proxy.metrics import ModelLabels, endpoint_label
from tests.proxy.conftest import ProxyFactory
from tests.proxy.fake_vllm import MODEL
from tests.proxy.helpers import Proxied, RecordingSampler, sample_value
from tests.support import wait_until

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
PER_MODEL = {"model_name": MODEL, "key": "none"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


def _histogram(name: str) -> tuple[float, float]:
    """(count, sum) of a per-model histogram of the fake model."""
    return (
        sample_value(f"vllm_sidecar_proxy_{name}_count", **PER_MODEL),
        sample_value(f"vllm_sidecar_proxy_{name}_sum", **PER_MODEL),
    )


async def test_streamed_requests_fill_every_histogram(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """Two streams (with and without include_usage) observe TTFT, gaps, e2e, tokens, overhead."""
    proxy.fake.token_delay = 0.02
    names = [
        "ttft_seconds",
        "e2e_latency_seconds",
        "inter_token_seconds",
        "prompt_tokens",
        "completion_tokens",
    ]
    before = {name: _histogram(name) for name in names}
    overhead_before = sample_value("vllm_sidecar_proxy_overhead_seconds_count")
    requests_before = sample_value(
        "vllm_sidecar_proxy_requests_total",
        status="200", endpoint="/v1/chat/completions", **PER_MODEL,
    )  # fmt: skip
    for options in ({"include_usage": True}, None):
        body = {**CHAT, "stream": True, "stream_options": options}
        async with http.post(f"{proxy.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200
            await response.read()
    await wait_until(lambda: len(proxy.sampler.offers) == 2)
    delta = {name: tuple(a - b for a, b in zip(_histogram(name), before[name], strict=True))
             for name in names}  # fmt: skip
    assert delta["ttft_seconds"][0] == 2
    assert 0 < delta["ttft_seconds"][1] < 0.2
    assert delta["e2e_latency_seconds"][0] == 2
    assert delta["e2e_latency_seconds"][1] >= 2 * 5 * 0.02
    # 5 token events per stream: 4 gaps after the first token (trailers add none).
    assert delta["inter_token_seconds"][0] == 8
    assert 8 * 0.015 < delta["inter_token_seconds"][1] < 8 * 0.1
    # Usage from vLLM for the first stream, one token per content event for the second.
    assert delta["prompt_tokens"] == (1.0, 7.0)
    assert delta["completion_tokens"] == (2.0, 10.0)
    assert sample_value("vllm_sidecar_proxy_overhead_seconds_count") == overhead_before + 2
    assert sample_value(
        "vllm_sidecar_proxy_requests_total",
        status="200", endpoint="/v1/chat/completions", **PER_MODEL,
    ) == requests_before + 2  # fmt: skip
    assert sample_value("vllm_sidecar_proxy_in_flight_requests") == 0


async def test_non_streamed_request_observes_usage_but_no_ttft(
    proxy: Proxied, http: aiohttp.ClientSession
) -> None:
    """A plain completion gives e2e and both token counts from usage, and no TTFT."""
    ttft_before = _histogram("ttft_seconds")
    completion_before = _histogram("completion_tokens")
    async with http.post(f"{proxy.url}/v1/completions", json={**CHAT, "prompt": "x"}) as r:
        assert r.status == 200
    await wait_until(lambda: proxy.sampler.offers)
    assert _histogram("ttft_seconds") == ttft_before
    count, total = _histogram("completion_tokens")
    assert (count - completion_before[0], total - completion_before[1]) == (1, 5)
    exchange, _ = proxy.sampler.offers[-1]
    assert exchange.finish_reason == "length"
    assert exchange.ttft_seconds is None
    assert not exchange.streamed


async def test_failures_count_by_status_and_kind_without_latency(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A 504 counts in requests_total and upstream_errors_total but not in latency."""
    proxied = await make_proxy(upstream_read_timeout=0.2)
    proxied.fake.mode = "stall_headers"
    e2e_before = _histogram("e2e_latency_seconds")
    timeouts = sample_value("vllm_sidecar_proxy_upstream_errors_total", kind="timeout")
    labels = {"model_name": "other", "key": "none", "status": "504"}
    failed = sample_value(
        "vllm_sidecar_proxy_requests_total", endpoint="/v1/chat/completions", **labels
    )
    async with http.post(f"{proxied.url}/v1/chat/completions", json=CHAT) as response:
        assert response.status == 504
    await wait_until(lambda: proxied.sampler.offers)
    assert sample_value("vllm_sidecar_proxy_upstream_errors_total", kind="timeout") == timeouts + 1
    assert (
        sample_value("vllm_sidecar_proxy_requests_total", endpoint="/v1/chat/completions", **labels)
        == failed + 1
    )
    assert _histogram("e2e_latency_seconds") == e2e_before


async def test_offer_once_per_request_with_sane_timings(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """Every request is offered exactly once, with the bytes relayed and consistent times."""
    sampler = RecordingSampler(sample=True)
    proxied = await make_proxy(sampler=sampler)
    proxied.fake.token_delay = 0.01
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    started = time.time()
    async with http.post(
        f"{proxied.url}/v1/chat/completions", json=body, headers={"X-Request-Id": "s-1"}
    ) as response:
        relayed = await response.read()
    async with http.get(f"{proxied.url}/v1/models", headers={"X-Request-Id": "s-2"}) as r:
        listing = await r.read()
    await wait_until(lambda: len(sampler.offers) == 2)
    assert sampler.decisions == [("s-1", MODEL), ("s-2", None)]
    (stream, stream_sampled), (models, _) = sampler.offers
    assert stream_sampled is True
    assert stream.request_id == "s-1"
    assert (stream.method, stream.path, stream.status) == ("POST", "/v1/chat/completions", 200)
    assert stream.model == MODEL
    assert stream.streamed
    assert json.loads(stream.request_body) == body
    assert b"".join(stream.response_chunks) == relayed
    assert stream.finish_reason == "length"
    assert stream.error is None
    assert started - 1 < stream.started_at < time.time()
    assert stream.ttft_seconds is not None
    assert 0 < stream.ttft_seconds < stream.e2e_seconds < 5
    assert models.model is None
    assert b"".join(models.response_chunks) == listing
    assert models.ttft_seconds is None


async def test_failing_sampler_never_fails_a_request(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """A sampler that raises in both calls is counted and ignored."""
    proxied = await make_proxy(sampler=RecordingSampler(fail=True))
    before = {
        call: sample_value("vllm_sidecar_proxy_sampler_errors_total", call=call)
        for call in ("head_decision", "offer")
    }
    async with http.post(f"{proxied.url}/v1/chat/completions", json=CHAT) as response:
        assert response.status == 200
        assert (await response.json())["usage"]["completion_tokens"] == 5
    await wait_until(lambda: proxied.sampler.offers)
    for call, value in before.items():
        assert sample_value("vllm_sidecar_proxy_sampler_errors_total", call=call) == value + 1


def test_model_labels_stay_bounded() -> None:
    """Only models vLLM served become labels, up to the limit; the rest are 'other'."""
    labels = ModelLabels(limit=2)
    assert labels.label("typo-model", served=False) == "other"
    assert labels.label("a", served=True) == "a"
    assert labels.label("a", served=False) == "a"
    assert labels.label("x" * 200, served=True) == "other"
    assert labels.label("b", served=True) == "b"
    assert labels.label("c", served=True) == "other"
    assert labels.label(None, served=True) == "none"


def test_endpoint_labels_are_route_templates() -> None:
    """Known vLLM routes keep their path; ids are templated; anything else is 'other'."""
    assert endpoint_label("/v1/chat/completions") == "/v1/chat/completions"
    assert endpoint_label("/v1/responses/resp_123") == "/v1/responses/{id}"
    assert endpoint_label("/v1/models/abc") == "/v1/models/{id}"
    assert endpoint_label("/health") == "/health"
    assert endpoint_label("/random/probe/123") == "other"


async def test_a_long_response_keeps_only_its_start_for_the_sampler(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    """Past sample_max_response_bytes the client still gets every byte, the sampler the start
    (flagged), and usage and finish_reason still come from the end of the stream."""
    sampler = RecordingSampler(sample=True)
    proxied = await make_proxy(sampler=sampler, sample_max_response_bytes=4096)
    body = {**CHAT, "max_tokens": 2000, "stream": True, "stream_options": {"include_usage": True}}
    completions_before = _histogram("completion_tokens")
    async with http.post(f"{proxied.url}/v1/chat/completions", json=body) as response:
        relayed = await response.read()
    await wait_until(lambda: sampler.offers)
    ((stream, _),) = sampler.offers
    kept = b"".join(stream.response_chunks)
    assert len(relayed) > 400 * 1024
    assert relayed.endswith(b"data: [DONE]\n\n")
    assert relayed.startswith(kept)
    assert len(kept) == 4096  # the read that crossed the limit is split there
    assert stream.response_truncated
    assert stream.finish_reason == "length"
    count, total = _histogram("completion_tokens")
    assert (count, total) == (completions_before[0] + 1, completions_before[1] + 2000)


async def test_a_response_within_the_limit_is_kept_whole(
    make_proxy: ProxyFactory, http: aiohttp.ClientSession
) -> None:
    sampler = RecordingSampler(sample=True)
    proxied = await make_proxy(sampler=sampler, sample_max_response_bytes=1024 * 1024)
    body = {**CHAT, "max_tokens": 400, "stream": True}
    async with http.post(f"{proxied.url}/v1/chat/completions", json=body) as response:
        relayed = await response.read()
    await wait_until(lambda: sampler.offers)
    ((stream, _),) = sampler.offers
    assert b"".join(stream.response_chunks) == relayed
    assert not stream.response_truncated
