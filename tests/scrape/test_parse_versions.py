"""Metric names across vLLM versions, data-parallel engines, custom buckets, label drift."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.scrape.catalogue import BY_NAME
from sidecar.snapshot import SeriesKey
from tests.scrape.pages import V1_MODEL, render, snap

V1 = SeriesKey(V1_MODEL, "0")


def test_transition_page_prefers_new_names(v1_page: bytes) -> None:
    """A 0.9-0.11 page with old and new names side by side reads only the new ones."""
    registry = CollectorRegistry()
    child = {"engine": "0", "model_name": V1_MODEL}
    old_kv = Gauge("vllm:gpu_cache_usage_perc", "old", list(child), registry=registry)
    old_kv.labels(**child).set(0.99)
    for name, value in (("vllm:gpu_prefix_cache_queries", 7), ("vllm:gpu_prefix_cache_hits", 3)):
        Counter(name, "old", list(child), registry=registry).labels(**child).inc(value)
    old_itl = Histogram(
        "vllm:time_per_output_token_seconds", "old", list(child), buckets=(0.1,), registry=registry
    )
    old_itl.labels(**child).observe(0.05)
    old_families, _ = render(registry)
    snapshot = snap(v1_page + old_families)
    assert snapshot.gauges["kv_cache_usage"] == {V1: 0.41372}
    assert snapshot.counters["prefix_cache_queries"] == {V1: 5200169.0}
    assert snapshot.counters["prefix_cache_hits"] == {V1: 2295504.0}
    assert snapshot.histograms["itl"][V1].count == 1354157.0
    assert {"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"} <= snapshot.present
    assert {"vllm:time_per_output_token_seconds", "vllm:gpu_prefix_cache_hits"} <= snapshot.present


def test_old_prefix_cache_names_alone_are_read() -> None:
    """On a 0.8-era V1 page only gpu_prefix_cache_* exists; it fills prefix_cache_*."""
    registry = CollectorRegistry()
    queries = Counter("vllm:gpu_prefix_cache_queries", "q", ["model_name"], registry=registry)
    queries.labels("m").inc(10)
    snapshot = snap(*render(registry))
    assert snapshot.counters["prefix_cache_queries"] == {SeriesKey("m"): 10.0}


def test_custom_buckets_are_read_from_the_scrape() -> None:
    """--custom-histogram-buckets edges come from the page, never from a built-in list."""
    registry = CollectorRegistry()
    itl = Histogram(
        "vllm:inter_token_latency_seconds",
        "itl",
        ["model_name"],
        buckets=(0.003, 0.03, 0.3),
        registry=registry,
    )
    for value in (0.001, 0.02, 0.2, 2.0):
        itl.labels("m").observe(value)
    histogram = snap(*render(registry)).histograms["itl"][SeriesKey("m")]
    assert histogram.buckets == ((0.003, 1.0), (0.03, 2.0), (0.3, 3.0), (math.inf, 4.0))
    assert histogram.count == 4.0
    assert histogram.sum == pytest.approx(2.221)


def test_data_parallel_engines_are_separate_series() -> None:
    """With data parallelism each engine is its own key; cache info comes from engine 0."""
    registry = CollectorRegistry()
    running = Gauge("vllm:num_requests_running", "r", ["engine", "model_name"], registry=registry)
    running.labels("0", "m").set(3)
    running.labels("1", "m").set(5)
    info = Gauge(
        "vllm:cache_config_info", "c", ["engine", "num_gpu_blocks", "block_size"], registry=registry
    )
    info.labels("1", "100", "32").set(1)
    info.labels("0", "200", "16").set(1)
    snapshot = snap(*render(registry))
    assert snapshot.gauges["requests_running"] == {
        SeriesKey("m", "0"): 3.0,
        SeriesKey("m", "1"): 5.0,
    }
    assert snapshot.info == {"num_gpu_blocks": "200", "block_size": "16"}


def test_series_split_by_an_unknown_label_collapse_safely() -> None:
    """A label the catalogue does not key on: counters and histograms sum, gauges keep the max."""
    registry = CollectorRegistry()
    labels = ["model_name", "finished_reason", "priority"]
    success = Counter("vllm:request_success", "s", labels, registry=registry)
    success.labels("m", "stop", "0").inc(3)
    success.labels("m", "stop", "1").inc(4)
    kv = Gauge("vllm:kv_cache_usage_perc", "kv", ["model_name", "kv_group"], registry=registry)
    kv.labels("m", "a").set(0.2)
    kv.labels("m", "b").set(0.7)
    e2e = Histogram(
        "vllm:e2e_request_latency_seconds",
        "e",
        ["model_name", "priority"],
        buckets=(1.0,),
        registry=registry,
    )
    e2e.labels("m", "0").observe(0.5)
    e2e.labels("m", "1").observe(2.0)
    snapshot = snap(*render(registry))
    assert snapshot.counters["request_success"] == {
        SeriesKey("m", None, (("finished_reason", "stop"),)): 7.0
    }
    assert snapshot.gauges["kv_cache_usage"] == {SeriesKey("m"): 0.7}
    assert snapshot.histograms["e2e_latency"][SeriesKey("m")].buckets == (
        (1.0, 1.0),
        (math.inf, 2.0),
    )


def test_series_without_model_name_are_skipped() -> None:
    """Samples lacking model_name are left out (even broken ones); the family is still present."""
    body = (
        b"# TYPE vllm:num_requests_running gauge\n"
        b"vllm:num_requests_running 4\n"
        b'vllm:num_requests_running{model_name="m"} 2\n'
        b"# TYPE vllm:time_to_first_token_seconds histogram\n"
        b'vllm:time_to_first_token_seconds_bucket{le="+Inf"} 5\n'
        b"vllm:time_to_first_token_seconds_count 9\n"
    )
    snapshot = snap(body)
    assert snapshot.gauges["requests_running"] == {SeriesKey("m"): 2.0}
    assert "vllm:time_to_first_token_seconds" in snapshot.present
    assert "ttft" not in snapshot.histograms


def test_wrong_type_falls_back_to_older_name() -> None:
    """A family of the wrong type is not read; an older name of the right type is used instead."""
    registry = CollectorRegistry()
    Counter("vllm:kv_cache_usage_perc", "wrong", ["model_name"], registry=registry).labels(
        "m"
    ).inc()
    Gauge("vllm:gpu_cache_usage_perc", "old", ["model_name"], registry=registry).labels("m").set(
        0.5
    )
    snapshot = snap(*render(registry))
    assert snapshot.gauges["kv_cache_usage"] == {SeriesKey("m"): 0.5}
    assert BY_NAME["kv_cache_usage"].exposed[0] in snapshot.present


def test_unrelated_broken_families_do_not_cost_the_scrape(v1_page: bytes) -> None:
    """Only families the sidecar reads are checked: a broken third-party histogram is ignored."""
    broken = (
        b"# TYPE http_request_duration_other_seconds histogram\n"
        b'http_request_duration_other_seconds_bucket{le="1"} 5\n'
        b'http_request_duration_other_seconds_bucket{le="+Inf"} 2\n'
    )
    assert snap(v1_page + broken).gauges["kv_cache_usage"] == {V1: 0.41372}
