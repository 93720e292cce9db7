"""The benchmark's building blocks: synthetic vLLM pages, the scrape-cost history, the report."""

from __future__ import annotations

import math
from pathlib import Path

from bench import report, scrape_cost
from bench.pages import advanced, with_engines
from sidecar.scrape.parse import parse_snapshot


def _parse(page: str, at: float = 0.0):  # type: ignore[no-untyped-def]
    return parse_snapshot(page.encode(), scrape_cost.CONTENT_TYPE, timestamp=at, monotonic=at)


def test_more_engines_multiply_the_series(test_data: Path) -> None:
    """An 8-engine page parses, with eight times the per-engine series of the reference page."""
    page = (test_data / "vllm" / "v1-1model.prom").read_text()
    one, eight = _parse(page), _parse(with_engines(page, 8))
    assert {key.engine for key in eight.gauges["kv_cache_usage"]} == {str(e) for e in range(8)}
    for name, series in one.histograms.items():
        assert len(eight.histograms[name]) == 8 * len(series)


def test_grown_snapshot_equals_parsing_the_advanced_page(test_data: Path) -> None:
    """The scrape-cost history (counters scaled in memory) is what a real later scrape gives."""
    page = (test_data / "vllm" / "v1-1model.prom").read_text()
    parsed = _parse(advanced(page, 1.5), at=5.0)
    grown = scrape_cost._grown(_parse(page), 1.5, 5.0)
    assert grown.counters == parsed.counters
    assert grown.gauges == parsed.gauges
    for name, series in parsed.histograms.items():
        for key, histogram in series.items():
            other = grown.histograms[name][key]
            assert other.buckets == histogram.buckets
            assert math.isclose(other.sum, histogram.sum)


def test_scrape_cost_measures_every_page() -> None:
    """Each page gets parse and derive figures and a share of a core."""
    costs = scrape_cost.measure(repeat=1)
    assert len(costs) == 4
    assert all(cost.parse_ms > 0 and cost.derive_ms > 0 and cost.core_pct > 0 for cost in costs)
    assert 90 < scrape_cost.closest_to_100kb(costs).kb < 120
    assert "| v1, 8 engines (synthetic) |" in scrape_cost.table(costs)


def _idle(ms: list[float]) -> dict[str, object]:
    return {"ttfts": [value / 1000 for value in ms], "errors": {}}


def _streams(events: int, cpu: float, ms: list[float]) -> dict[str, object]:
    return {
        "events": events, "wall": 1.0, "ttfts": [value / 1000 for value in ms], "errors": {},
        "cpu": {"user": cpu / 2, "system": cpu / 2}, "rss": 50 * report.MB,
        "peak_rss": 55 * report.MB,
    }  # fmt: skip


def test_rows_subtract_direct_per_round_and_take_medians() -> None:
    """Added TTFT is target minus direct within a round; rounds are combined by median."""
    rounds = {
        "direct": {
            "idle": [_idle([1.0] * 10), _idle([2.0] * 10), _idle([1.0] * 10)],
            "loaded": [_streams(1000, 0, [5.0])] * 3,
            "saturation": [_streams(100_000, 0, [])] * 3,
        },
        "nginx": {
            "idle": [_idle([1.2] * 10), _idle([2.2] * 10), _idle([1.4] * 10)],
            "loaded": [_streams(1000, 0.02, [5.5])] * 3,
            "saturation": [_streams(90_000, 0.45, [])] * 3,
        },
    }
    direct, nginx = report.rows(rounds)
    assert math.isnan(direct.cpu_per_m_saturation)
    assert math.isclose(nginx.added_idle_p50_ms, 0.2)
    assert math.isclose(nginx.added_loaded_p50_ms, 0.5)
    assert math.isclose(nginx.cpu_per_m_saturation, 5.0)
    assert math.isclose(nginx.cpu_per_m_loaded, 20.0)
    assert nginx.peak_rss_mb == 55
    table = report.main_table([direct, nginx], concurrency=64, step_ms=10)
    assert "| nginx | +0.200 ms |" in table
    assert "90%" in report.ratio_table([direct, nginx])


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..100 is 50 and p99 is 99; no values give NaN."""
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 50) == 50
    assert report.percentile(values, 99) == 99
    assert math.isnan(report.percentile([], 50))


def test_deferred_work_is_charged_when_measured() -> None:
    """CPU until the target went quiet, over every event since the window opened, wins."""
    window_only = _streams(1000, 0.01, [])
    with_tail = {**window_only, "cpu_total": {"user": 0.02, "system": 0.01}, "events_total": 1500}
    assert math.isclose(report._cpu_per_million(window_only), 10.0)
    assert math.isclose(report._cpu_per_million(with_tail), 20.0)


def test_sampling_all_goals_compare_with_one_percent_within_round_noise() -> None:
    """Sampling 1.0 against 0.01: CPU per event at 1.15x at most, and its added TTFT under load
    judged against the larger round-to-round spread of the two (one round: not judged)."""
    direct = [_streams(1000, 0, [5.0])] * 3

    def sidecar(loaded_ms: list[float], cpu: float) -> dict[str, list[dict[str, object]]]:
        return {
            "idle": [_idle([1.5] * 10)] * 3,
            "loaded": [_streams(1000, cpu, [ms]) for ms in loaded_ms],
            "saturation": [_streams(100_000, 0.4, [])] * 3,
        }

    def sampling_goals(every: list[float], every_cpu: float) -> dict[str, report.Goal]:
        rounds = {
            "direct": {"idle": [_idle([1.0] * 10)] * 3, "loaded": direct, "saturation": []},
            "sidecar": sidecar([5.4, 5.8, 5.5], 0.02),
            "sidecar-sample-all": sidecar(every, every_cpu),
        }
        found = report.goals(report.rows(rounds), {})
        return {goal.text: goal for goal in found if goal.text.startswith("sampling at 1.0")}

    within = sampling_goals([5.6, 5.9, 5.7], 0.022)  # +0.2 ms against a 0.4 ms spread
    assert [goal.met for goal in within.values()] == [True, True, True]
    ttft = next(goal for text, goal in within.items() if "TTFT" in text)
    assert ttft.measured == "+0.200 ms (noise 0.400)"
    beyond = sampling_goals([6.5, 6.6, 6.7], 0.03)  # +1.1 ms; 1.5x the CPU
    assert [goal.met for goal in beyond.values()] == [True, False, False]
