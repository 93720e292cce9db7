"""The in-process engine: lifecycle, configuration, multi-window burn rates, admin API, metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from sidecar.alerting.engine import AlertEngine
from sidecar.alerting.inputs import EngineInputs
from sidecar.config import ConfigError, Settings
from sidecar.metrics import REGISTRY
from sidecar.signals.derive import Signals
from tests.alerting.builders import Harness, Model, SidecarMetrics, World
from tests.support import free_port


def test_pending_turns_firing_after_for_and_resolves_when_clear() -> None:
    """Pending from the first true evaluation, firing once ``for`` (5m) has passed, resolved."""
    harness = Harness(World(Model(kv=0.9)))
    harness.run(30)
    assert harness.state("VLLMKVCacheSaturation") == ["pending"]
    harness.run(270)
    assert harness.state("VLLMKVCacheSaturation") == ["pending"]  # active for 270 s
    harness.run(30)
    assert harness.state("VLLMKVCacheSaturation") == ["firing"]
    harness.world.model().kv = 0.5
    harness.run(30)
    assert harness.state("VLLMKVCacheSaturation") == ["resolved"]
    harness.run(16 * 60)
    assert harness.state("VLLMKVCacheSaturation") == []  # resolved alerts are kept 15 minutes


def test_a_pending_alert_that_clears_leaves_no_trace() -> None:
    """A blip shorter than ``for`` never becomes an alert."""
    harness = Harness(World(Model(kv=0.9)))
    harness.run(120)
    harness.world.model().kv = 0.2
    harness.run(30)
    assert harness.engine.alerts() == []


def test_thresholds_and_for_are_configurable_by_alert_name() -> None:
    """alert_thresholds and alert_for change the in-process rules (and the rendered text)."""
    harness = Harness(
        World(Model(kv=0.9)),
        alert_thresholds={"VLLMKVCacheSaturation": 0.95},
        alert_for={"VLLMKVCacheExhausted": 0},
    )
    harness.run(600)
    assert harness.state("VLLMKVCacheSaturation") == []
    harness.world.model().kv = 0.97
    harness.world.model().waiting = 2
    harness.run(30)
    assert harness.state("VLLMKVCacheExhausted") == ["firing"]
    assert harness.state("VLLMKVCacheSaturation") == ["pending"]
    (saturation,) = [a for a in harness.engine.alerts() if a.labels["alertname"].endswith("ion")]
    assert "(threshold 95%)" in saturation.annotations["description"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alert_thresholds": {"NoSuchAlert": 0.9}}, "cannot override 'NoSuchAlert'; known alerts"),
        ({"alert_for": {"VLLMTTFTBudgetBurn": 60}}, "configured through slo_ttft_seconds"),
        ({"alert_thresholds": {"VLLMDown": 1}}, "VLLMDown has no threshold"),
        ({"alert_for": {"VLLMDown": -5}}, "VLLMDown must be a number >= 0"),
    ],
)
def test_bad_overrides_are_a_config_error(settings: dict[str, Any], message: str) -> None:
    """Unknown names, SLO-driven rules and negative durations fail at start with the name."""
    with pytest.raises(ConfigError, match=message):
        AlertEngine(Settings(**settings), receivers=[])


def test_external_labels_are_added_but_never_override() -> None:
    """Like Prometheus' external labels: added where absent, the alert's own labels win."""
    harness = Harness(
        World(Model(kv=0.9)),
        external_labels={"cluster": "eu-1", "model_name": "not-this"},
        alert_for={"VLLMKVCacheSaturation": 0},
    )
    harness.run(60)
    assert harness.firing("VLLMKVCacheSaturation") == [
        {
            "model_name": "llama",
            "alertname": "VLLMKVCacheSaturation",
            "severity": "warning",
            "cluster": "eu-1",
        }
    ]


def test_burn_rate_windows_page_fast_and_stop_when_the_short_window_is_clean() -> None:
    """20% slow first tokens: 1h/5m pages after 2m, 6h/30m after 15m; 5m clean ends the first."""
    harness = Harness(World(Model(requests=5, slow_ttft_share=0.2)))
    harness.run(150)  # the first ratio exists at 60 s (two readings): still pending
    assert harness.state("VLLMTTFTBudgetBurn") == ["pending"] * 4  # young history: all rows
    harness.run(30)
    assert [a["long"] for a in harness.firing("VLLMTTFTBudgetBurn")] == ["1h"]
    harness.run(16 * 60)
    assert sorted(a["long"] for a in harness.firing("VLLMTTFTBudgetBurn")) == ["1h", "6h"]
    harness.world.model().slow_ttft_share = 0.0
    harness.run(6 * 60)
    assert [a["long"] for a in harness.firing("VLLMTTFTBudgetBurn")] == ["6h"]
    assert all(a["severity"] == "critical" for a in harness.firing("VLLMTTFTBudgetBurn"))


def test_slo_threshold_off_the_scraped_edges_is_reported_once() -> None:
    """If vLLM runs custom buckets without the SLO edge, the engine says so instead of guessing."""
    harness = Harness(World(Model(requests=5, slow_ttft_share=0.5)), slo_ttft_seconds=0.3)
    with capture_logs() as logs:
        harness.run(300)
    warnings = [log for log in logs if log["event"] == "slo_edge_missing"]
    assert len(warnings) == 1
    assert warnings[0]["histograms"] == ["ttft"]
    assert harness.state("VLLMTTFTBudgetBurn") == []


def test_one_failing_rule_does_not_stop_the_others() -> None:
    """A rule that raises is counted; every other rule is still evaluated."""
    harness = Harness(World(Model(kv=0.9)), alert_for={"VLLMKVCacheSaturation": 0})
    harness.now = 30.0
    inputs = harness.inputs()
    assert inputs.signals is not None
    target = inputs.signals.for_model("llama")
    assert target is not None
    without_queue_time = replace(target, latency={"ttft": target.latency["ttft"]})
    broken = Signals(computed_at=inputs.signals.computed_at, targets=(without_queue_time,))
    before = REGISTRY.get_sample_value(
        "vllm_sidecar_alert_rule_failures_total", {"alertname": "VLLMRequestQueueTimeHigh"}
    )
    harness.engine.evaluate(replace(inputs, signals=broken))
    after = REGISTRY.get_sample_value(
        "vllm_sidecar_alert_rule_failures_total", {"alertname": "VLLMRequestQueueTimeHigh"}
    )
    assert (after or 0) - (before or 0) == 1
    assert harness.state("VLLMKVCacheSaturation") == ["firing"]


def test_alert_gauge_counts_instances_by_state() -> None:
    """vllm_sidecar_alerts{alertname,severity,state} follows the table (0 when gone)."""
    harness = Harness(World(Model(kv=0.9)), alert_for={"VLLMKVCacheSaturation": 0})
    labels = {"alertname": "VLLMKVCacheSaturation", "severity": "warning", "state": "firing"}
    harness.run(30)
    assert REGISTRY.get_sample_value("vllm_sidecar_alerts", labels) == 1
    harness.world.model().kv = 0.1
    harness.run(30)
    assert REGISTRY.get_sample_value("vllm_sidecar_alerts", labels) == 0


def test_early_inputs_without_signals_raise_nothing() -> None:
    """Before the first scrape (no signals, no snapshot) an evaluation finds nothing."""
    engine = AlertEngine(Settings(), receivers=[])
    engine.evaluate(EngineInputs())
    assert engine.alerts() == []


def test_nothing_is_pending_before_the_first_scrape_has_finished() -> None:
    """upstream_up reads 0 before any scrape: VLLMDown waits for a finished scrape to say so."""
    metrics = SidecarMetrics()
    metrics.upstream_up.set(0)
    harness = Harness(World(Model(kv=0.99, waiting=5)), sidecar=metrics)
    not_yet = replace(harness.inputs(), scrape_finished=False)
    harness.engine.evaluate(not_yet)
    assert harness.engine.alerts() == []
    assert (
        REGISTRY.get_sample_value(
            "vllm_sidecar_alerts",
            {"alertname": "VLLMDown", "severity": "critical", "state": "pending"},
        )
        == 0
    )
    harness.run(30)  # the first scrape has finished (and failed): now VLLMDown is pending
    assert harness.state("VLLMDown") == ["pending"]


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_running_engine_notifies_resends_resolves_and_serves_its_alerts() -> None:
    """Real timing: firing is posted and re-sent, resolution carries endsAt, the API lists it."""
    posts: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append(await request.json())
        return web.Response()

    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", hook)
    receiver, receiver_url = await _serve(receiver_app)
    world = World(Model(kv=0.9))
    settings = Settings(
        alert_evaluation_interval=0.05,
        alert_resend_interval=0.3,
        alert_for={"VLLMKVCacheSaturation": 0},
        alert_webhook_url=f"{receiver_url}/hook",
    )
    engine = AlertEngine(settings, external_url="http://sidecar.test:9400")
    harness = Harness(world)
    source = harness.live_source()
    admin = web.Application()
    admin.router.add_get("/api/v1/alerts", engine.handle_alerts)
    admin_runner, admin_url = await _serve(admin)
    await engine.start(source)
    try:
        await asyncio.sleep(0.8)
        firing = [a for post in posts for a in post["alerts"] if a["status"] == "firing"]
        assert len(firing) >= 2, "a firing alert is re-sent every resend interval"
        assert firing[0]["labels"] == {
            "alertname": "VLLMKVCacheSaturation",
            "severity": "warning",
            "model_name": "llama",
        }
        assert firing[0]["generatorURL"] == "http://sidecar.test:9400/api/v1/alerts"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{admin_url}/api/v1/alerts?state=firing") as response:
                listed = (await response.json())["data"]["alerts"]
            async with session.get(f"{admin_url}/api/v1/alerts?state=bogus") as response:
                assert response.status == 400
        assert [a["labels"]["alertname"] for a in listed] == ["VLLMKVCacheSaturation"]
        assert listed[0]["value"] == "0.9"
        world.model().kv = 0.2
        await asyncio.sleep(0.4)
        resolved = [a for post in posts for a in post["alerts"] if a["status"] == "resolved"]
        assert resolved, "the resolution is sent"
        assert resolved[0]["endsAt"] < firing[-1]["endsAt"]
    finally:
        await engine.stop()
        await admin_runner.cleanup()
        await receiver.cleanup()


async def test_dead_receiver_never_delays_evaluation() -> None:
    """With nothing listening on the Alertmanager port, evaluations keep their schedule."""
    settings = Settings(
        alertmanager_url=f"http://127.0.0.1:{free_port()}",
        alert_evaluation_interval=0.02,
        alert_resend_interval=0.1,
        alert_for={"VLLMKVCacheSaturation": 0},
    )
    engine = AlertEngine(settings)
    harness = Harness(World(Model(kv=0.9)))
    source = harness.live_source()
    failures = {"receiver": "alertmanager", "outcome": "failure"}
    failed_before = REGISTRY.get_sample_value("vllm_sidecar_alert_notifications_total", failures)
    evaluated_before = REGISTRY.get_sample_value("vllm_sidecar_alert_evaluations_total")
    await engine.start(source)
    await asyncio.sleep(0.5)
    stop_started = time.monotonic()
    await engine.stop(grace=0.2)
    assert time.monotonic() - stop_started < 1.0
    failed = REGISTRY.get_sample_value("vllm_sidecar_alert_notifications_total", failures)
    evaluated = REGISTRY.get_sample_value("vllm_sidecar_alert_evaluations_total")
    assert (evaluated or 0) - (evaluated_before or 0) >= 15  # ~25 at 20 ms over 0.5 s
    assert (failed or 0) - (failed_before or 0) >= 1


def test_vllm_alerts_end_when_scrapes_stop_like_stale_series() -> None:
    """No good scrape for longer than two intervals plus a timeout: vLLM's alerts resolve."""
    harness = Harness(World(Model(kv=0.9)), alert_for={"VLLMKVCacheSaturation": 0})
    harness.run(60)
    assert harness.state("VLLMKVCacheSaturation") == ["firing"]
    last = harness.inputs()
    harness.now += 10.0  # one failed scrape (5 s interval): still trusted
    harness.engine.evaluate(last)
    assert harness.state("VLLMKVCacheSaturation") == ["firing"]
    harness.now += 10.0  # 20 s without a scrape: stale
    harness.engine.evaluate(last)
    assert harness.state("VLLMKVCacheSaturation") == ["resolved"]
