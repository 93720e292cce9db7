"""The scrape loop against a real HTTP upstream that misbehaves in every way a vLLM can."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sidecar import app as sidecar_app
from sidecar.config import load
from sidecar.scrape.scraper import SCRAPE_ERRORS
from tests.support import TEST_DATA, free_port

PAGE = (TEST_DATA / "vllm" / "v1-1model.prom").read_bytes()


@dataclass
class Upstream:
    """A fake vLLM /metrics whose behaviour a test switches at run time."""

    mode: str = "ok"
    url: str = ""


async def _raw_truncated(request: web.Request) -> web.StreamResponse:
    """Promise more bytes than are sent, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Length": str(len(PAGE))})
    response.content_type = "text/plain"
    await response.prepare(request)
    await response.write(PAGE[: len(PAGE) // 2])
    transport = request.transport
    assert transport is not None
    transport.close()
    return response


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """An aiohttp server on a free port standing in for vLLM's /metrics."""
    state = Upstream()

    async def metrics(request: web.Request) -> web.StreamResponse:
        if state.mode == "ok":
            return web.Response(body=PAGE, content_type="text/plain")
        if state.mode == "500":
            return web.Response(status=500, text="engine dead")
        if state.mode == "slow":
            await asyncio.sleep(1.5)
            return web.Response(body=PAGE, content_type="text/plain")
        if state.mode == "truncated":
            return await _raw_truncated(request)
        if state.mode == "cut_line":
            return web.Response(body=PAGE[:-7], content_type="text/plain")
        if state.mode == "binary":
            return web.Response(body=b"\x00\xff\xfe metrics\n", content_type="text/plain")
        return web.Response(body=b"this is {{{ not metrics\n", content_type="text/plain")

    async def version(_request: web.Request) -> web.Response:
        return web.json_response({"version": "0.33.0"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def _readyz(session: aiohttp.ClientSession, admin: str) -> int:
    async with session.get(f"{admin}/readyz") as response:
        return response.status


def _error_count(reason: str) -> float:
    return SCRAPE_ERRORS.labels(reason=reason)._value.get()


@pytest.mark.parametrize(
    ("mode", "reason", "readyz"),
    [
        ("500", "http_status", 503),
        ("slow", "timeout", 503),
        ("truncated", "truncated", 503),
        ("cut_line", "truncated", 200),
        ("garbage", "syntax", 200),
        ("binary", "encoding", 200),
    ],
)
async def test_each_failure_is_counted_and_recovers(
    upstream: Upstream, mode: str, reason: str, readyz: int, tmp_path: Path
) -> None:
    """A bad scrape is counted by reason; /readyz turns 503 when it says vLLM cannot serve (no
    answer, an error status, a dropped connection) but not for a page it sent that we could not
    use; the next good scrape recovers."""
    settings = load(
        upstream=upstream.url,
        admin_listen=f"127.0.0.1:{free_port()}",
        listen="127.0.0.1:0",
        scrape_interval=0.2,
        scrape_timeout=0.5,
        spool_dir=tmp_path,
    )
    sidecar = sidecar_app.build(settings)
    await sidecar_app.start(sidecar)
    admin = "http://{}:{}".format(*sidecar.bound["admin"])
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                if await _readyz(session, admin) == 200:
                    break
                await asyncio.sleep(0.1)
            assert await _readyz(session, admin) == 200
            before = _error_count(reason)
            upstream.mode = mode
            for _ in range(60):
                if _error_count(reason) > before:
                    break
                await asyncio.sleep(0.1)
            assert _error_count(reason) > before
            assert await _readyz(session, admin) == readyz
            async with session.get(f"{admin}/healthz") as response:
                assert response.status == 200
            upstream.mode = "ok"
            for _ in range(60):
                if await _readyz(session, admin) == 200:
                    break
                await asyncio.sleep(0.1)
            assert await _readyz(session, admin) == 200
            async with session.get(f"{admin}/api/v1/signals") as response:
                body = await response.json()
            assert body["scrape"]["vllm_version"] == "0.33.0"
            assert body["signals"]["targets"][0]["model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
    finally:
        await sidecar_app.shutdown(sidecar)


async def test_dead_upstream_keeps_process_serving(processes: object, tmp_path: Path) -> None:
    """`vllm-sidecar run` against a port nobody listens on stays up, unready, and counts errors."""
    from tests.support import Processes, wait_for_port

    assert isinstance(processes, Processes)
    with socket.socket() as sock:  # a port that refuses connections
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    admin_port = free_port()
    child = processes.sidecar(
        "run",
        "--upstream",
        f"http://127.0.0.1:{dead_port}",
        "--admin-listen",
        f"127.0.0.1:{admin_port}",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--scrape-interval",
        "0.2",
        "--spool-dir",
        str(tmp_path / "spool"),
        "--samples-dir",
        str(tmp_path / "samples"),
        log=tmp_path / "sidecar.log",
    )
    wait_for_port(admin_port)
    async with aiohttp.ClientSession() as session:
        await asyncio.sleep(1.0)
        assert await _readyz(session, f"http://127.0.0.1:{admin_port}") == 503
        async with session.get(f"http://127.0.0.1:{admin_port}/metrics") as response:
            text = await response.text()
    errors = [
        line
        for line in text.splitlines()
        if line.startswith('vllm_sidecar_scrape_errors_total{reason="connect"}')
    ]
    assert errors
    assert float(errors[0].split()[-1]) >= 2
    assert child.poll() is None
    log = (tmp_path / "sidecar.log").read_text()
    assert log.count('"scrape_failed"') == 1, "a failure state is logged once, not every scrape"
