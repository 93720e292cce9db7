"""A queue without KV pressure, on a multiprocess page: ``--max-num-seqs 2 --api-server-count 2``.

Eight clients and two batch slots keep six requests waiting while the KV cache stays nearly
empty: the waiting queue shows in the signals, the queue-time alert fires on both paths with
identical labels and the KV canary does not. Two API servers mean vLLM's multiprocess /metrics
page (no ``_created``, no ``process_*``): the sidecar scrapes and derives from it, and its queue
time p95 equals Prometheus' ``histogram_quantile`` over the same server's buckets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.realvllm.conftest import KINDS, BackendFactory, Config
from tests.realvllm.drill import SETTLE_SECONDS, Load, until
from tests.realvllm.front import Front, sidecar_in_front
from tests.realvllm.pages import fetch_page
from tests.realvllm.prom import Prometheus
from tests.support import Processes

QUEUE = Config(
    vllm_flags=(
        "--max-model-len",
        "1024",
        "--kv-cache-memory-bytes",
        "16777216",
        "--max-num-seqs",
        "2",
        "--api-server-count",
        "2",
    ),
    emulator={"max_model_len": 1024, "max_num_seqs": 2, "api_server_count": 2},
)
SETTINGS: dict[str, Any] = {
    "scrape_interval": 0.5,
    "alert_evaluation_interval": 0.5,
    "alert_thresholds": {"VLLMRequestQueueTimeHigh": 0.2},
    "alert_for": {"VLLMRequestQueueTimeHigh": 2, "VLLMKVCacheSaturation": 2},
}
QUEUE_ALERT = "VLLMRequestQueueTimeHigh"
LOAD = {"model": "tiny-llama", "max_tokens": 120, "ignore_eos": True, "temperature": 0}


def _firing(front: Front, name: str) -> list[dict[str, str]]:
    return [
        a["labels"]
        for a in front.sidecar.engine.alert_list()
        if a["labels"]["alertname"] == name and a["state"] == "firing"
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_queue_without_kv_pressure_on_a_multiprocess_page(
    kind: str, make_backend: BackendFactory, processes: Processes, tmp_path: Path
) -> None:
    backend = await make_backend(kind, QUEUE)
    page = await fetch_page(backend.url)
    assert "vllm:num_requests_waiting" in page
    assert "_created" not in page  # the multiprocess page of two API servers
    assert "process_cpu_seconds_total" not in page
    prometheus = await Prometheus(tmp_path / "prometheus", backend.url, SETTINGS).start(processes)
    async with sidecar_in_front(backend.url, tmp_path, **SETTINGS) as front:
        load = await Load(front.url, LOAD, workers=8, prompt_tokens=40).start()
        waiting: list[float] = []
        fired: dict[str, list[dict[str, str]]] = {}  # path -> labels when first seen firing
        try:

            async def queued_and_alerting() -> bool:
                signals = front.sidecar.admin_state.signals
                target = signals.for_model("tiny-llama") if signals else None
                if target is None or target.requests_waiting is None:
                    return False
                waiting.append(target.requests_waiting)
                assert (target.requests_running or 0) <= 2
                assert (target.kv_cache_usage or 0.0) < 0.5
                for path, labels in (
                    ("sidecar", _firing(front, QUEUE_ALERT)),
                    ("prometheus", await prometheus.alerts(QUEUE_ALERT)),
                ):
                    if labels:
                        fired.setdefault(path, labels)
                return max(waiting) >= 4 and len(fired) == 2

            await until(queued_and_alerting, "a queue and the queue-time alert on both paths")
            expected = [
                {"alertname": QUEUE_ALERT, "severity": "warning", "model_name": "tiny-llama"}
            ]
            assert fired["sidecar"] == fired["prometheus"] == expected
            assert _firing(front, "VLLMKVCacheSaturation") == []
            assert await prometheus.alerts("VLLMKVCacheSaturation", state="pending") == []
        finally:
            await load.stop()
        settled = time.time() + SETTLE_SECONDS

        async def both_scraped() -> bool:
            return front.scraped_after(settled) and await prometheus.scraped_after(settled)

        await until(both_scraped, "both sides to scrape the final counts", within=60)
        signals = front.sidecar.admin_state.signals
        target = signals.for_model("tiny-llama") if signals else None
        assert target is not None
        # The server's counters started at zero just before the sidecar's first scrape, so its
        # 5m window holds every observation: Prometheus' quantile over the cumulative buckets is
        # the same question without rate()'s per-series extrapolation at the window's edges.
        series = '{__name__=~"vllm[:_]request_queue_time_seconds_bucket",model_name="tiny-llama"}'
        theirs = await prometheus.value(f"histogram_quantile(0.95, sum by (le) ({series}))")
        ours = target.latency["queue_time"]["5m"]["0.95"]
        assert ours == pytest.approx(theirs, rel=0.01)
