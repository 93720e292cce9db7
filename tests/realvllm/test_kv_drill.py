"""KV pressure for real: a cache of 2,048 tokens, 32 concurrent 500-token prompts.

The KV canary fires from both paths (the sidecar's in-process engine and a real Prometheus
loading the rules the sidecar ships) with identical labels; preemptions and waiting requests
show in the derived signals; the sidecar's windowed quantiles and ratios equal Prometheus' own
``histogram_quantile`` and ``increase`` over the same server; everything resolves once the load
stops. Runs on real vLLM and on the emulator given the same pool.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.signals.derive import TargetSignals
from tests.realvllm.conftest import KINDS, BackendFactory, Config
from tests.realvllm.drill import SETTLE_SECONDS, Load, until
from tests.realvllm.front import Front, sidecar_in_front
from tests.realvllm.prom import Prometheus
from tests.support import Processes

KV_POOL = Config(
    vllm_flags=("--max-model-len", "1024", "--kv-cache-memory-bytes", "2097152"),
    emulator={"max_model_len": 1024, "num_gpu_blocks": 128, "block_size": 16},
)
"""2,048 tokens of KV cache (2 MiB at 1 KiB per token on the tiny model; 128 x 16 emulated)."""
DRILL_SETTINGS: dict[str, Any] = {
    "scrape_interval": 0.5,
    "alert_evaluation_interval": 0.5,
    # A 2,048-token pool holds two or three 900-token sequences: usage swings with each finish
    # (0.7-1.0), so the drill's canary threshold sits under the swing, on both paths alike.
    "alert_thresholds": {"VLLMKVCacheSaturation": 0.6},
    "alert_for": {
        "VLLMKVCacheSaturation": 2,
        "VLLMKVCacheExhausted": 2,
        "VLLMPreemptionsSustained": 2,
    },
}
"""One set of settings for the in-process sidecar and the rules Prometheus loads."""
CANARY = "VLLMKVCacheSaturation"
PREEMPTING = "VLLMPreemptionsSustained"
ALERTS = (CANARY, PREEMPTING)
LOAD = {"model": "tiny-llama", "max_tokens": 400, "ignore_eos": True, "temperature": 0}


def _firing(front: Front, name: str) -> list[dict[str, str]]:
    return [
        a["labels"]
        for a in front.sidecar.engine.alert_list()
        if a["labels"]["alertname"] == name and a["state"] == "firing"
    ]


def _signals(front: Front) -> TargetSignals | None:
    signals = front.sidecar.admin_state.signals
    return signals.for_model("tiny-llama") if signals else None


@pytest.mark.parametrize("kind", KINDS)
async def test_kv_pressure_fires_the_canary_on_both_paths_and_resolves(
    kind: str, make_backend: BackendFactory, processes: Processes, tmp_path: Path
) -> None:
    backend = await make_backend(kind, KV_POOL)
    prometheus = await Prometheus(tmp_path / "prometheus", backend.url, DRILL_SETTINGS).start(
        processes
    )
    async with sidecar_in_front(backend.url, tmp_path, **DRILL_SETTINGS) as front:
        await until(lambda: _up(prometheus), "Prometheus to scrape the backend", within=30)
        load = await Load(front.url, LOAD, workers=32, prompt_tokens=500).start()
        seen_waiting = seen_preempting = 0.0
        # (alert, path) -> the labels it fired with when first seen firing: the canary may
        # resolve again a moment later, as usage swings with each finishing sequence.
        fired: dict[tuple[str, str], list[dict[str, str]]] = {}
        try:

            async def both_fire() -> bool:
                nonlocal seen_waiting, seen_preempting
                target = _signals(front)
                if target is not None:
                    seen_waiting = max(seen_waiting, target.requests_waiting or 0.0)
                    seen_preempting = max(
                        seen_preempting, target.preemptions_per_second["1m"] or 0.0
                    )
                for name in ALERTS:
                    for path, labels in (
                        ("sidecar", _firing(front, name)),
                        ("prometheus", await prometheus.alerts(name)),
                    ):
                        if labels:
                            fired.setdefault((name, path), labels)
                return len(fired) == 2 * len(ALERTS)

            await until(
                both_fire,
                "the KV canary and preemption alerts to fire on both paths",
                within=240,
            )
            for name in ALERTS:
                expected = [{"alertname": name, "severity": "warning", "model_name": "tiny-llama"}]
                assert fired[name, "sidecar"] == fired[name, "prometheus"] == expected
            await until(
                lambda: _pressure_seen(front, seen_waiting, seen_preempting),
                "waiting requests and preemptions to show in the signals",
                within=60,
            )
        finally:
            await load.stop()
        assert set(load.statuses) == {200}

        async def resolved() -> bool:
            return not _firing(front, CANARY) and not await prometheus.alerts(CANARY)

        await until(resolved, "the canary to resolve on both paths")
        await _windowed_numbers_agree(front, prometheus)


async def _up(prometheus: Prometheus) -> bool:
    return await prometheus.value('up{job="vllm"}') == 1.0


async def _pressure_seen(front: Front, waiting: float, preempting: float) -> bool:
    target = _signals(front)
    if target is None:
        return False
    waiting = max(waiting, target.requests_waiting or 0.0)
    preempting = max(preempting, target.preemptions_per_second["1m"] or 0.0)
    return waiting > 0 and preempting > 0


async def _windowed_numbers_agree(front: Front, prometheus: Prometheus) -> None:
    """With the load stopped and counters still, both see the same 5-minute window."""
    settled = time.time() + SETTLE_SECONDS

    async def both_scraped() -> bool:
        return front.scraped_after(settled) and await prometheus.scraped_after(settled)

    await until(both_scraped, "both sides to scrape the final counts", within=60)
    target = _signals(front)
    assert target is not None
    ttft = '{__name__=~"vllm[:_]time_to_first_token_seconds_bucket",model_name="tiny-llama"}'
    theirs = await prometheus.value(f"histogram_quantile(0.99, sum by (le) (rate({ttft}[5m])))")
    ours = target.latency["ttft"]["5m"]["0.99"]
    assert ours is not None
    assert theirs is not None
    assert ours == pytest.approx(theirs, rel=0.01)
