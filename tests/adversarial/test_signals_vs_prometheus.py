"""A data-parallel page of 8 engines (~370 KB) sent one byte per write over seconds: the signals
the sidecar derives equal what a real Prometheus reads from the same page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.pages import V1_PAGE, read_page, with_engines
from sidecar.config import Settings
from sidecar.scrape.scraper import Scraper
from sidecar.signals.derive import derive
from sidecar.signals.history import History
from tests.adversarial.pages_server import Delivery, PageServer
from tests.support import Processes, free_port, wait_for_port

PAGE = with_engines(read_page(V1_PAGE), 8).encode()
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GAUGES = {
    "requests_running": "vllm:num_requests_running",
    "requests_waiting": "vllm:num_requests_waiting",
    "kv_cache_usage": "vllm:kv_cache_usage_perc",
}


def start_prometheus(processes: Processes, workdir: Path, target: str) -> str:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "vllm", "static_configs": [{"targets": [target]}]}],
    }
    workdir.mkdir()
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    processes.start(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log=workdir / "prometheus.log",
    )
    wait_for_port(port)
    return f"http://127.0.0.1:{port}"


def query(url: str, expr: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=5
    ) as response:
        body: dict[str, Any] = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_signals_from_a_slow_8_engine_page_equal_prometheus(
    tmp_path: Path, processes: Processes
) -> None:
    for_prometheus = PageServer(PAGE)
    slow = PageServer(
        PAGE, Delivery("length", write_bytes=1, pause_every=20_000, pause_seconds=0.1)
    )
    await for_prometheus.start()
    await slow.start()
    try:
        prometheus = await asyncio.to_thread(
            start_prometheus, processes, tmp_path / "prometheus", f"127.0.0.1:{for_prometheus.port}"
        )
        settings = Settings(upstream=slow.url, scrape_timeout=60.0)
        history = History(max_age=900)
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            snapshot = await Scraper(settings, session, history).scrape_once()
        assert snapshot is not None
        assert time.monotonic() - started > 1.0  # the page really arrived slowly
        signals = derive(history, min_requests_for_ratio=0)

        expected: dict[tuple[str, str], float] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(expected) < 8 * len(GAUGES):
            for field, metric in GAUGES.items():
                with contextlib.suppress(OSError):
                    for series in await asyncio.to_thread(query, prometheus, metric):
                        engine = series["metric"]["engine"]
                        expected[(field, engine)] = float(series["value"][1])
            await asyncio.sleep(0.2)
        assert len(expected) == 8 * len(GAUGES), expected

        for engine in map(str, range(8)):
            target = signals.for_model(MODEL, engine)
            assert target is not None
            for field in GAUGES:
                assert getattr(target, field) == expected[(field, engine)], (field, engine)
        whole = signals.for_model(MODEL)
        assert whole is not None
        total_running = sum(expected[("requests_running", str(e))] for e in range(8))
        assert whole.requests_running == total_running
    finally:
        await for_prometheus.close()
        await slow.close()
