"""A starting sidecar raises nothing until its first scrape of vLLM has finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from sidecar import app as sidecar_app
from sidecar.config import load
from sidecar.metrics import REGISTRY
from tests.support import free_port, wait_until


@pytest.fixture
async def slow_vllm() -> AsyncIterator[tuple[asyncio.Event, str]]:
    """A vLLM whose /metrics answers 500 only once the test sets the event."""
    release = asyncio.Event()

    async def metrics(_request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=500, text="engine dead")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield release, f"http://127.0.0.1:{port}"
    release.set()
    await runner.cleanup()


def _evaluations() -> float:
    return REGISTRY.get_sample_value("vllm_sidecar_alert_evaluations_total") or 0.0


async def test_vllm_down_waits_for_the_first_scrape(
    slow_vllm: tuple[asyncio.Event, str], tmp_path: Path
) -> None:
    """While the first scrape hangs, evaluations find nothing; its failure makes VLLMDown pend."""
    release, url = slow_vllm
    settings = load(
        upstream=url,
        admin_listen=f"127.0.0.1:{free_port()}",
        proxy_enabled=False,
        scrape_interval=0.2,
        scrape_timeout=30.0,
        alert_evaluation_interval=0.05,
        spool_dir=tmp_path,
    )
    sidecar = sidecar_app.build(settings)
    before = _evaluations()
    await sidecar_app.start(sidecar)
    try:
        await wait_until(lambda: _evaluations() >= before + 5)
        assert not sidecar.scraper.status.finished_once
        assert sidecar.engine.alert_list() == []
        release.set()

        def down() -> list[str]:  # other rules read process-wide gauges earlier tests left set
            alerts = sidecar.engine.alert_list()
            return [a["state"] for a in alerts if a["labels"]["alertname"] == "VLLMDown"]

        await wait_until(lambda: down() == ["pending"], within=30.0)
    finally:
        await sidecar_app.shutdown(sidecar)
