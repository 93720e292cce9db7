"""The normalised shape of one vLLM scrape, shared by the scraper and the signal functions.

A snapshot speaks in *canonical* names (see ``sidecar.scrape.catalogue``), never in vLLM's exposed
names, so nothing downstream cares whether vLLM called the KV gauge ``gpu_cache_usage_perc`` or
``kv_cache_usage_perc``. Every value is keyed by a :class:`SeriesKey`: the model, the data-parallel
engine (``None`` on vLLM builds without the ``engine`` label) and any extra labels that matter
(``finished_reason`` for request outcomes, ``reason`` for waiting requests).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

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


def engine_order(engine: str | None) -> tuple[int, int, str]:
    """The one sort key for data-parallel engines: unlabelled first, then ``"0"``..``"N-1"`` in
    numeric order ("10" after "9"), then any other label by name.

    Numeric means ASCII digits (``str.isdigit`` also accepts "²"); compared by length and text,
    never ``int()``, since a hostile label can be thousands of digits long.
    """
    if engine is None:
        return (0, 0, "")
    if engine.isascii() and engine.isdigit():
        digits = engine.lstrip("0") or "0"
        return (1, len(digits), digits)
    return (2, 0, engine)


class Histogram:
    """A cumulative histogram as scraped: ``buckets`` are ``(le, cumulative_count)``, ascending.

    The last bucket is always ``+Inf`` and equals ``count``. Bucket edges are read from each
    scrape, never assumed, because vLLM lets operators override them.

    Stored as columns because the scrape history keeps hundreds of these per model and engine:
    ``edges`` is one tuple shared by every histogram with the same edges, ``counts`` a packed
    ``array('d')``. That is ~0.2 KB instead of ~2.3 KB per 20-bucket histogram, so 15 minutes
    of an 8-engine page fit in a few MB. Immutable by convention (never mutate ``counts``).
    """

    __slots__ = ("count", "counts", "edges", "sum")

    edges: tuple[float, ...]
    counts: array[float]
    count: float
    sum: float

    def __init__(
        self,
        buckets: Iterable[tuple[float, float]],
        count: float,
        sum: float,
    ) -> None:
        pairs = tuple(buckets)
        self._set(tuple(edge for edge, _ in pairs), array("d", [c for _, c in pairs]), count, sum)

    @classmethod
    def from_columns(
        cls,
        edges: tuple[float, ...],
        counts: Iterable[float],
        count: float,
        sum: float,
    ) -> Histogram:
        """Build from edges and cumulative counts (the fast path of parsing and arithmetic)."""
        histogram = cls.__new__(cls)
        histogram._set(edges, array("d", counts), count, sum)
        return histogram

    def _set(
        self, edges: tuple[float, ...], counts: array[float], count: float, total: float
    ) -> None:
        if not edges or not math.isinf(edges[-1]):
            msg = "a histogram needs a +Inf bucket"
            raise ValueError(msg)
        if len(counts) != len(edges):
            msg = "a histogram needs one count per bucket edge"
            raise ValueError(msg)
        object.__setattr__(self, "edges", shared_edges(edges))
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "sum", total)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Histogram is immutable (tried to set {name})")

    @property
    def buckets(self) -> tuple[tuple[float, float], ...]:
        """``(le, cumulative_count)`` pairs, ascending (built on each access)."""
        return tuple(zip(self.edges, self.counts, strict=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self.edges == other.edges
            and self.counts == other.counts
            and self.count == other.count
            and self.sum == other.sum
        )

    def __hash__(self) -> int:
        return hash((self.edges, tuple(self.counts), self.count, self.sum))

    def __repr__(self) -> str:
        return f"Histogram(buckets={self.buckets!r}, count={self.count!r}, sum={self.sum!r})"


@lru_cache(maxsize=1024)
def shared_edges(edges: tuple[float, ...]) -> tuple[float, ...]:
    """One tuple object per distinct set of bucket edges (they are fixed for a vLLM process)."""
    return edges


@lru_cache(maxsize=4096)
def shared_key(model_name: str, engine: str | None, extra: Labels) -> SeriesKey:
    """One :class:`SeriesKey` per distinct series, so each scrape in the history reuses it."""
    return SeriesKey(model_name, engine, extra)


@lru_cache(maxsize=64)
def shared_names(names: frozenset[str]) -> frozenset[str]:
    """One set object per distinct set of exposed family names."""
    return names


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
