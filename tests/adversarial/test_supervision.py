"""Robustness of the background tasks: a crash is logged, marks the sidecar not ready and is
restarted (scrape loop) or stops the process non-zero (tasks that must never end)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.pages import V1_PAGE, read_page
from sidecar import app as sidecar_app
from sidecar.config import Settings
from sidecar.signals.derive import derive
from sidecar.snapshot import engine_order
from sidecar.supervise import TASK_FAILURES, watch
from tests.adversarial.pages_server import PageServer
from tests.scrape.pages import snap
from tests.support import free_port, wait_until


def test_one_engine_order_for_every_label() -> None:
    """Numeric engines in numeric order, "²" (``str.isdigit`` but not a number) and huge
    labels sorted without raising or converting."""
    labels = ["10", "2", "²", "0", "x", "9" * 5000, None, "01"]
    ordered = sorted(labels, key=engine_order)
    assert ordered[:5] == [None, "0", "01", "2", "10"]
    assert ordered[5] == "9" * 5000
    assert set(ordered[6:]) == {"²", "x"}


def test_derive_survives_a_superscript_engine_label() -> None:
    """A page whose engine label is "²" derives signals instead of killing the scrape loop."""
    from sidecar.signals.history import History

    page = read_page(V1_PAGE).replace('engine="0"', 'engine="²"').encode()
    history = History(max_age=900)
    history.append(snap(page))
    signals = derive(history, min_requests_for_ratio=0)
    assert {target.engine for target in signals.targets} >= {"²"}


@pytest.fixture
async def page_server() -> AsyncIterator[PageServer]:
    server = PageServer(read_page(V1_PAGE).encode())
    await server.start()
    yield server
    await server.close()


async def _readyz(admin: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{admin}/readyz") as response:
        return response.status


async def test_a_crashing_scrape_loop_is_logged_unready_and_restarted(
    tmp_path: Path, page_server: PageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug after a scrape (here: derive raising once) no longer stops scraping silently."""
    calls = {"n": 0}

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in derive")
        return derive(*args, **kwargs)

    monkeypatch.setattr(sidecar_app, "derive", failing_once)
    before = TASK_FAILURES.labels(task="scrape")._value.get()
    settings = Settings(
        upstream=page_server.url,
        admin_listen=f"127.0.0.1:{free_port()}",
        proxy_enabled=False,
        scrape_interval=0.2,
        spool_dir=tmp_path / "spool",
    )
    sidecar = sidecar_app.build(settings)
    await sidecar_app.start(sidecar)
    admin = "http://{}:{}".format(*sidecar.bound["admin"])
    try:
        await wait_until(lambda: TASK_FAILURES.labels(task="scrape")._value.get() > before)
        assert await _readyz(admin) == 503
        await wait_until(lambda: calls["n"] >= 3, within=15)  # restarted and scraping again
        assert await _readyz(admin) == 200
    finally:
        await sidecar_app.shutdown(sidecar)


async def test_a_task_that_must_not_end_stops_the_process_non_zero(
    tmp_path: Path, page_server: PageServer
) -> None:
    """If the sampler's uploader or an alert loop ends, the process stops with exit code 1."""
    settings = Settings(
        upstream=page_server.url,
        admin_listen=f"127.0.0.1:{free_port()}",
        proxy_enabled=False,
        spool_dir=tmp_path / "spool",
    )
    sidecar = sidecar_app.build(settings)
    await sidecar_app.start(sidecar)
    try:

        async def broken() -> None:
            raise RuntimeError("worker bug")

        task = asyncio.create_task(broken(), name="sampling-worker")
        watch(task, name="sampling-worker", on_failure=lambda: sidecar_app._part_failed(sidecar))
        await wait_until(sidecar.stop.is_set)
        assert sidecar.exit_code == 1
        assert sidecar.admin_state.draining
    finally:
        await sidecar_app.shutdown(sidecar)
