"""Checks that any scrape of a quiet emulator must pass, whatever load came before."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from prometheus_client.metrics_core import Metric

from tests.emulator.conftest import value

LabelKey = tuple[tuple[str, str], ...]


def check_histograms(families: list[Metric]) -> int:
    """Buckets never decrease and +Inf equals _count, for every series; returns series checked."""
    checked = 0
    for family in families:
        if family.type != "histogram":
            continue
        buckets: dict[LabelKey, list[tuple[float, float]]] = defaultdict(list)
        counts: dict[LabelKey, float] = {}
        for sample in family.samples:
            key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if sample.name.endswith("_bucket"):
                buckets[key].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                counts[key] = sample.value
        for key, series in buckets.items():
            edges = [edge for edge, _ in series]
            values = [count for _, count in series]
            assert edges == sorted(edges), (family.name, key)
            assert all(a <= b for a, b in itertools.pairwise(values)), (family.name, key)
            assert math.isinf(edges[-1]), (family.name, key)
            assert values[-1] == counts[key], (family.name, key)
            checked += 1
    return checked


def counter_values(families: list[Metric]) -> dict[tuple[str, LabelKey], float]:
    """Every counter sample (``_total``), keyed by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        if family.type == "counter"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def check_quiet_engine(families: list[Metric], *, client_aborts_before_first_token: bool) -> None:
    """The vLLM identities that hold once nothing is running (see v1-1model.prom's header)."""

    def get(name: str, **labels: str) -> float:
        return value(families, name, **labels)

    finished = get("vllm:request_success_total")
    assert finished == get("vllm:e2e_request_latency_seconds_count")
    assert finished == get("vllm:request_prompt_tokens_count")
    assert get("vllm:num_requests_running") == 0
    assert get("vllm:num_requests_waiting") == 0
    assert get("vllm:kv_cache_usage_perc") == 0
    prompt = get("vllm:prompt_tokens_total")
    local = get("vllm:prompt_tokens_by_source_total", source="local_compute")
    cached = get("vllm:prompt_tokens_by_source_total", source="local_cache_hit")
    assert prompt == local + cached
    assert cached == get("vllm:prompt_tokens_cached_total")
    assert get("vllm:prefix_cache_hits_total") >= cached
    generation = get("vllm:generation_tokens_total")
    ttft_count = get("vllm:time_to_first_token_seconds_count")
    assert get("vllm:inter_token_latency_seconds_count") == generation - ttft_count
    assert get("vllm:iteration_tokens_total_sum") == local + generation
    assert get("vllm:request_generation_tokens_sum") <= generation
    if not client_aborts_before_first_token:
        assert ttft_count >= finished
