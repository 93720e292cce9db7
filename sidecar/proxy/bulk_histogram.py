"""A Prometheus histogram that takes a whole stream's observations at once.

Inter-token gaps arrive once per relayed read: thousands per long stream. A
``prometheus_client.Histogram.observe`` per gap costs two locked increments (~1-2 us) on the
relay path, and observing them all at the end of a stream would stall the event loop (every
other stream) for milliseconds. Instead each stream tallies its gaps into a :class:`Tally` (one
``bisect`` and two adds per gap, no lock) and merges it into the :class:`BulkHistogram` once,
when it ends. Exposition is a normal histogram family (``_bucket``/``_sum``/``_count``).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class Tally:
    """Per-stream bucket counts against fixed upper bounds (``le`` semantics).

    The relay's meter adds to ``counts`` and ``total`` itself (one ``bisect``, no call per
    gap); :meth:`add` is the same for everyone else.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.total = 0.0

    @property
    def count(self) -> int:
        """How many observations were added."""
        return sum(self.counts)

    def add(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class BulkHistogram(Collector):
    """A labelled histogram fed by merging :class:`Tally` objects."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(float(bound) for bound in buckets)
        if list(self._bounds) != sorted(set(self._bounds)) or not self._bounds:
            raise ValueError(f"{name}: buckets must be distinct and ascending")
        if not all(math.isfinite(bound) and bound < 1e6 for bound in self._bounds):
            raise ValueError(f"{name}: buckets must be finite and below 1e6")
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()  # collect() may run on another thread
        registry.register(self)

    def tally(self) -> Tally:
        """A fresh tally with this histogram's bounds."""
        return Tally(self._bounds)

    def merge(self, labels: Sequence[str], tally: Tally) -> None:
        """Add a finished tally to the series ``labels`` (in ``labelnames`` order)."""
        if not tally.count:
            return
        key = tuple(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = ([0] * (len(self._bounds) + 1), [0.0])
            counts, total = series
            for index, value in enumerate(tally.counts):
                counts[index] += value
            total[0] += tally.total

    def describe(self) -> Iterator[HistogramMetricFamily]:
        """The family without samples (lets the registry check names without collecting)."""
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """Cumulative buckets per series, as Prometheus expects."""
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            snapshot = [
                (key, list(counts), total[0]) for key, (counts, total) in self._series.items()
            ]
        edges = [*self._bounds, math.inf]
        for key, counts, total in snapshot:
            cumulative = 0
            buckets = []
            for bound, count in zip(edges, counts, strict=True):
                cumulative += count
                buckets.append((_format_bound(bound), float(cumulative)))
            family.add_metric(list(key), buckets, total)
        yield family


def _format_bound(bound: float) -> str:
    """``le`` label text as ``prometheus_client.Histogram`` writes it for bounds below 1e6
    (``0.01``, ``1.0``, ``+Inf``); its formatter is untyped, and larger bounds are not used."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))
