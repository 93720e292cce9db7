"""From a history of snapshots to the numbers an SRE acts on, per model and per engine.

Conventions that make our numbers agree with Grafana's PromQL over the same scrapes:

* **Rates** are the window's increase divided by the time between the first and the last snapshot
  actually used, not by the nominal window. Prometheus' ``rate(x[w])`` is
  ``increase * (extrapolated / sampled) / w``, where ``sampled`` is that same first-to-last time
  and ``extrapolated`` stretches it to the window's edges when the gap to an edge is under 1.1
  average scrape intervals (otherwise by half an interval), and not past the counter's zero. In
  the usual case both gaps qualify, ``extrapolated == w`` and the formula reduces to
  ``increase / sampled``: ours exactly. They differ only when a series starts or stops inside the
  window (or scrapes were missed at its edges), by at most that extrapolation.
* **Quantiles** are computed on bucket *increases*. Every bucket of ``rate(h_bucket[w])`` is
  divided by the same duration, and ``histogram_quantile`` is invariant to scaling all buckets, so
  the result equals ``histogram_quantile(q, sum by (le) (rate(h_bucket[w])))``.
* **Resets** (vLLM restarts) are handled per series, step by step: see :mod:`.windowed`. A rate is
  never negative.
* **Aggregation** over the engines of a model: counters and histogram buckets are summed (on the
  edges all engines share, see :func:`.quantile.merge_histograms`), running/waiting are summed and
  KV-cache usage is the max (a sum of fractions is meaningless; the fullest engine is the one that
  preempts first).
* **Series set**: the series of the newest snapshot decide which models and engines exist; a series
  that disappeared inside the window no longer contributes.
* Only snapshots within the largest window (or ``trend_window``) before ``now`` are read, so a
  history whose newest snapshot is older than that yields no targets, as a stale Prometheus series
  would vanish.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

from sidecar.signals.history import History
from sidecar.signals.quantile import merge_histograms, prepare_buckets, quantile_of_prepared
from sidecar.signals.trend import least_squares_slope, seconds_to_full
from sidecar.signals.windowed import (
    columns,
    counter_window_increase,
    histogram_window_increase,
    restart_flags,
)
from sidecar.snapshot import Histogram, SeriesKey, Snapshot, engine_order

WINDOWS: Mapping[str, float] = MappingProxyType({"1m": 60.0, "5m": 300.0})
QUANTILES: tuple[str, ...] = ("0.5", "0.95", "0.99")
LATENCY_SIGNALS: tuple[str, ...] = ("ttft", "itl", "e2e_latency", "queue_time")

# Canonical names from sidecar.scrape.catalogue (the snapshot contract).
REQUESTS_RUNNING = "requests_running"
REQUESTS_WAITING = "requests_waiting"
KV_CACHE_USAGE = "kv_cache_usage"
PREEMPTIONS = "preemptions"
PROMPT_TOKENS = "prompt_tokens"
GENERATION_TOKENS = "generation_tokens"
REQUEST_SUCCESS = "request_success"
PREFIX_CACHE_QUERIES = "prefix_cache_queries"
PREFIX_CACHE_HITS = "prefix_cache_hits"
ADMISSION_REJECTIONS = "admission_rejections"
PROMPT_TOKENS_CACHED = "prompt_tokens_cached"
ENGINE_SLEEP_STATE = "engine_sleep_state"
ENGINES_SLEEPING = "engines_sleeping"
REQUESTS_WAITING_BY_REASON = "requests_waiting_by_reason"
REQUESTS_DEFERRED = "requests_deferred"
DEFERRED_REASON = "deferred"
"""``num_requests_waiting_by_reason`` value for requests held back by transient constraints
(LoRA budget, KV transfer, blocked status) rather than by a lack of capacity."""
FINISHED_REASON = "finished_reason"
ERROR_REASONS = frozenset({"error", "abort"})
"""``finished_reason`` values that count as failed requests in the error ratio."""

COUNTERS: tuple[str, ...] = (
    PREEMPTIONS,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    REQUEST_SUCCESS,
    PREFIX_CACHE_QUERIES,
    PREFIX_CACHE_HITS,
    ADMISSION_REJECTIONS,
    PROMPT_TOKENS_CACHED,
)

Target = tuple[str, str | None]
"""(model_name, engine); engine None is the whole model."""


@dataclass(frozen=True, slots=True)
class TargetSignals:
    """Everything derived for one model (``engine=None``: all engines together) or one engine."""

    model_name: str
    engine: str | None
    latency: Mapping[str, Mapping[str, Mapping[str, float | None]]]
    """signal -> window -> quantile -> seconds; None without observations or history."""
    latency_mean: Mapping[str, Mapping[str, float | None]]
    requests_running: float | None
    requests_waiting: float | None
    queue_slope: float | None
    """d(waiting)/dt in requests per second, least squares over the trend window."""
    kv_cache_usage: float | None
    kv_cache_seconds_to_full: float | None
    preemptions_per_second: Mapping[str, float | None]
    requests_per_second: Mapping[str, float | None]
    error_ratio: Mapping[str, float | None]
    """(error + abort) / all finished; None below the traffic floor."""
    prompt_tokens_per_second: Mapping[str, float | None]
    generation_tokens_per_second: Mapping[str, float | None]
    prefix_cache_hit_ratio: Mapping[str, float | None]
    admission_rejections_per_second: Mapping[str, float | None]
    """Requests vLLM (0.32+) turned away at admission (503); None on older vLLM."""
    requests_deferred: float | None
    """Waiting requests deferred by transient constraints (vLLM 0.32+), None on older vLLM."""
    prompt_tokens_cached_ratio: Mapping[str, float | None]
    """Share of prompt tokens served from a cache, local or external (vLLM 0.32+): prefill the
    GPUs did not pay for."""
    engines_sleeping: float | None
    """Engines in sleep mode (``engine_sleep_state{sleep_state="awake"}`` 0), None without it."""


@dataclass(frozen=True, slots=True)
class Signals:
    """One evaluation of every target, as of the newest snapshot."""

    computed_at: float
    """Wall clock of the newest snapshot used (0.0 when there was none)."""
    targets: tuple[TargetSignals, ...]

    def for_model(self, model_name: str, engine: str | None = None) -> TargetSignals | None:
        """The signals of one model (``engine=None``) or of one of its engines."""
        for target in self.targets:
            if target.model_name == model_name and target.engine == engine:
                return target
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able data (for ``/api/v1/signals``); NaN and infinities become None."""
        return {
            "computed_at": _finite(self.computed_at),
            "windows": dict(WINDOWS),
            "quantiles": list(QUANTILES),
            "targets": [_plain(asdict(target)) for target in self.targets],
        }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, float):
        return _finite(value)
    return value


def _targets_of(key: SeriesKey) -> tuple[Target, ...]:
    """The targets a series feeds: always its model, plus its engine when labelled."""
    if key.engine is None:
        return ((key.model_name, None),)
    return ((key.model_name, None), (key.model_name, key.engine))


def _target_list(snapshot: Snapshot) -> list[Target]:
    """Every model first (engine None), then each (model, engine) pair seen in the snapshot."""
    engines: set[Target] = set()
    for table in (snapshot.gauges, snapshot.counters, snapshot.histograms):
        for series in table.values():
            engines.update((key.model_name, key.engine) for key in series if key.engine is not None)
    models: list[Target] = [(model, None) for model in snapshot.models()]
    return models + sorted(engines, key=lambda target: (target[0], engine_order(target[1])))


def _fold_sum(values: Iterable[tuple[SeriesKey, float | None]]) -> dict[Target, float]:
    totals: dict[Target, float] = {}
    for key, value in values:
        if value is None:
            continue
        for target in _targets_of(key):
            totals[target] = totals.get(target, 0.0) + value
    return totals


def _fold_max(values: Iterable[tuple[SeriesKey, float]]) -> dict[Target, float]:
    maxima: dict[Target, float] = {}
    for key, value in values:
        for target in _targets_of(key):
            previous = maxima.get(target)
            maxima[target] = value if previous is None or value > previous else previous
    return maxima


@dataclass(frozen=True, slots=True)
class _WindowTotals:
    """Per-target increases of one window, and the seconds they were counted over."""

    elapsed: float
    counters: Mapping[str, Mapping[Target, float]]
    finished_errors: Mapping[Target, float]
    histograms: Mapping[str, Mapping[Target, Histogram]]


@dataclass(frozen=True, slots=True)
class _Columns:
    """Every series of the newest snapshot, read once across the longest window's snapshots."""

    snapshots: Sequence[Snapshot]
    restarts: Sequence[bool]
    counters: Mapping[str, Mapping[SeriesKey, list[float | None]]]
    histograms: Mapping[str, Mapping[SeriesKey, list[Histogram | None]]]

    @classmethod
    def read(cls, snapshots: Sequence[Snapshot]) -> _Columns:
        current = snapshots[-1]
        return cls(
            snapshots=snapshots,
            restarts=restart_flags(snapshots),
            counters={
                name: columns(
                    [s.counters.get(name) for s in snapshots], list(current.counters.get(name, {}))
                )
                for name in COUNTERS
            },
            histograms={
                name: columns(
                    [s.histograms.get(name) for s in snapshots],
                    list(current.histograms.get(name, {})),
                )
                for name in LATENCY_SIGNALS
            },
        )


def _window_totals(data: _Columns, start: int) -> _WindowTotals | None:
    """Per-target increases over ``data.snapshots[start:]``; None with fewer than 2 snapshots."""
    if len(data.snapshots) - start < 2:
        return None
    counters: dict[str, dict[Target, float]] = {}
    errors: dict[Target, float] = {}
    for name, series in data.counters.items():
        increases = [
            (key, counter_window_increase(values, data.restarts, start))
            for key, values in series.items()
        ]
        counters[name] = _fold_sum(increases)
        if name == REQUEST_SUCCESS:
            errors = _fold_sum(
                (key, value)
                for key, value in increases
                if key.label(FINISHED_REASON) in ERROR_REASONS
            )
    histograms: dict[str, dict[Target, Histogram]] = {}
    for name, histogram_series in data.histograms.items():
        pieces: dict[Target, list[Histogram]] = {}
        for key, histogram_values in histogram_series.items():
            increase = histogram_window_increase(histogram_values, data.restarts, start)
            if increase is not None:
                for target in _targets_of(key):
                    pieces.setdefault(target, []).append(increase)
        merged = {target: merge_histograms(parts) for target, parts in pieces.items()}
        histograms[name] = {target: h for target, h in merged.items() if h is not None}
    return _WindowTotals(
        elapsed=data.snapshots[-1].monotonic - data.snapshots[start].monotonic,
        counters=counters,
        finished_errors=errors,
        histograms=histograms,
    )


def _latency(histogram: Histogram | None) -> tuple[dict[str, float | None], float | None]:
    """Quantiles and mean of one window's increase histogram (None where undefined)."""
    if histogram is None:
        return dict.fromkeys(QUANTILES), None
    prepared = prepare_buckets(histogram.buckets)
    quantiles = {q: _finite(quantile_of_prepared(float(q), prepared)) for q in QUANTILES}
    mean = histogram.sum / histogram.count if histogram.count > 0 else None
    return quantiles, _finite(mean)


def _ratio(numerator: float | None, denominator: float | None, floor: float) -> float | None:
    if numerator is None or denominator is None or denominator <= 0 or denominator < floor:
        return None
    return numerator / denominator


def _per_window(
    windows: Mapping[str, _WindowTotals | None], value: Callable[[_WindowTotals], float | None]
) -> dict[str, float | None]:
    """Apply ``value(totals)`` to each window, None for windows without enough history."""
    return {name: (None if totals is None else value(totals)) for name, totals in windows.items()}


def _rate(totals: _WindowTotals, name: str, target: Target) -> float | None:
    increase = totals.counters[name].get(target)
    return None if increase is None else increase / totals.elapsed


def _trend_points(
    snapshots: Sequence[Snapshot], name: str, aggregate_max: bool
) -> dict[Target, list[tuple[float, float]]]:
    """Per target, ``(monotonic, aggregated gauge)`` for every snapshot that has the gauge."""
    points: dict[Target, list[tuple[float, float]]] = {}
    for snapshot in snapshots:
        series = snapshot.gauges.get(name)
        if not series:
            continue
        folded = _fold_max(series.items()) if aggregate_max else _fold_sum(series.items())
        for target, value in folded.items():
            points.setdefault(target, []).append((snapshot.monotonic, value))
    return points


def _target_signals(
    target: Target,
    windows: Mapping[str, _WindowTotals | None],
    gauges: Mapping[str, Mapping[Target, float]],
    trends: Mapping[str, Mapping[Target, list[tuple[float, float]]]],
    min_requests_for_ratio: float,
) -> TargetSignals:
    latency: dict[str, dict[str, dict[str, float | None]]] = {}
    latency_mean: dict[str, dict[str, float | None]] = {}
    for signal in LATENCY_SIGNALS:
        latency[signal], latency_mean[signal] = {}, {}
        for window, totals in windows.items():
            histogram = None if totals is None else totals.histograms[signal].get(target)
            latency[signal][window], latency_mean[signal][window] = _latency(histogram)

    def error_ratio(totals: _WindowTotals) -> float | None:
        finished = totals.counters[REQUEST_SUCCESS].get(target)
        failed = totals.finished_errors.get(target, 0.0) if finished is not None else None
        return _ratio(failed, finished, min_requests_for_ratio)

    def hit_ratio(totals: _WindowTotals) -> float | None:
        hits = totals.counters[PREFIX_CACHE_HITS].get(target)
        return _ratio(hits, totals.counters[PREFIX_CACHE_QUERIES].get(target), 0.0)

    def cached_ratio(totals: _WindowTotals) -> float | None:
        cached = totals.counters[PROMPT_TOKENS_CACHED].get(target)
        return _ratio(cached, totals.counters[PROMPT_TOKENS].get(target), 0.0)

    kv_usage = gauges[KV_CACHE_USAGE].get(target)
    kv_slope = least_squares_slope(trends[KV_CACHE_USAGE].get(target, []))
    return TargetSignals(
        model_name=target[0],
        engine=target[1],
        latency=latency,
        latency_mean=latency_mean,
        requests_running=gauges[REQUESTS_RUNNING].get(target),
        requests_waiting=gauges[REQUESTS_WAITING].get(target),
        queue_slope=least_squares_slope(trends[REQUESTS_WAITING].get(target, [])),
        kv_cache_usage=kv_usage,
        kv_cache_seconds_to_full=seconds_to_full(kv_usage, kv_slope),
        preemptions_per_second=_per_window(windows, lambda t: _rate(t, PREEMPTIONS, target)),
        requests_per_second=_per_window(windows, lambda t: _rate(t, REQUEST_SUCCESS, target)),
        error_ratio=_per_window(windows, error_ratio),
        prompt_tokens_per_second=_per_window(windows, lambda t: _rate(t, PROMPT_TOKENS, target)),
        generation_tokens_per_second=_per_window(
            windows, lambda t: _rate(t, GENERATION_TOKENS, target)
        ),
        prefix_cache_hit_ratio=_per_window(windows, hit_ratio),
        admission_rejections_per_second=_per_window(
            windows, lambda t: _rate(t, ADMISSION_REJECTIONS, target)
        ),
        requests_deferred=gauges[REQUESTS_DEFERRED].get(target),
        prompt_tokens_cached_ratio=_per_window(windows, cached_ratio),
        engines_sleeping=gauges[ENGINES_SLEEPING].get(target),
    )


def derive(
    history: History,
    *,
    min_requests_for_ratio: float = 20.0,
    trend_window: float = 300.0,
    now: float | None = None,
) -> Signals:
    """Every signal of every model and engine, as of ``now`` (default: the newest snapshot).

    Pure: reads only ``history`` and its arguments. ``min_requests_for_ratio`` is the traffic
    floor under which the error ratio is None (two failures out of three requests is not an
    incident). ``trend_window`` is the span, in seconds, of the queue and KV-cache trends.
    """
    horizon = max(*WINDOWS.values(), trend_window)
    recent = history.since(horizon, now)
    if not recent:
        return Signals(computed_at=0.0, targets=())
    current = recent[-1]
    end = current.monotonic if now is None else now
    in_longest = [s for s in recent if s.monotonic >= end - max(WINDOWS.values())]
    windows: dict[str, _WindowTotals | None] = dict.fromkeys(WINDOWS)
    if in_longest:
        data = _Columns.read(in_longest)
        times = [s.monotonic for s in in_longest]
        for name, seconds in WINDOWS.items():
            windows[name] = _window_totals(data, bisect_left(times, end - seconds))
    gauges = {
        REQUESTS_RUNNING: _fold_sum(current.gauges.get(REQUESTS_RUNNING, {}).items()),
        REQUESTS_WAITING: _fold_sum(current.gauges.get(REQUESTS_WAITING, {}).items()),
        KV_CACHE_USAGE: _fold_max(current.gauges.get(KV_CACHE_USAGE, {}).items()),
        REQUESTS_DEFERRED: _fold_sum(
            (key, value)
            for key, value in current.gauges.get(REQUESTS_WAITING_BY_REASON, {}).items()
            if key.label("reason") == DEFERRED_REASON
        ),
        ENGINES_SLEEPING: _fold_sum(
            (key, 1.0 - value)
            for key, value in current.gauges.get(ENGINE_SLEEP_STATE, {}).items()
            if key.label("sleep_state") == "awake"
        ),
    }
    in_trend = [s for s in recent if s.monotonic >= end - trend_window]
    trends = {
        REQUESTS_WAITING: _trend_points(in_trend, REQUESTS_WAITING, aggregate_max=False),
        KV_CACHE_USAGE: _trend_points(in_trend, KV_CACHE_USAGE, aggregate_max=True),
    }
    targets = tuple(
        _target_signals(target, windows, gauges, trends, min_requests_for_ratio)
        for target in _target_list(current)
    )
    return Signals(computed_at=current.timestamp, targets=targets)
