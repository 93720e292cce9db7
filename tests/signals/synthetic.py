"""Builders for synthetic snapshots, and an independent numpy reference for bucket quantiles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sidecar.snapshot import Histogram, SeriesKey, Snapshot

INF = math.inf
TTFT_EDGES: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0)
TTFT_EDGES += (INF,)
"""A shortened version of vLLM's TTFT edges, ending in +Inf."""


def key(model: str = "m", engine: str | None = None, **extra: str) -> SeriesKey:
    """A series key with extra labels given as keyword arguments."""
    return SeriesKey(model, engine, tuple(sorted(extra.items())))


def histogram(edges: Sequence[float], per_bucket: Sequence[float], total: float = 0.0) -> Histogram:
    """A cumulative histogram from per-bucket (non-cumulative) counts; ``edges`` end in +Inf."""
    assert len(edges) == len(per_bucket)
    counts = np.cumsum(np.asarray(per_bucket, dtype=float))
    buckets = tuple((float(le), float(count)) for le, count in zip(edges, counts, strict=True))
    return Histogram(buckets=buckets, count=buckets[-1][1], sum=total)


def snapshot(
    monotonic: float,
    *,
    gauges: Mapping[str, Mapping[SeriesKey, float]] | None = None,
    counters: Mapping[str, Mapping[SeriesKey, float]] | None = None,
    histograms: Mapping[str, Mapping[SeriesKey, Histogram]] | None = None,
    start_time: float | None = None,
) -> Snapshot:
    """A snapshot whose wall clock is ``1.7e9 + monotonic``."""
    return Snapshot(
        timestamp=1.7e9 + monotonic,
        monotonic=monotonic,
        gauges=gauges or {},
        counters=counters or {},
        histograms=histograms or {},
        start_time=start_time,
    )


def numpy_quantile(q: float, edges: Sequence[float], cumulative: Sequence[float]) -> float:
    """Quantile as the inverse of the piecewise-linear CDF that ``histogram_quantile`` assumes.

    Independent of the implementation under test: ``np.interp`` through (0, 0) and every finite
    ``(count, le)``, clamped at the highest finite edge (where a rank in the +Inf bucket lands).
    Valid for positive, increasing edges, non-decreasing counts and a rank that is not exactly a
    cumulative count.
    """
    finite_edges = np.asarray(edges[:-1], dtype=float)
    finite_counts = np.asarray(cumulative[:-1], dtype=float)
    rank = q * float(cumulative[-1])
    xp = np.concatenate(([0.0], finite_counts))
    fp = np.concatenate(([0.0], finite_edges))
    return float(np.interp(rank, xp, fp, right=float(finite_edges[-1])))


@dataclass(frozen=True)
class Engine:
    """What one engine (or a legacy engine-less vLLM) exposes in one scrape; None = absent."""

    ttft: Histogram | None = None
    itl: Histogram | None = None
    finished: Mapping[str, float] = field(default_factory=dict)
    preemptions: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    prefix_queries: float | None = None
    prefix_hits: float | None = None
    running: float | None = None
    waiting: float | None = None
    kv: float | None = None
    prompt_cached: float | None = None
    deferred: float | None = None
    awake: float | None = None


def scrape(
    monotonic: float,
    engines: Mapping[str | None, Engine] | Mapping[str, Engine] | Mapping[None, Engine],
    *,
    model: str = "m",
    start_time: float | None = None,
) -> Snapshot:
    """A snapshot of one model whose engines expose the given values (canonical names)."""
    gauges: dict[str, dict[SeriesKey, float]] = {}
    counters: dict[str, dict[SeriesKey, float]] = {}
    histograms: dict[str, dict[SeriesKey, Histogram]] = {}

    def put(table: dict[str, dict[SeriesKey, Any]], name: str, k: SeriesKey, value: Any) -> None:
        if value is not None:
            table.setdefault(name, {})[k] = value

    for engine, state in engines.items():
        k = key(model, engine)
        put(histograms, "ttft", k, state.ttft)
        put(histograms, "itl", k, state.itl)
        for reason, value in state.finished.items():
            put(counters, "request_success", key(model, engine, finished_reason=reason), value)
        put(counters, "preemptions", k, state.preemptions)
        put(counters, "prompt_tokens", k, state.prompt_tokens)
        put(counters, "generation_tokens", k, state.generation_tokens)
        put(counters, "prefix_cache_queries", k, state.prefix_queries)
        put(counters, "prefix_cache_hits", k, state.prefix_hits)
        put(gauges, "requests_running", k, state.running)
        put(gauges, "requests_waiting", k, state.waiting)
        put(gauges, "kv_cache_usage", k, state.kv)
        put(counters, "prompt_tokens_cached", k, state.prompt_cached)
        put(
            gauges,
            "requests_waiting_by_reason",
            key(model, engine, reason="deferred"),
            state.deferred,
        )
        put(gauges, "engine_sleep_state", key(model, engine, sleep_state="awake"), state.awake)
    return snapshot(
        monotonic, gauges=gauges, counters=counters, histograms=histograms, start_time=start_time
    )
