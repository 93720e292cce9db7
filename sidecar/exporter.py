"""Derived signals as Prometheus gauges on the admin ``/metrics``.

A collector reads the latest :class:`~sidecar.signals.derive.Signals` at collection time, so the
exported numbers are exactly the ones ``/api/v1/signals`` and the alert engine see, with no
second copy to keep in sync. Per-model series carry ``model_name``; per-engine series add
``engine`` (only when vLLM exposes data-parallel engines). A value that cannot be computed yet
(too little history, below the traffic floor) is left out rather than exported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import TypeGuard

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sidecar.signals.derive import QUANTILES, Signals, TargetSignals

LATENCY_GAUGES: Mapping[str, tuple[str, str]] = {
    "ttft": ("vllm_sidecar_ttft_seconds", "Time to first token, derived from vLLM's histogram."),
    "itl": ("vllm_sidecar_inter_token_latency_seconds", "Inter-token latency, from vLLM."),
    "e2e_latency": ("vllm_sidecar_e2e_latency_seconds", "End-to-end request latency, from vLLM."),
    "queue_time": ("vllm_sidecar_queue_time_seconds", "Time requests waited in vLLM's queue."),
}

WINDOWED_GAUGES: Mapping[str, tuple[str, str]] = {
    "preemptions_per_second": (
        "vllm_sidecar_preemptions_per_second",
        "Preemptions per second over the window.",
    ),
    "requests_per_second": (
        "vllm_sidecar_requests_per_second",
        "Finished requests per second over the window.",
    ),
    "error_ratio": (
        "vllm_sidecar_error_ratio",
        "Share of finished requests that ended in error or abort (absent below the floor).",
    ),
    "prompt_tokens_per_second": (
        "vllm_sidecar_prompt_tokens_per_second",
        "Prompt tokens processed per second.",
    ),
    "generation_tokens_per_second": (
        "vllm_sidecar_generation_tokens_per_second",
        "Generated tokens per second.",
    ),
    "prefix_cache_hit_ratio": (
        "vllm_sidecar_prefix_cache_hit_ratio",
        "Prefix-cache hit tokens over queried tokens.",
    ),
    "prompt_tokens_cached_ratio": (
        "vllm_sidecar_prompt_tokens_cached_ratio",
        "Share of prompt tokens served from a cache, local or external (vLLM 0.32+).",
    ),
    "admission_rejections_per_second": (
        "vllm_sidecar_admission_rejections_per_second",
        "Requests vLLM rejected at admission per second (vLLM 0.32+).",
    ),
}

INSTANT_GAUGES: Mapping[str, tuple[str, str]] = {
    "requests_running": ("vllm_sidecar_requests_running", "Requests in vLLM's running batch."),
    "requests_waiting": ("vllm_sidecar_requests_waiting", "Requests waiting in vLLM's queue."),
    "queue_slope": (
        "vllm_sidecar_queue_growth_per_second",
        "Trend of waiting requests (requests per second, least squares over 5 minutes).",
    ),
    "kv_cache_usage": (
        "vllm_sidecar_kv_cache_usage_ratio",
        "KV-cache usage 0..1 (max over engines for the per-model series).",
    ),
    "kv_cache_seconds_to_full": (
        "vllm_sidecar_kv_cache_seconds_to_full",
        "Seconds until the KV cache is full at the current trend (absent when not rising).",
    ),
    "requests_deferred": (
        "vllm_sidecar_requests_deferred",
        "Waiting requests deferred by a LoRA budget, KV transfer or blocked state (vLLM 0.32+).",
    ),
    "engines_sleeping": (
        "vllm_sidecar_engines_sleeping",
        "Engines in sleep mode (vLLM's engine_sleep_state awake = 0).",
    ),
}


def _target_labels(target: TargetSignals) -> dict[str, str]:
    labels = {"model_name": target.model_name}
    if target.engine is not None:
        labels["engine"] = target.engine
    return labels


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and not math.isnan(value)


class SignalsCollector(Collector):
    """Exports whatever ``latest()`` returns at collection time."""

    def __init__(self, latest: Callable[[], Signals | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        """Build the gauge families from the latest signals."""
        signals = self._latest()
        families: dict[str, Metric] = {}

        def family(name: str, doc: str) -> Metric:
            if name not in families:
                families[name] = Metric(name, doc, "gauge")
            return families[name]

        for target in signals.targets if signals else ():
            labels = _target_labels(target)
            for signal, (name, doc) in LATENCY_GAUGES.items():
                for window, by_quantile in target.latency.get(signal, {}).items():
                    for quantile in QUANTILES:
                        value = by_quantile.get(quantile)
                        if _finite(value):
                            family(name, doc).add_sample(
                                name, {**labels, "quantile": quantile, "window": window}, value
                            )
            for attribute, (name, doc) in WINDOWED_GAUGES.items():
                by_window: Mapping[str, float | None] = getattr(target, attribute)
                for window, value in by_window.items():
                    if _finite(value):
                        family(name, doc).add_sample(name, {**labels, "window": window}, value)
            for attribute, (name, doc) in INSTANT_GAUGES.items():
                value = getattr(target, attribute)
                if _finite(value):
                    family(name, doc).add_sample(name, labels, value)
        yield from families.values()
