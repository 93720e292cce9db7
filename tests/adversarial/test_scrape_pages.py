"""Scraping: whole pages of any size, however vLLM sends them; big pages are not "vLLM down"."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.pages import V1_PAGE, read_page, with_engines
from sidecar import app as sidecar_app
from sidecar.config import Settings
from sidecar.scrape.scraper import SCRAPE_ERRORS, UPSTREAM_UP, Scraper
from sidecar.signals.history import History
from tests.adversarial.pages_server import Delivery, PageServer
from tests.scrape.pages import snap
from tests.support import free_port, wait_until

BASE = read_page(V1_PAGE)
EIGHT_ENGINES = with_engines(BASE, 8).encode()


def padded(size: int) -> bytes:
    """A valid page of ``size`` bytes: the reference page cut or padded with comment lines."""
    if size < len(BASE):
        lines = BASE.encode().splitlines(keepends=True)
        page = b""
        for line in lines:
            if len(page) + len(line) > size - 64:
                break
            page += line
    else:
        page = BASE.encode()
    pieces = [page]
    filler = size - len(page)
    while filler > 0:
        line = b"# " + b"x" * min(max(filler - 3, 0), 4000) + b"\n"
        pieces.append(line)
        filler -= len(line)
    return b"".join(pieces)


@pytest.fixture
async def serve() -> AsyncIterator[list[PageServer]]:
    servers: list[PageServer] = []
    yield servers
    for server in servers:
        await server.close()


async def scrape(page: bytes, delivery: Delivery, servers: list[PageServer]) -> Scraper:
    server = PageServer(page, delivery)
    await server.start()
    servers.append(server)
    settings = Settings(upstream=server.url, scrape_timeout=60.0)
    async with aiohttp.ClientSession() as session:
        scraper = Scraper(settings, session, History(max_age=900))
        scraper.snapshot = await scraper.scrape_once()  # type: ignore[attr-defined]
    return scraper


DELIVERIES = {
    "one write, Content-Length": Delivery("length"),
    "one write, chunked": Delivery("chunked"),
    "one write, until close": Delivery("close"),
    "4 KB writes, Content-Length": Delivery("length", write_bytes=4096),
    "4 KB writes, chunked": Delivery("chunked", write_bytes=4096),
    "slow 16 KB writes, chunked": Delivery("chunked", 16384, 16384, 0.02),
}


@pytest.mark.parametrize("size", [1024, 200 * 1024, 5 * 1024 * 1024])
@pytest.mark.parametrize("how", sorted(DELIVERIES))
async def test_pages_of_any_size_are_read_whole(
    size: int, how: str, serve: list[PageServer]
) -> None:
    """1 KB to 5 MB, in one write or many, chunked or not: the scrape holds the whole page."""
    page = padded(size)
    scraper = await scrape(page, DELIVERIES[how], serve)
    snapshot = scraper.snapshot  # type: ignore[attr-defined]
    assert snapshot is not None, scraper.status.last_error
    expected = snap(page)
    assert snapshot.gauges == expected.gauges
    assert snapshot.counters == expected.counters
    assert snapshot.histograms.keys() == expected.histograms.keys()


EIGHT_ENGINE_DELIVERIES = {
    "one write": Delivery("length"),
    "1-byte writes over seconds": Delivery("length", 1, 12_000, 0.1),
    "chunked": Delivery("chunked", write_bytes=8192),
    "content-length, many writes": Delivery("length", write_bytes=1500),
}


@pytest.mark.parametrize("how", sorted(EIGHT_ENGINE_DELIVERIES))
async def test_an_eight_engine_page_matches_prometheus_parser(
    how: str, serve: list[PageServer]
) -> None:
    """A data-parallel page of 8 engines (~370 KB): every scrape good, values as Prometheus'
    own text parser reads them, for every engine."""
    started = time.monotonic()
    scraper = await scrape(EIGHT_ENGINES, EIGHT_ENGINE_DELIVERIES[how], serve)
    snapshot = scraper.snapshot  # type: ignore[attr-defined]
    assert snapshot is not None, scraper.status.last_error
    if how.startswith("1-byte"):
        assert time.monotonic() - started > 2.0  # it really was slow
    reference = {
        (sample.name, sample.labels.get("engine")): sample.value
        for family in text_string_to_metric_families(EIGHT_ENGINES.decode())
        for sample in family.samples
        if sample.name in ("vllm:kv_cache_usage_perc", "vllm:num_requests_running")
    }
    engines = {key.engine for key in snapshot.gauges["kv_cache_usage"]}
    assert engines == {str(n) for n in range(8)}
    for key, value in snapshot.gauges["kv_cache_usage"].items():
        assert value == reference[("vllm:kv_cache_usage_perc", key.engine)]
    for key, value in snapshot.gauges["requests_running"].items():
        assert value == reference[("vllm:num_requests_running", key.engine)]
    assert snapshot.gauges == snap(EIGHT_ENGINES).gauges


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_50_mb_page_is_too_large_and_vllm_is_not_down(
    framing: str, serve: list[PageServer]
) -> None:
    """A 50 MB page is refused as too large (not truncated), and is not blamed on vLLM."""
    before = SCRAPE_ERRORS.labels(reason="too_large")._value.get()
    truncated = SCRAPE_ERRORS.labels(reason="truncated")._value.get()
    scraper = await scrape(padded(50 * 1024 * 1024), Delivery(framing, 1 << 20), serve)
    assert scraper.snapshot is None  # type: ignore[attr-defined]
    assert SCRAPE_ERRORS.labels(reason="too_large")._value.get() == before + 1
    assert SCRAPE_ERRORS.labels(reason="truncated")._value.get() == truncated
    assert UPSTREAM_UP._value.get() == 1
    assert scraper.status.vllm_serving


async def _readyz(admin: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{admin}/readyz") as response:
        return response.status


async def test_readyz_turns_503_when_vllm_refuses_new_connections(
    tmp_path: Path, serve: list[PageServer]
) -> None:
    """vLLM still answers on an old keep-alive connection but refuses new ones (the proxy
    answers 502): the sidecar is not ready."""
    server = PageServer(BASE.encode())
    await server.start()
    serve.append(server)
    settings = Settings(
        upstream=server.url,
        admin_listen=f"127.0.0.1:{free_port()}",
        listen=f"127.0.0.1:{free_port()}",
        scrape_interval=0.2,
        scrape_timeout=1.0,
        spool_dir=tmp_path / "spool",
    )
    sidecar = sidecar_app.build(settings)
    await sidecar_app.start(sidecar)
    admin = "http://{}:{}".format(*sidecar.bound["admin"])
    proxy = "http://{}:{}".format(*sidecar.bound["proxy"])
    try:
        statuses: list[int] = []

        async def ready() -> bool:
            statuses.append(await _readyz(admin))
            return statuses[-1] == 200

        await wait_until(lambda: sidecar.scraper.status.ready, within=10)
        assert await ready()
        server.stop_listening()
        async with aiohttp.ClientSession() as session, session.get(f"{proxy}/v1/models") as r:
            assert r.status == 502
        await wait_until(lambda: not sidecar.scraper.status.ready, within=10)
        assert await _readyz(admin) == 503
    finally:
        await sidecar_app.shutdown(sidecar)
