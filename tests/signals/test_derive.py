"""derive(): windowed quantiles, rates, ratios and trends per model and engine, to 1e-9."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sidecar.signals.derive import LATENCY_SIGNALS, QUANTILES, WINDOWS, Signals, derive
from sidecar.signals.history import History
from sidecar.signals.quantile import histogram_quantile
from sidecar.snapshot import SeriesKey, Snapshot
from tests.signals.synthetic import INF, TTFT_EDGES, Engine, histogram, numpy_quantile, scrape

TOLERANCE = 1e-9


def history_of(*snapshots: Snapshot, max_age: float = 900.0) -> History:
    """A history holding the given snapshots."""
    history = History(max_age)
    for snap in snapshots:
        history.append(snap)
    return history


def derived(*snapshots: Snapshot, **kwargs: float) -> Signals:
    """derive() over a history of the given snapshots."""
    return derive(history_of(*snapshots), **kwargs)


def test_two_scrapes_quantiles_match_numpy() -> None:
    """Quantiles of the increase between two scrapes equal the numpy reference, every window."""
    rng = np.random.default_rng(7)
    before = rng.integers(0, 1000, size=len(TTFT_EDGES)).astype(float)
    added = rng.integers(1, 40, size=len(TTFT_EDGES)).astype(float)
    old = histogram(TTFT_EDGES, before.tolist(), total=123.25)
    new = histogram(TTFT_EDGES, (before + added).tolist(), total=123.25 + 17.5)
    signals = derived(scrape(0.0, {None: Engine(ttft=old)}), scrape(60.0, {None: Engine(ttft=new)}))
    target = signals.for_model("m")
    assert target is not None
    cumulative = np.cumsum(added).tolist()
    for window in WINDOWS:
        for q in QUANTILES:
            expected = numpy_quantile(float(q), TTFT_EDGES, cumulative)
            got = target.latency["ttft"][window][q]
            assert got is not None
            assert got == pytest.approx(expected, abs=TOLERANCE, rel=TOLERANCE)
        mean = target.latency_mean["ttft"][window]
        assert mean == pytest.approx(17.5 / added.sum(), abs=TOLERANCE)


def test_all_increase_in_inf_bucket() -> None:
    """Every new observation above the top edge: each quantile is the highest finite edge."""
    old = histogram(TTFT_EDGES, [3] * len(TTFT_EDGES))
    new = histogram(TTFT_EDGES, [3] * (len(TTFT_EDGES) - 1) + [10])
    target = derived(
        scrape(0.0, {None: Engine(ttft=old)}), scrape(30.0, {None: Engine(ttft=new)})
    ).for_model("m")
    assert target is not None
    assert target.latency["ttft"]["1m"] == dict.fromkeys(QUANTILES, TTFT_EDGES[-2])


def test_empty_window_gives_none_not_zero() -> None:
    """No traffic in the window: quantiles, means and ratios are None; rates are 0."""
    idle = Engine(
        ttft=histogram(TTFT_EDGES, [5] * len(TTFT_EDGES)),
        finished={"stop": 40.0, "error": 2.0},
        generation_tokens=900.0,
    )
    target = derived(scrape(0.0, {None: idle}), scrape(30.0, {None: idle})).for_model("m")
    assert target is not None
    assert target.latency["ttft"]["1m"] == dict.fromkeys(QUANTILES)
    assert target.latency_mean["ttft"]["1m"] is None
    assert target.requests_per_second["1m"] == 0.0
    assert target.generation_tokens_per_second["1m"] == 0.0
    assert target.error_ratio["1m"] is None
    assert target.latency["itl"]["1m"] == dict.fromkeys(QUANTILES)  # not exposed at all


def test_single_finite_bucket_histogram() -> None:
    """A histogram with one finite edge interpolates between 0 and that edge."""
    edges = (0.5, INF)
    target = derived(
        scrape(0.0, {None: Engine(ttft=histogram(edges, [1, 0]))}),
        scrape(10.0, {None: Engine(ttft=histogram(edges, [5, 0], total=1.0))}),
    ).for_model("m")
    assert target is not None
    latency = target.latency["ttft"]["5m"]
    assert latency["0.5"] == pytest.approx(0.25, abs=TOLERANCE)  # rank 2 of 4 -> 0.5 * 2/4
    assert latency["0.99"] == pytest.approx(0.495, abs=TOLERANCE)


def test_counter_reset_between_scrapes() -> None:
    """vLLM restarted between two scrapes: the new values are the increase, nothing negative."""
    old = Engine(
        ttft=histogram(TTFT_EDGES, [100] * len(TTFT_EDGES), total=500.0),
        finished={"stop": 1000.0},
        prompt_tokens=50_000.0,
        preemptions=30.0,
    )
    fresh_ttft = histogram(TTFT_EDGES, [0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0], total=0.04)
    new = Engine(ttft=fresh_ttft, finished={"stop": 4.0}, prompt_tokens=800.0, preemptions=0.0)
    target = derived(scrape(0.0, {None: old}), scrape(20.0, {None: new})).for_model("m")
    assert target is not None
    assert target.prompt_tokens_per_second["1m"] == pytest.approx(800.0 / 20.0, abs=TOLERANCE)
    assert target.requests_per_second["1m"] == pytest.approx(4.0 / 20.0, abs=TOLERANCE)
    assert target.preemptions_per_second["1m"] == 0.0
    for q in QUANTILES:
        expected = histogram_quantile(float(q), fresh_ttft.buckets)
        assert target.latency["ttft"]["1m"][q] == pytest.approx(expected, abs=TOLERANCE)
    assert target.latency_mean["ttft"]["1m"] == pytest.approx(0.01, abs=TOLERANCE)


def test_restart_detected_by_start_time_mid_window() -> None:
    """A start-time change is a reset even when the counter already exceeds its old value."""
    snaps = [
        scrape(0.0, {None: Engine(prompt_tokens=100.0)}, start_time=1000.0),
        scrape(10.0, {None: Engine(prompt_tokens=110.0)}, start_time=1000.0),
        scrape(20.0, {None: Engine(prompt_tokens=120.0)}, start_time=5000.0),
    ]
    target = derived(*snaps).for_model("m")
    assert target is not None
    assert target.prompt_tokens_per_second["1m"] == pytest.approx((10.0 + 120.0) / 20.0)


def test_rates_divide_by_elapsed_between_snapshots_used() -> None:
    """The 1m and 5m windows use their own first snapshot and the real elapsed time."""
    snaps = [
        scrape(t, {None: Engine(generation_tokens=tokens)})
        for t, tokens in [(0.0, 0.0), (200.0, 1000.0), (250.0, 2000.0), (297.0, 2470.0)]
    ]
    target = derived(*snaps).for_model("m")
    assert target is not None
    assert target.generation_tokens_per_second["5m"] == pytest.approx(2470.0 / 297.0)
    assert target.generation_tokens_per_second["1m"] == pytest.approx(470.0 / 47.0)


def test_single_snapshot_has_gauges_but_no_rates() -> None:
    """With one scrape the instant gauges exist and every windowed value is None."""
    engine = Engine(running=3.0, waiting=1.0, kv=0.4, finished={"stop": 9.0}, ttft=None)
    target = derived(scrape(0.0, {None: engine})).for_model("m")
    assert target is not None
    assert (target.requests_running, target.requests_waiting, target.kv_cache_usage) == (
        3.0,
        1.0,
        0.4,
    )
    assert target.requests_per_second == dict.fromkeys(WINDOWS)
    assert target.queue_slope is None
    assert target.kv_cache_seconds_to_full is None
    for signal in LATENCY_SIGNALS:
        assert target.latency[signal] == {w: dict.fromkeys(QUANTILES) for w in WINDOWS}


def test_two_engines_aggregate_and_split() -> None:
    """Counters and buckets sum over engines, running/waiting sum, KV usage is the max."""
    a_old, a_new = [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [3, 6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    b_old, b_new = [0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 9, 4, 2, 0, 0, 0, 1]
    old = {
        "0": Engine(ttft=histogram(TTFT_EDGES, a_old), finished={"stop": 10.0}),
        "1": Engine(ttft=histogram(TTFT_EDGES, b_old), finished={"stop": 20.0}),
    }
    new = {
        "0": Engine(ttft=histogram(TTFT_EDGES, a_new), finished={"stop": 16.0}, running=2.0,
                    waiting=5.0, kv=0.30),
        "1": Engine(ttft=histogram(TTFT_EDGES, b_new), finished={"stop": 29.0}, running=4.0,
                    waiting=1.0, kv=0.75),
    }  # fmt: skip
    signals = derived(scrape(0.0, old), scrape(50.0, new))
    assert [(t.model_name, t.engine) for t in signals.targets] == [
        ("m", None),
        ("m", "0"),
        ("m", "1"),
    ]
    whole, first, second = signals.targets
    assert whole.requests_per_second["1m"] == pytest.approx((6.0 + 9.0) / 50.0)
    assert first.requests_per_second["1m"] == pytest.approx(6.0 / 50.0)
    assert (whole.requests_running, whole.requests_waiting, whole.kv_cache_usage) == (6, 6, 0.75)
    assert (first.kv_cache_usage, second.kv_cache_usage) == (0.30, 0.75)
    summed = np.cumsum(np.subtract(a_new, a_old) + np.subtract(b_new, b_old)).tolist()
    only_a = np.cumsum(np.subtract(a_new, a_old)).tolist()
    for q in QUANTILES:
        assert whole.latency["ttft"]["1m"][q] == pytest.approx(
            numpy_quantile(float(q), TTFT_EDGES, summed), abs=TOLERANCE
        )
        assert first.latency["ttft"]["1m"][q] == pytest.approx(
            numpy_quantile(float(q), TTFT_EDGES, only_a), abs=TOLERANCE
        )
    assert signals.for_model("m", "1") is second
    assert signals.for_model("m", "7") is None
    assert signals.for_model("other") is None


def test_engines_in_numeric_order() -> None:
    """Engine "10" comes after "9", not after "1"."""
    engines = {str(n): Engine(running=1.0) for n in (10, 2, 9, 0)}
    signals = derived(scrape(0.0, engines))
    assert [t.engine for t in signals.targets] == [None, "0", "2", "9", "10"]


def test_engines_with_different_edges_aggregate_on_shared_edges() -> None:
    """Per-engine custom buckets: the model's quantile uses only the edges both engines share."""
    edges_a, edges_b = (0.1, 0.5, 1.0, INF), (0.2, 1.0, INF)
    old = {"0": Engine(ttft=histogram(edges_a, [0, 0, 0, 0])),
           "1": Engine(ttft=histogram(edges_b, [0, 0, 0]))}  # fmt: skip
    new = {"0": Engine(ttft=histogram(edges_a, [2, 1, 1, 0])),
           "1": Engine(ttft=histogram(edges_b, [3, 1, 2]))}  # fmt: skip
    whole = derived(scrape(0.0, old), scrape(10.0, new)).for_model("m")
    assert whole is not None
    shared = ((1.0, 4.0 + 4.0), (INF, 4.0 + 6.0))
    for q in QUANTILES:
        assert whole.latency["ttft"]["1m"][q] == histogram_quantile(float(q), shared)


def test_legacy_vllm_without_engine_label() -> None:
    """No engine label: one aggregated target per model and no per-engine targets."""
    snaps = [
        scrape(0.0, {None: Engine(finished={"stop": 1.0})}, model="a"),
        scrape(10.0, {None: Engine(finished={"stop": 6.0}, running=1.0)}, model="a"),
    ]
    signals = derived(*snaps)
    assert [(t.model_name, t.engine) for t in signals.targets] == [("a", None)]
    only = signals.for_model("a")
    assert only is not None
    assert only.requests_per_second["1m"] == pytest.approx(0.5)
    assert signals.for_model("a", "0") is None


@pytest.mark.parametrize(
    ("finished", "floor", "expected"),
    [
        ({"stop": 15.0, "error": 2.0, "abort": 2.0}, 20.0, None),  # 19 requests: below the floor
        ({"stop": 15.0, "error": 3.0, "abort": 2.0}, 20.0, 0.25),  # 20 requests: reported
        ({"stop": 2.0, "error": 1.0}, 20.0, None),
        ({"stop": 2.0, "error": 1.0}, 3.0, 1.0 / 3.0),
        ({"stop": 20.0, "length": 10.0, "repetition": 10.0}, 20.0, 0.0),
    ],
)
def test_error_ratio_traffic_floor(
    finished: dict[str, float], floor: float, expected: float | None
) -> None:
    """Error + abort over all finished, None when fewer than the floor finished in the window."""
    zero = dict.fromkeys(finished, 0.0)
    target = derived(
        scrape(0.0, {None: Engine(finished=zero)}),
        scrape(30.0, {None: Engine(finished=finished)}),
        min_requests_for_ratio=floor,
    ).for_model("m")
    assert target is not None
    if expected is None:
        assert target.error_ratio["1m"] is None
    else:
        assert target.error_ratio["1m"] == pytest.approx(expected, abs=TOLERANCE)


def test_prefix_cache_hit_ratio() -> None:
    """Hits over queries of the window; None when nothing was queried."""
    target = derived(
        scrape(0.0, {None: Engine(prefix_queries=1000.0, prefix_hits=100.0)}),
        scrape(10.0, {None: Engine(prefix_queries=1800.0, prefix_hits=700.0)}),
    ).for_model("m")
    assert target is not None
    assert target.prefix_cache_hit_ratio["1m"] == pytest.approx(600.0 / 800.0)
    idle = derived(
        scrape(0.0, {None: Engine(prefix_queries=5.0, prefix_hits=1.0)}),
        scrape(10.0, {None: Engine(prefix_queries=5.0, prefix_hits=1.0)}),
    ).for_model("m")
    assert idle is not None
    assert idle.prefix_cache_hit_ratio["1m"] is None


def test_vllm_032_serving_signals() -> None:
    """Admission rejections per second, deferred requests, cached prompt share, sleeping engines."""
    before = {
        "0": Engine(prompt_tokens=1000.0, prompt_cached=100.0, deferred=1.0, awake=1.0),
        "1": Engine(prompt_tokens=1000.0, prompt_cached=0.0, deferred=0.0, awake=1.0),
    }
    after = {
        "0": Engine(prompt_tokens=1400.0, prompt_cached=400.0, deferred=2.0, awake=1.0),
        "1": Engine(prompt_tokens=1600.0, prompt_cached=0.0, deferred=1.0, awake=0.0),
    }
    first, second = scrape(0.0, before), scrape(10.0, after)
    rejected = SeriesKey("m", None, (("reason", "max_num_queued_reqs"),))
    first.counters["admission_rejections"] = {rejected: 5.0}
    second.counters["admission_rejections"] = {rejected: 25.0}
    signals = derived(first, second)
    model = signals.for_model("m")
    assert model is not None
    assert model.admission_rejections_per_second["1m"] == pytest.approx(2.0)
    assert model.requests_deferred == 3.0
    assert model.prompt_tokens_cached_ratio["1m"] == pytest.approx(300.0 / 1000.0)
    assert model.engines_sleeping == 1.0
    engine = signals.for_model("m", "1")
    assert engine is not None
    assert engine.engines_sleeping == 1.0
    assert engine.admission_rejections_per_second["1m"] is None  # vLLM counts them per model
    old = derived(
        scrape(0.0, {None: Engine(running=1.0)}), scrape(10.0, {None: Engine(running=1.0)})
    )
    legacy = old.for_model("m")
    assert legacy is not None
    assert legacy.requests_deferred is None
    assert legacy.engines_sleeping is None


def test_queue_slope_matches_least_squares() -> None:
    """The queue trend is numpy's degree-1 polyfit slope over the trend window only."""
    rng = np.random.default_rng(3)
    times = np.arange(0.0, 600.0, 5.0) + 1_000_000.0  # large monotonic values on purpose
    waiting = 0.05 * (times - times[0]) + rng.normal(0.0, 2.0, size=times.size)
    snaps = [scrape(t, {None: Engine(waiting=w)}) for t, w in zip(times, waiting, strict=True)]
    target = derived(*snaps, trend_window=300.0).for_model("m")
    assert target is not None
    inside = times >= times[-1] - 300.0
    expected = np.polyfit(times[inside] - times[-1], waiting[inside], 1)[0]
    assert target.queue_slope == pytest.approx(expected, abs=TOLERANCE)


def test_queue_slope_needs_three_points() -> None:
    """Two readings are not a trend."""
    snaps = [scrape(t, {None: Engine(waiting=t)}) for t in (0.0, 5.0)]
    target = derived(*snaps).for_model("m")
    assert target is not None
    assert target.queue_slope is None
    target = derived(*snaps, scrape(10.0, {None: Engine(waiting=10.0)})).for_model("m")
    assert target is not None
    assert target.queue_slope == pytest.approx(1.0)


def test_kv_forecast_rising_uses_fullest_engine() -> None:
    """Time to full is (1 - latest) / least-squares slope of the per-snapshot max over engines."""
    times = np.arange(0.0, 120.0, 5.0)
    fast = 0.20 + 0.002 * times + 0.01 * np.sin(times)
    slow = 0.10 + 0.0001 * times
    snaps = [
        scrape(t, {"0": Engine(kv=a), "1": Engine(kv=b)})
        for t, a, b in zip(times, fast, slow, strict=True)
    ]
    signals = derived(*snaps)
    whole = signals.for_model("m")
    assert whole is not None
    slope = np.polyfit(times, np.maximum(fast, slow), 1)[0]
    assert whole.kv_cache_usage == fast[-1]
    assert whole.kv_cache_seconds_to_full == pytest.approx((1 - fast[-1]) / slope, rel=TOLERANCE)
    second = signals.for_model("m", "1")
    assert second is not None
    assert second.kv_cache_seconds_to_full == pytest.approx(
        (1 - slow[-1]) / np.polyfit(times, slow, 1)[0], rel=TOLERANCE
    )


def test_kv_forecast_falling_or_full() -> None:
    """Falling usage has no time to full; usage at 100% is full now (0 s)."""
    falling = [scrape(t, {None: Engine(kv=0.9 - t / 100)}) for t in (0.0, 5.0, 10.0)]
    target = derived(*falling).for_model("m")
    assert target is not None
    assert target.kv_cache_seconds_to_full is None
    full = derived(scrape(0.0, {None: Engine(kv=1.0)})).for_model("m")
    assert full is not None
    assert full.kv_cache_seconds_to_full == 0.0


def test_empty_and_stale_history() -> None:
    """No snapshots, or only snapshots older than every window: no targets."""
    empty = derive(History(300.0))
    assert (empty.computed_at, empty.targets) == (0.0, ())
    history = history_of(scrape(0.0, {None: Engine(running=1.0)}))
    assert derive(history, now=10_000.0).targets == ()
    assert derive(history).computed_at == 1.7e9


def test_to_json_is_strict_json() -> None:
    """to_json() survives json.dumps(allow_nan=False): NaN and infinities become null."""
    snaps = [
        scrape(0.0, {"0": Engine(ttft=histogram(TTFT_EDGES, [0] * 12), kv=math.nan)}),
        scrape(5.0, {"0": Engine(ttft=histogram(TTFT_EDGES, [1] * 12), kv=math.nan, waiting=1.0)}),
    ]
    payload = derived(*snaps).to_json()
    text = json.dumps(payload, allow_nan=False)
    back = json.loads(text)
    assert back["windows"] == {"1m": 60.0, "5m": 300.0}
    assert back["quantiles"] == ["0.5", "0.95", "0.99"]
    assert [(t["model_name"], t["engine"]) for t in back["targets"]] == [("m", None), ("m", "0")]
    assert back["targets"][0]["kv_cache_usage"] is None
    assert back["targets"][0]["latency"]["ttft"]["1m"]["0.5"] == pytest.approx(0.06)  # rank 6 of 12
    assert back["computed_at"] == 1.7e9 + 5.0
