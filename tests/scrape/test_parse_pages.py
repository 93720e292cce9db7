"""The two real vLLM pages -> Snapshot, and the same page through OpenMetrics and loose headers."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from sidecar.scrape.catalogue import CATALOGUE, missing_required
from sidecar.scrape.parse import Format, exposition_format
from sidecar.snapshot import SeriesKey
from tests.scrape.pages import (
    OPENMETRICS_ACCEPT,
    TEXT_ACCEPT,
    V0_MODEL,
    V1_MODEL,
    registry_from_page,
    render,
    snap,
)

V1 = SeriesKey(V1_MODEL, "0")
V0 = SeriesKey(V0_MODEL, None)
TTFT_EDGES: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5)
TTFT_EDGES += (0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0, math.inf)


# --- the two real pages ---------------------------------------------------------------------------


def test_v1_page_gauges_and_counters(v1_page: bytes) -> None:
    """The current page yields the scheduler gauges, KV usage and counters keyed by engine."""
    snapshot = snap(v1_page)
    assert snapshot.models() == [V1_MODEL]
    assert snapshot.gauges["kv_cache_usage"] == {V1: 0.41372}
    assert snapshot.gauges["requests_running"] == {V1: 23.0}
    assert snapshot.gauges["requests_waiting"] == {V1: 2.0}
    by_reason = snapshot.gauges["requests_waiting_by_reason"]
    assert by_reason[SeriesKey(V1_MODEL, "0", (("reason", "capacity"),))] == 2.0
    assert by_reason[SeriesKey(V1_MODEL, "0", (("reason", "deferred"),))] == 0.0
    assert snapshot.counters["preemptions"] == {V1: 13.0}
    assert snapshot.counters["prompt_tokens"] == {V1: 5188554.0}
    assert snapshot.counters["prefix_cache_queries"] == {V1: 5200169.0}
    outcomes = {
        key.label("finished_reason"): v for key, v in snapshot.counters["request_success"].items()
    }
    assert outcomes == {
        "stop": 3470.0,
        "length": 567.0,
        "abort": 90.0,
        "error": 0.0,
        "repetition": 0.0,
    }
    assert sum(outcomes.values()) == snapshot.histograms["e2e_latency"][V1].count


def test_v1_page_histograms_read_edges_from_the_page(v1_page: bytes) -> None:
    """Histograms keep every bucket edge as printed, ascending, +Inf last and equal to _count."""
    snapshot = snap(v1_page)
    ttft = snapshot.histograms["ttft"][V1]
    assert tuple(edge for edge, _ in ttft.buckets) == TTFT_EDGES
    assert dict(ttft.buckets)[0.1] == 2778.0
    assert ttft.count == ttft.buckets[-1][1] == 4150.0
    assert ttft.sum == pytest.approx(685.6774292096824)
    assert snapshot.histograms["itl"][V1].buckets[-2][0] == 80.0
    assert snapshot.histograms["iteration_tokens"][V1].count == 51295.0


def test_v1_page_metadata(v1_page: bytes) -> None:
    """start_time, cache info, clocks and the list of vLLM families present come through."""
    snapshot = snap(v1_page)
    assert snapshot.timestamp == 1_800_000_000.0
    assert snapshot.monotonic == 42.0
    assert snapshot.start_time == pytest.approx(1.7953235366e09)
    assert snapshot.info == {"num_gpu_blocks": "35108", "block_size": "16"}
    declared = re.findall(r"^# TYPE (vllm:\S+) (\S+)$", v1_page.decode(), re.MULTILINE)
    expected = {
        name.removesuffix("_total") if kind == "counter" else name
        for name, kind in declared
        if not name.endswith("_created")
    }
    assert snapshot.present == expected
    assert "vllm:prompt_tokens" in snapshot.present
    assert missing_required(snapshot.present) == []


def test_v1_page_fills_every_catalogue_metric(v1_page: bytes) -> None:
    """Every canonical metric the current page carries is read (nothing silently dropped)."""
    snapshot = snap(v1_page)
    read = {**snapshot.gauges, **snapshot.counters, **snapshot.histograms}
    absent = {metric.name for metric in CATALOGUE if metric.name not in read}
    assert absent == {"admission_rejections"}  # not in this page (newer than its source)
    assert all(read[name] for name in read)


def test_v0_multiprocess_page_maps_old_names(v0_page: bytes) -> None:
    """The 0.6 page maps gpu_cache_usage_perc and time_per_output_token_seconds, without engine."""
    snapshot = snap(v0_page)
    assert snapshot.models() == [V0_MODEL]
    assert snapshot.gauges["kv_cache_usage"] == {V0: 0.3154}
    itl = snapshot.histograms["itl"][V0]
    assert itl.count == 470326.0
    assert tuple(edge for edge, _ in itl.buckets)[-2:] == (2.5, math.inf)  # old, shorter buckets
    assert snapshot.histograms["ttft"][V0].count == 1312.0
    assert {key.engine for table in snapshot.counters.values() for key in table} == {None}
    outcomes = {
        key.label("finished_reason"): v for key, v in snapshot.counters["request_success"].items()
    }
    assert outcomes == {"stop": 1146.0, "length": 151.0}


def test_v0_multiprocess_page_has_no_process_or_created_families(v0_page: bytes) -> None:
    """Multiprocess pages lack process_start_time_seconds and _created; both are optional."""
    snapshot = snap(v0_page)
    assert snapshot.start_time is None
    assert not any(name.endswith("_created") for name in snapshot.present)
    assert "vllm:gpu_cache_usage_perc" in snapshot.present
    assert "prefix_cache_queries" not in snapshot.counters
    assert snapshot.info == {"num_gpu_blocks": "27923", "block_size": "16"}
    assert missing_required(snapshot.present) == []


# --- OpenMetrics and content negotiation ----------------------------------------------------------


def test_openmetrics_page_from_vllm_has_the_escaping_defect(v1_page: bytes) -> None:
    """prometheus_client's OpenMetrics answer types vllm:x but names its samples vllm_x."""
    body, content_type = render(registry_from_page(v1_page.decode()), OPENMETRICS_ACCEPT)
    text = body.decode()
    assert content_type.startswith("application/openmetrics-text")
    assert "# TYPE vllm:kv_cache_usage_perc gauge\n" in text
    assert '\nvllm_kv_cache_usage_perc{engine="0"' in text
    assert "\nvllm:kv_cache_usage_perc{" not in text
    assert text.endswith("# EOF\n")


def test_openmetrics_escaped_page_equals_text_page(v1_page: bytes) -> None:
    """The escaped OpenMetrics rendering of the real page parses to the text page's Snapshot."""
    registry = registry_from_page(v1_page.decode())
    openmetrics_body, openmetrics_type = render(registry, OPENMETRICS_ACCEPT)
    text_body, text_type = render(registry, TEXT_ACCEPT)
    from_text = snap(v1_page)
    assert snap(text_body, text_type) == from_text
    assert snap(openmetrics_body, openmetrics_type) == from_text
    assert snap(openmetrics_body, None) == from_text  # sniffed by its # EOF line


def test_openmetrics_from_live_metric_objects() -> None:
    """Live Counter/Gauge/Histogram/Info objects read the same through OpenMetrics and text."""
    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    Gauge("vllm:kv_cache_usage_perc", "kv", labels, registry=registry).labels("m", "0").set(0.9)
    Counter("vllm:prompt_tokens", "p", labels, registry=registry).labels("m", "0").inc(12)
    ttft = Histogram(
        "vllm:time_to_first_token_seconds", "t", labels, buckets=(0.1, 1.0), registry=registry
    )
    for value in (0.05, 0.5, 5.0):
        ttft.labels("m", "0").observe(value)
    cache = Info("vllm:cache_config", "V0 <= 0.5 declared it as an Info", registry=registry)
    cache.info({"block_size": "16", "num_gpu_blocks": "9000", "cache_dtype": "auto"})
    from_openmetrics = snap(*render(registry, OPENMETRICS_ACCEPT))
    assert from_openmetrics == snap(*render(registry, TEXT_ACCEPT))
    key = SeriesKey("m", "0")
    assert from_openmetrics.counters["prompt_tokens"] == {key: 12.0}
    assert from_openmetrics.histograms["ttft"][key].buckets == (
        (0.1, 1.0),
        (1.0, 2.0),
        (math.inf, 3.0),
    )
    assert from_openmetrics.info == {"num_gpu_blocks": "9000", "block_size": "16"}
    assert from_openmetrics.present == {
        "vllm:cache_config_info",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens",
        "vllm:time_to_first_token_seconds",
    }


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "TEXT/PLAIN; charset=UTF-8",
        "text/plain; version=1.0.0; charset=utf-8; escaping=underscores",
        "application/octet-stream",
        "text/x-prometheus",
    ],
)
def test_text_page_under_loose_content_types(v1_page: bytes, content_type: str | None) -> None:
    """A text page labelled loosely (or not at all) is still read as the text format."""
    assert exposition_format(content_type, v1_page) is Format.TEXT
    assert snap(v1_page, content_type) == snap(v1_page)
