"""The one place that knows vLLM's metric names across versions.

Each canonical metric lists the exposed family names that carry it, newest first. vLLM 0.9.2-0.11
expose old and new names side by side; the first one present wins, so a value is never counted
twice. Family names are compared after prometheus_client's parser has removed ``_total`` from
counters and after OpenMetrics' ``vllm_`` escaping has been folded back to ``vllm:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a canonical metric is read from the exposition."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class CanonicalMetric:
    """A metric the sidecar derives signals from, and the vLLM names it has had."""

    name: str
    kind: Kind
    exposed: tuple[str, ...]
    extra_labels: tuple[str, ...] = ()
    required: bool = False
    """Present on every vLLM version we support: its absence means vLLM renamed or dropped it."""


CATALOGUE: tuple[CanonicalMetric, ...] = (
    # Scheduler state.
    CanonicalMetric("requests_running", Kind.GAUGE, ("vllm:num_requests_running",), required=True),
    CanonicalMetric("requests_waiting", Kind.GAUGE, ("vllm:num_requests_waiting",), required=True),
    CanonicalMetric(
        "requests_waiting_by_reason",
        Kind.GAUGE,
        ("vllm:num_requests_waiting_by_reason",),
        extra_labels=("reason",),
    ),
    CanonicalMetric(
        "engine_sleep_state",
        Kind.GAUGE,
        ("vllm:engine_sleep_state",),
        extra_labels=("sleep_state",),
    ),
    CanonicalMetric(
        "kv_cache_usage",
        Kind.GAUGE,
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        required=True,
    ),
    # Counters.
    CanonicalMetric("preemptions", Kind.COUNTER, ("vllm:num_preemptions",), required=True),
    CanonicalMetric("prompt_tokens", Kind.COUNTER, ("vllm:prompt_tokens",), required=True),
    CanonicalMetric("generation_tokens", Kind.COUNTER, ("vllm:generation_tokens",), required=True),
    CanonicalMetric(
        "request_success",
        Kind.COUNTER,
        ("vllm:request_success",),
        extra_labels=("finished_reason",),
        required=True,
    ),
    CanonicalMetric(
        "prefix_cache_queries",
        Kind.COUNTER,
        ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),
    ),
    CanonicalMetric(
        "prefix_cache_hits",
        Kind.COUNTER,
        ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),
    ),
    CanonicalMetric("prompt_tokens_cached", Kind.COUNTER, ("vllm:prompt_tokens_cached",)),
    CanonicalMetric(
        "admission_rejections",
        Kind.COUNTER,
        ("vllm:admission_rejections",),
        extra_labels=("reason",),
    ),
    # Latency histograms (seconds).
    CanonicalMetric("ttft", Kind.HISTOGRAM, ("vllm:time_to_first_token_seconds",), required=True),
    CanonicalMetric(
        "itl",
        Kind.HISTOGRAM,
        ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        required=True,
    ),
    CanonicalMetric(
        "e2e_latency", Kind.HISTOGRAM, ("vllm:e2e_request_latency_seconds",), required=True
    ),
    CanonicalMetric("queue_time", Kind.HISTOGRAM, ("vllm:request_queue_time_seconds",)),
    CanonicalMetric("prefill_time", Kind.HISTOGRAM, ("vllm:request_prefill_time_seconds",)),
    CanonicalMetric("decode_time", Kind.HISTOGRAM, ("vllm:request_decode_time_seconds",)),
    CanonicalMetric("tpot", Kind.HISTOGRAM, ("vllm:request_time_per_output_token_seconds",)),
    # Size histograms (tokens).
    CanonicalMetric("prompt_length", Kind.HISTOGRAM, ("vllm:request_prompt_tokens",)),
    CanonicalMetric("generation_length", Kind.HISTOGRAM, ("vllm:request_generation_tokens",)),
    CanonicalMetric("iteration_tokens", Kind.HISTOGRAM, ("vllm:iteration_tokens_total",)),
)

BY_EXPOSED: dict[str, CanonicalMetric] = {
    exposed: metric for metric in CATALOGUE for exposed in metric.exposed
}
"""Exposed family name -> canonical metric."""

BY_NAME: dict[str, CanonicalMetric] = {metric.name: metric for metric in CATALOGUE}

CACHE_CONFIG_FAMILY = "vllm:cache_config_info"
PROCESS_START_FAMILY = "process_start_time_seconds"


def exposed_preference(metric: CanonicalMetric, present: frozenset[str]) -> str | None:
    """The newest exposed name of ``metric`` that the scrape contained, if any."""
    for name in metric.exposed:
        if name in present:
            return name
    return None


def missing_required(present: frozenset[str]) -> list[str]:
    """Canonical names of required metrics for which the scrape had no family at all."""
    return [
        metric.name
        for metric in CATALOGUE
        if metric.required and exposed_preference(metric, present) is None
    ]
