"""The normalised shape of one vLLM scrape, shared by the scraper and the signal functions.

A snapshot speaks in *canonical* names (see ``sidecar.scrape.catalogue``), never in vLLM's exposed
names, so nothing downstream cares whether vLLM called the KV gauge ``gpu_cache_usage_perc`` or
``kv_cache_usage_perc``. Every value is keyed by a :class:`SeriesKey`: the model, the data-parallel
engine (``None`` on vLLM builds without the ``engine`` label) and any extra labels that matter
(``finished_reason`` for request outcomes, ``reason`` for waiting requests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]
"""Extra labels besides ``model_name`` and ``engine``, sorted by name."""


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """Which series a value belongs to: model, engine (or None) and extra labels."""

    model_name: str
    engine: str | None = None
    extra: Labels = ()

    def label(self, name: str) -> str | None:
        """The value of one extra label, or None."""
        for key, value in self.extra:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative histogram as scraped: ``buckets`` are ``(le, cumulative_count)``, ascending.

    The last bucket is always ``+Inf`` and equals ``count``. Bucket edges are read from each
    scrape, never assumed, because vLLM lets operators override them.
    """

    buckets: tuple[tuple[float, float], ...]
    count: float
    sum: float

    def __post_init__(self) -> None:
        if not self.buckets or not math.isinf(self.buckets[-1][0]):
            msg = "a histogram needs a +Inf bucket"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One successful scrape of vLLM, normalised to canonical names.

    ``timestamp`` is wall-clock seconds (for display and forecasts); ``monotonic`` is the
    event-loop clock used for rates, so a wall-clock jump never produces a bogus rate.
    ``start_time`` is vLLM's ``process_start_time_seconds`` when exposed (counter-reset hint).
    ``present`` lists the exposed vLLM family names seen, so the catalogue can tell which
    expected metrics are missing (a vLLM upgrade that renames a metric must not go unnoticed).
    """

    timestamp: float
    monotonic: float
    gauges: Mapping[str, Mapping[SeriesKey, float]] = field(default_factory=dict)
    counters: Mapping[str, Mapping[SeriesKey, float]] = field(default_factory=dict)
    histograms: Mapping[str, Mapping[SeriesKey, Histogram]] = field(default_factory=dict)
    start_time: float | None = None
    present: frozenset[str] = frozenset()
    info: Mapping[str, str] = field(default_factory=dict)

    def models(self) -> list[str]:
        """Every model name that appears in any series, sorted."""
        names: set[str] = set()
        for table in (self.gauges, self.counters, self.histograms):
            for series in table.values():
                names.update(key.model_name for key in series)
        return sorted(names)
