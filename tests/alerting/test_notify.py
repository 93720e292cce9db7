"""Notifications against a real Alertmanager (API v2) and a real webhook server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.alerting.engine import AlertEngine
from sidecar.alerting.notify import (
    AlertmanagerReceiver,
    Dispatcher,
    Notification,
    WebhookReceiver,
)
from sidecar.config import Settings
from sidecar.metrics import REGISTRY
from tests.alerting.builders import Harness, Model, World
from tests.alerting.conftest import Alertmanager
from tests.alerting.promtool_cases import ALERTS_DIR
from tests.support import Processes, free_port


def notification(alertname: str = "VLLMKVCacheSaturation", **labels: str) -> Notification:
    now = time.time()
    return Notification(
        labels={"alertname": alertname, "severity": "warning", "model_name": "llama", **labels},
        annotations={"summary": "Nearly full.", "description": "KV-cache usage is 90%."},
        starts_at=now - 60,
        ends_at=now + 240,
        generator_url="http://sidecar.test:9400/api/v1/alerts",
        resolved=False,
    )


def count(outcome: str, receiver: str = "alertmanager") -> float:
    labels = {"receiver": receiver, "outcome": outcome}
    return REGISTRY.get_sample_value("vllm_sidecar_alert_notifications_total", labels) or 0.0


async def run_dispatcher(
    dispatcher: Dispatcher,
) -> tuple[aiohttp.ClientSession, asyncio.Task[None]]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    return session, asyncio.create_task(dispatcher.run(session))


async def stop_dispatcher(session: aiohttp.ClientSession, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await session.close()


async def test_firing_then_resolved_alert_in_alertmanager(alertmanager: Alertmanager) -> None:
    """A pushed alert shows up with its labels and annotations; endsAt=now resolves it."""
    dispatcher = Dispatcher(AlertmanagerReceiver(alertmanager.url))
    session, task = await run_dispatcher(dispatcher)
    try:
        firing = notification()
        dispatcher.submit([firing])
        alerts = await asyncio.to_thread(alertmanager.wait_for, lambda found: len(found) == 1)
        assert alerts[0]["labels"] == firing.labels
        assert alerts[0]["annotations"] == firing.annotations
        assert alerts[0]["generatorURL"] == firing.generator_url
        assert alerts[0]["status"]["state"] == "active"
        now = time.time()
        resolved = Notification(
            firing.labels, firing.annotations, firing.starts_at, now, firing.generator_url, True
        )
        dispatcher.submit([resolved])
        await asyncio.to_thread(alertmanager.wait_for, lambda found: found == [])
        assert await dispatcher.drain(2.0)
    finally:
        await stop_dispatcher(session, task)


async def test_alertmanager_down_then_up_gets_the_newest_state(
    processes: Processes, tmp_path: Path
) -> None:
    """Failures are counted and retried with backoff; once it is up, the latest state arrives."""
    manager = Alertmanager(processes, tmp_path)
    dispatcher = Dispatcher(AlertmanagerReceiver(manager.url), backoff_base=0.05, backoff_cap=0.3)
    failures_before, successes_before = count("failure"), count("success")
    session, task = await run_dispatcher(dispatcher)
    try:
        dispatcher.submit([notification()])
        await asyncio.sleep(0.6)
        assert count("failure") - failures_before >= 2
        newer = notification()
        newer.annotations["description"] = "KV-cache usage is 97%."
        dispatcher.submit([newer])
        assert (
            REGISTRY.get_sample_value(
                "vllm_sidecar_alert_notifications_pending", {"receiver": "alertmanager"}
            )
            == 1
        )
        await asyncio.to_thread(manager.start)
        alerts = await asyncio.to_thread(manager.wait_for, lambda found: len(found) == 1)
        assert alerts[0]["annotations"]["description"] == "KV-cache usage is 97%."
        assert count("success") - successes_before == 1
    finally:
        await stop_dispatcher(session, task)
        manager.stop()


async def test_payload_alertmanager_refuses_is_not_retried(alertmanager: Alertmanager) -> None:
    """A 4xx (here an invalid label name) is counted as rejected and dropped, not retried."""
    dispatcher = Dispatcher(AlertmanagerReceiver(alertmanager.url), backoff_base=0.05)
    rejected_before, failures_before = count("rejected"), count("failure")
    session, task = await run_dispatcher(dispatcher)
    try:
        dispatcher.submit([notification(**{"bad-label": "x"})])
        assert await dispatcher.drain(5.0)
        assert count("rejected") - rejected_before == 1
        assert count("failure") == failures_before
        assert alertmanager.alerts() == []
    finally:
        await stop_dispatcher(session, task)


async def test_webhook_receives_alertmanagers_webhook_shape() -> None:
    """The generic webhook gets Alertmanager's own webhook payload (version 4)."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/alerts", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}/alerts", "http://sidecar.test:9400")
    dispatcher = Dispatcher(receiver)
    session, task = await run_dispatcher(dispatcher)
    try:
        dispatcher.submit([notification(), notification(model_name="qwen")])
        assert await dispatcher.drain(5.0)
        (payload,) = received
        assert payload["version"] == "4"
        assert payload["status"] == "firing"
        assert payload["externalURL"] == "http://sidecar.test:9400"
        assert payload["commonLabels"] == {
            "alertname": "VLLMKVCacheSaturation",
            "severity": "warning",
        }
        assert [a["labels"]["model_name"] for a in payload["alerts"]] == ["llama", "qwen"]
        assert {a["status"] for a in payload["alerts"]} == {"firing"}
        assert len({a["fingerprint"] for a in payload["alerts"]}) == 2
    finally:
        await stop_dispatcher(session, task)
        await runner.cleanup()


async def test_example_config_inhibits_warnings_under_a_critical_alert(
    processes: Processes, tmp_path: Path
) -> None:
    """With the shipped example config, critical tiers silence their warnings, per model."""
    config = (ALERTS_DIR / "alertmanager.example.yaml").read_text()
    manager = Alertmanager(processes, tmp_path, config=config)
    await asyncio.to_thread(manager.start)
    dispatcher = Dispatcher(AlertmanagerReceiver(manager.url))
    session, task = await run_dispatcher(dispatcher)
    try:
        critical = {"severity": "critical"}
        dispatcher.submit(
            [
                notification("VLLMKVCacheExhausted", **critical),
                notification("VLLMKVCacheSaturation"),
                notification("VLLMKVCacheSaturation", model_name="qwen"),
                notification("VLLMTTFTBudgetBurn", long="1h", short="5m", **critical),
                notification("VLLMTTFTBudgetBurn", long="1d", short="2h"),
            ]
        )
        alerts = await asyncio.to_thread(
            manager.wait_for,
            lambda found: sum(a["status"]["state"] == "suppressed" for a in found) == 2,
        )
        state = {
            (a["labels"]["alertname"], a["labels"]["model_name"], a["labels"]["severity"]): a[
                "status"
            ]["state"]
            for a in alerts
        }
        assert state == {
            ("VLLMKVCacheExhausted", "llama", "critical"): "active",
            ("VLLMKVCacheSaturation", "llama", "warning"): "suppressed",
            ("VLLMKVCacheSaturation", "qwen", "warning"): "active",
            ("VLLMTTFTBudgetBurn", "llama", "critical"): "active",
            ("VLLMTTFTBudgetBurn", "llama", "warning"): "suppressed",
        }
    finally:
        await stop_dispatcher(session, task)
        manager.stop()


async def test_engine_alert_survives_an_alertmanager_outage(
    processes: Processes, tmp_path: Path
) -> None:
    """Alertmanager down when the alert fires: the engine keeps evaluating and delivers later."""
    manager = Alertmanager(processes, tmp_path)
    settings = Settings(
        alertmanager_url=manager.url,
        alert_evaluation_interval=0.05,
        alert_resend_interval=0.5,
        alert_for={"VLLMKVCacheSaturation": 0},
    )
    engine = AlertEngine(settings)
    harness = Harness(World(Model(kv=0.9)))
    source = harness.live_source()
    await engine.start(source)
    try:
        await asyncio.sleep(1.0)
        assert [a.labels["alertname"] for a in engine.alerts()] == ["VLLMKVCacheSaturation"]
        await asyncio.to_thread(manager.start)
        alerts = await asyncio.to_thread(manager.wait_for, lambda found: len(found) == 1)
        assert alerts[0]["labels"] == engine.alerts()[0].labels
        assert alerts[0]["annotations"] == engine.alerts()[0].annotations
    finally:
        await engine.stop()
        manager.stop()
