"""Fire drill, end to end, with real servers: the KV canary on both paths, on old and new vLLM.

Two emulated vLLMs (current metric names, and the 0.6 legacy page) are pushed to KV-cache
saturation while clients stream through two real ``vllm-sidecar run`` processes. A real Prometheus
scrapes the emulators and the sidecars with rules rendered from the same settings file, and a real
Alertmanager receives from both Prometheus and the sidecars through a small recording relay (so
the test can tell which path delivered what). Alertmanager is down while the alerts fire and
comes up later: the sidecars keep scraping and proxying, count failed notifications, and deliver
once it is back. Then the load stops, the derived TTFT p99 is compared with Prometheus'
``histogram_quantile`` over the same series, and the pressure is released so both paths resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from sidecar.alerting import generate
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.runner import Emulator, run_emulator
from tests.alerting.conftest import Alertmanager
from tests.support import Processes, free_port, wait_for_port, wait_until

PROMETHEUS = "/usr/bin/prometheus"
ALERT = "VLLMKVCacheSaturation"
MODELS = {"current": "llama-current", "v0.6": "llama-legacy"}
"""Emulator metrics profile -> served model name."""
SETTINGS = """\
scrape_interval: 0.5
alert_evaluation_interval: 0.5
alert_resend_interval: 2
alert_for: {VLLMKVCacheSaturation: 3}
"""
"""One settings file for the sidecars and for the rules Prometheus loads (same ``for``)."""
NOTIFY_FAILURES = (
    'vllm_sidecar_alert_notifications_total{outcome="failure",receiver="alertmanager"}'
)


def _timestamp(value: str | None) -> float | None:
    if not value or value.startswith("0001"):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Post:
    """One batch of alerts a sender pushed through the relay, and Alertmanager's answer."""

    source: str
    at: float
    alerts: list[dict[str, Any]]
    status: int


@dataclass
class Relay:
    """Forwards ``POST /<source>/api/v2/alerts`` to Alertmanager and remembers every batch."""

    alertmanager: str
    session: aiohttp.ClientSession
    posts: list[Post] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            async with self.session.post(
                f"{self.alertmanager}/api/v2/alerts",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                status, text = response.status, await response.text()
        except aiohttp.ClientError:
            status, text = 503, "alertmanager unreachable"
        self.posts.append(Post(request.match_info["source"], time.time(), json.loads(body), status))
        return web.Response(status=status, text=text)

    def delivered(self, source: str, model: str, *, resolved: bool) -> list[dict[str, Any]]:
        """Canary alerts of ``source`` for ``model`` that Alertmanager accepted."""
        found = []
        for post in self.posts:
            if post.source != source or post.status != 200:
                continue
            for alert in post.alerts:
                labels = alert["labels"]
                if labels.get("alertname") != ALERT or labels.get("model_name") != model:
                    continue
                ends = _timestamp(alert.get("endsAt"))
                if (ends is not None and ends <= post.at + 1) == resolved:
                    found.append(alert)
        return found


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[int]:
    """Serve an aiohttp app on a free loopback port for the ``with`` body."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0) -> None:
    """Await ``check()`` (every 0.25 s: it asks servers over HTTP) until true, or fail."""
    await wait_until(check, within=within, what=what, every=0.25)


@dataclass
class Sidecar:
    """One ``vllm-sidecar run`` process in front of one emulator."""

    name: str
    model: str
    emulator: Emulator
    proxy: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}"


@dataclass
class Drill:
    """Everything the drill talks to, and the questions it asks them."""

    session: aiohttp.ClientSession
    relay: Relay
    prometheus: str
    sidecars: list[Sidecar]

    async def json(self, url: str, **params: str) -> Any:
        async with self.session.get(url, params=params) as response:
            assert response.status == 200, f"{url}: HTTP {response.status}"
            return await response.json()

    async def metric(self, sidecar: Sidecar, sample: str) -> float:
        """One sample of a sidecar's /metrics, by its exact text (name and labels)."""
        async with self.session.get(f"{sidecar.admin_url}/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith(sample + " "):
                    return float(line.split()[-1])
        return 0.0

    async def ready(self) -> bool:
        """Prometheus scrapes all four targets and both sidecars have scraped vLLM."""
        up = await self.json(f"{self.prometheus}/api/v1/query", query="up == 1")
        ready = []
        for sidecar in self.sidecars:
            async with self.session.get(f"{sidecar.admin_url}/readyz") as response:
                ready.append(response.status == 200)
        return len(up["data"]["result"]) == 4 and all(ready)

    async def scraped_after(self, instant: float, scrapes: list[float]) -> bool:
        """Prometheus scraped every target after ``instant`` (Unix s), and each sidecar has
        begun a scrape since its count was ``scrapes`` (two more: one started after it)."""
        oldest = await self.json(f"{self.prometheus}/api/v1/query", query="min(timestamp(up))")
        if float(oldest["data"]["result"][0]["value"][1]) <= instant:
            return False
        for sidecar, before in zip(self.sidecars, scrapes, strict=True):
            if await self.metric(sidecar, "vllm_sidecar_scrapes_total") < before + 2:
                return False
        return True

    async def firing_in_prometheus(self) -> list[str]:
        body = await self.json(f"{self.prometheus}/api/v1/alerts")
        return sorted(
            a["labels"]["model_name"]
            for a in body["data"]["alerts"]
            if a["state"] == "firing" and a["labels"]["alertname"] == ALERT
        )

    async def firing_in(self, sidecar: Sidecar) -> list[str]:
        body = await self.json(f"{sidecar.admin_url}/api/v1/alerts")
        return [
            a["labels"]["model_name"]
            for a in body["data"]["alerts"]
            if a["state"] == "firing" and a["labels"]["alertname"] == ALERT
        ]

    async def firing_everywhere(self) -> bool:
        in_sidecars = [await self.firing_in(sidecar) for sidecar in self.sidecars]
        expected = [[sidecar.model] for sidecar in self.sidecars]
        return await self.firing_in_prometheus() == sorted(MODELS.values()) and (
            in_sidecars == expected
        )

    async def sidecars_retrying(self) -> bool:
        return all([await self.metric(s, NOTIFY_FAILURES) >= 1 for s in self.sidecars])

    async def delivered_by_both(self, *, resolved: bool) -> bool:
        return all(
            self.relay.delivered(source, sidecar.model, resolved=resolved)
            for sidecar in self.sidecars
            for source in ("prometheus", sidecar.name)
        )

    async def ttft_p99(self, sidecar: Sidecar) -> tuple[float, float]:
        """(the sidecar's derived 5m TTFT p99, Prometheus' histogram_quantile) for one model."""
        signals = await self.json(f"{sidecar.admin_url}/api/v1/signals")
        (target,) = [
            t
            for t in signals["signals"]["targets"]
            if t["model_name"] == sidecar.model and t["engine"] is None
        ]
        series = (  # Prometheus stores vllm_... (an OpenMetrics scrape escapes the colon)
            '{__name__=~"vllm[:_]time_to_first_token_seconds_bucket",'
            f'model_name="{sidecar.model}"}}'
        )
        query = f"histogram_quantile(0.99, sum by (le) (rate({series}[5m])))"
        result = await self.json(f"{self.prometheus}/api/v1/query", query=query)
        return target["ttft_seconds"]["5m"]["0.99"], float(result["data"]["result"][0]["value"][1])


def prometheus_config(rules: Path, relay_port: int, sidecars: list[Sidecar]) -> str:
    """Scrape the emulators (job vllm) and the sidecars (job vllm-sidecar) every second."""
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [
                    {
                        "path_prefix": "/prometheus",
                        "static_configs": [{"targets": [f"127.0.0.1:{relay_port}"]}],
                    }
                ]
            },
            "scrape_configs": [
                {
                    "job_name": "vllm",
                    "static_configs": [
                        {"targets": [s.emulator.url.removeprefix("http://") for s in sidecars]}
                    ],
                },
                {
                    "job_name": "vllm-sidecar",
                    "static_configs": [{"targets": [f"127.0.0.1:{s.admin}" for s in sidecars]}],
                },
            ],
        }
    )


async def stream_load(sidecar: Sidecar, stop: asyncio.Event, done: list[str]) -> None:
    """Stream chat completions through the sidecar's proxy until ``stop`` is set."""
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{sidecar.proxy}/v1", api_key="drill")
    try:
        while not stop.is_set():
            stream = await client.chat.completions.create(
                model=sidecar.model,
                messages=[{"role": "user", "content": "Summarise the fire drill."}],
                max_tokens=16,
                stream=True,
            )
            async for _chunk in stream:
                pass
            done.append(sidecar.model)
    finally:
        await client.close()


@pytest.mark.slow
async def test_kv_canary_fire_drill(processes: Processes, tmp_path: Path) -> None:
    """Both paths raise and resolve the same KV canary, on current and legacy vLLM metrics."""
    settings = tmp_path / "sidecar.yaml"
    settings.write_text(SETTINGS)
    assert generate.main(["--config", str(settings), "--out-dir", str(tmp_path)]) == 0
    manager = Alertmanager(processes, tmp_path / "alertmanager")

    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        relay = Relay(manager.url, session)
        relay_app = web.Application()
        relay_app.router.add_post("/{source}/api/v2/alerts", relay.handle)
        relay_port = await stack.enter_async_context(serve(relay_app))
        sidecars = []
        for profile, model in MODELS.items():
            options = EmulatorOptions.for_tests(model=model, metrics_profile=profile, seed=7)
            emulator = await stack.enter_async_context(run_emulator(options, port=0))
            sidecar = Sidecar(f"sidecar-{profile.replace('.', '')}", model, emulator)
            processes.sidecar(
                "run",
                "--config", str(settings),
                "--upstream", emulator.url,
                "--listen", f"127.0.0.1:{sidecar.proxy}",
                "--admin-listen", f"127.0.0.1:{sidecar.admin}",
                "--alertmanager-url", f"http://127.0.0.1:{relay_port}/{sidecar.name}",
                "--samples-dir", str(tmp_path / sidecar.name / "samples"),
                "--spool-dir", str(tmp_path / sidecar.name / "spool"),
                "--log-format", "json",
                log=tmp_path / f"{sidecar.name}.log",
            )  # fmt: skip
            sidecars.append(sidecar)
        prometheus_port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(prometheus_config(tmp_path / generate.RULES_FILE, relay_port, sidecars))
        processes.start(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ],
            log=tmp_path / "prometheus.log",
        )
        for port in [prometheus_port, *(s.admin for s in sidecars), *(s.proxy for s in sidecars)]:
            await asyncio.to_thread(wait_for_port, port, 30.0)
        drill = Drill(session, relay, f"http://127.0.0.1:{prometheus_port}", sidecars)
        await until(drill.ready, "Prometheus and the sidecars to scrape every target")
        scrapes_before = [await drill.metric(s, "vllm_sidecar_scrapes_total") for s in sidecars]

        # Load through the proxies and a ramp of KV pressure, with Alertmanager down.
        stop = asyncio.Event()
        done: list[str] = []
        workers = [
            asyncio.create_task(stream_load(s, stop, done)) for s in sidecars for _ in range(3)
        ]
        for pressure in (0.5, 0.7, 0.9):
            for sidecar in sidecars:
                sidecar.emulator.controls.set_faults(kv_pressure=pressure)
            await asyncio.sleep(1.0)
        await until(drill.firing_everywhere, "the canary to fire in Prometheus and both sidecars")
        await until(drill.sidecars_retrying, "the sidecars to count failed notifications")
        for sidecar, before in zip(sidecars, scrapes_before, strict=True):
            assert await drill.metric(sidecar, "vllm_sidecar_scrapes_total") > before + 5
        assert set(done) == set(MODELS.values()), "both proxies served while Alertmanager was down"
        served_while_down = len(done)

        # Alertmanager comes up: both paths deliver the same alert, and it is there.
        await asyncio.to_thread(manager.start)
        await until(
            lambda: drill.delivered_by_both(resolved=False), "both paths to deliver the canary"
        )
        for sidecar in sidecars:
            prometheus_sent = relay.delivered("prometheus", sidecar.model, resolved=False)[-1]
            sidecar_sent = relay.delivered(sidecar.name, sidecar.model, resolved=False)[-1]
            expected = {"alertname": ALERT, "severity": "warning", "model_name": sidecar.model}
            assert sidecar_sent["labels"] == prometheus_sent["labels"] == expected
            for annotation in ("summary", "runbook_url"):
                assert (
                    sidecar_sent["annotations"][annotation]
                    == (prometheus_sent["annotations"][annotation])
                )
        in_alertmanager = await asyncio.to_thread(
            manager.wait_for,
            lambda found: (
                sorted(
                    a["labels"]["model_name"] for a in found if a["labels"]["alertname"] == ALERT
                )
                == sorted(MODELS.values())
            ),
        )
        assert all(a["status"]["state"] == "active" for a in in_alertmanager)

        # The load stops: the derived TTFT p99 equals Prometheus' over the same series.
        stop.set()
        await asyncio.gather(*workers)
        assert len(done) > served_while_down
        stopped_at = time.time()
        scrapes = [await drill.metric(s, "vllm_sidecar_scrapes_total") for s in sidecars]
        await until(
            lambda: drill.scraped_after(stopped_at, scrapes), "both to scrape the final counts"
        )
        for sidecar in sidecars:
            ours, prometheus = await drill.ttft_p99(sidecar)
            assert ours == pytest.approx(prometheus, rel=0.01), (sidecar.model, ours, prometheus)

        # Pressure released: both paths resolve, in Alertmanager too.
        for sidecar in sidecars:
            sidecar.emulator.controls.set_faults(kv_pressure=0.0)
        await until(
            lambda: drill.delivered_by_both(resolved=True), "both paths to send the resolution"
        )
        await asyncio.to_thread(
            manager.wait_for,
            lambda found: not [a for a in found if a["labels"]["alertname"] == ALERT],
        )
        assert await drill.firing_in_prometheus() == []
        for sidecar in sidecars:
            assert await drill.firing_in(sidecar) == []
        manager.stop()
