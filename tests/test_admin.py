"""The admin server's contract: derived gauges named and labelled as documented."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar import app as sidecar_app
from sidecar.config import load
from tests.support import free_port

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0)


class FakeVLLM:
    """Two data-parallel engines whose metrics move between scrapes (prometheus_client)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["engine", "model_name"]
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            labels,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.kv = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage.", labels, registry=self.registry
        )
        self.finished = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*labels, "finished_reason"],
            registry=self.registry,
        )
        for name in ("num_requests_running", "num_requests_waiting"):
            gauge = Gauge(f"vllm:{name}", name, labels, registry=self.registry)
            for engine in ("0", "1"):
                gauge.labels(engine, MODEL).set(3)
        self.kv.labels("0", MODEL).set(0.5)
        self.kv.labels("1", MODEL).set(0.9)

    def step(self) -> None:
        """Each scrape sees a few more requests: engine 0 fast, engine 1 slow."""
        for _ in range(10):
            self.ttft.labels("0", MODEL).observe(0.015)
            self.ttft.labels("1", MODEL).observe(0.07)
            self.finished.labels("0", MODEL, "stop").inc()
            self.finished.labels("1", MODEL, "stop").inc()


@pytest.fixture
async def fake_vllm() -> AsyncIterator[tuple[FakeVLLM, str]]:
    """The fake served over real HTTP on a free port."""
    fake = FakeVLLM()

    async def metrics(_request: web.Request) -> web.Response:
        fake.step()
        return web.Response(body=generate_latest(fake.registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_derived_gauges_follow_the_contract(
    fake_vllm: tuple[FakeVLLM, str], tmp_path: Path
) -> None:
    """ttft gauges carry model_name/quantile/window, engine only on per-engine series."""
    _fake, url = fake_vllm
    settings = load(
        upstream=url,
        admin_listen=f"127.0.0.1:{free_port()}",
        listen="127.0.0.1:0",
        scrape_interval=0.1,
        spool_dir=tmp_path,
    )
    sidecar = sidecar_app.build(settings)
    await sidecar_app.start(sidecar)
    admin = "http://{}:{}".format(*sidecar.bound["admin"])
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # a few scrapes are needed before windows have two ends
                async with session.get(f"{admin}/metrics") as response:
                    assert response.status == 200
                    text = await response.text()
                if len(_samples(text, "vllm_sidecar_ttft_seconds")) == 18:
                    break
                await asyncio.sleep(0.1)
            async with session.get(f"{admin}/api/v1/signals") as response:
                signals = (await response.json())["signals"]
    finally:
        await sidecar_app.shutdown(sidecar)

    ttft = _samples(text, "vllm_sidecar_ttft_seconds")
    per_model = {
        (labels["quantile"], labels["window"]): value
        for labels, value in ttft
        if "engine" not in labels
    }
    per_engine = {
        (labels["engine"], labels["quantile"], labels["window"]): value
        for labels, value in ttft
        if "engine" in labels
    }
    assert {labels["model_name"] for labels, _ in ttft} == {MODEL}
    assert set(per_model) == {(q, w) for q in ("0.5", "0.95", "0.99") for w in ("1m", "5m")}
    # Engine 0 observes 15 ms (bucket 10-20 ms), engine 1 observes 70 ms (60-80 ms).
    assert 0.01 < per_engine[("0", "0.99", "1m")] <= 0.02
    assert 0.06 < per_engine[("1", "0.99", "1m")] <= 0.08
    # Half the model's requests are fast, half slow: the median sits at the edge between them.
    assert per_model[("0.5", "1m")] == pytest.approx(0.02)
    assert per_model[("0.99", "1m")] > 0.06
    # The exported number is the one /api/v1/signals reports.
    model_json = next(t for t in signals["targets"] if t["engine"] is None)
    assert model_json["ttft_seconds"]["1m"]["0.99"] == pytest.approx(per_model[("0.99", "1m")])
    assert model_json["engines"] == ["0", "1"]
    engine_json = next(t for t in signals["targets"] if t["engine"] == "1")
    assert engine_json["kv_cache_usage_ratio"] == 0.9
    # KV usage per model is the fullest engine, never a sum.
    kv = {
        labels.get("engine"): value
        for labels, value in _samples(text, "vllm_sidecar_kv_cache_usage_ratio")
    }
    assert kv == {None: 0.9, "0": 0.5, "1": 0.9}
    running = {
        labels.get("engine"): value
        for labels, value in _samples(text, "vllm_sidecar_requests_running")
    }
    assert running == {None: 6.0, "0": 3.0, "1": 3.0}
    assert _samples(text, "vllm_sidecar_build_info")[0][1] == 1.0
    assert "_created" not in text, "no per-child start timestamps nobody queries"
    assert "vllm_sidecar_scrapes_total" in text
    missing = {
        labels["metric"]: value
        for labels, value in _samples(text, "vllm_sidecar_vllm_metrics_missing")
    }
    assert missing["ttft"] == 0.0
    assert missing["e2e_latency"] == 1.0, (
        "the fake exposes no e2e histogram: the meta signal says so"
    )
