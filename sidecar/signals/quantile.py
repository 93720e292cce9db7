"""Histogram quantiles and increases with Prometheus' semantics, so our numbers match Grafana's.

``histogram_quantile`` follows Prometheus' ``bucketQuantile`` (``promql/quantile.go``) step by
step, including its odd corners (an empty first bucket gives NaN for ``q=0``, a rank in the
``+Inf`` bucket gives the highest finite bound). Because every bucket of ``rate(x[w])`` is the
bucket's increase divided by the same duration, quantiles over *increases* equal quantiles over
*rates*: we never need the division to match ``histogram_quantile(q, rate(x_bucket[w]))``.

Increases treat a counter reset (a vLLM restart) the way Prometheus does, by counting the new value
from zero, so a rate is never negative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sidecar.snapshot import Histogram

SMALL_DELTA_TOLERANCE = 1e-12
"""Relative difference between neighbouring buckets that Prometheus treats as float noise."""

_MIN_NORMAL = 2.2250738585072014e-308
"""Smallest positive normal float64, as in Prometheus' ``util/almost``."""

Buckets = tuple[tuple[float, float], ...]
"""``(le, cumulative_count)`` pairs, sorted by ``le``, last ``le`` is ``+Inf``."""


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    """Prometheus' ``almost.Equal``: relative comparison that copes with zero and subnormals."""
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    return diff / min(abs_sum, 1.7976931348623157e308) < epsilon


def _clearly_greater(prev: float, current: float) -> bool:
    """For ``current > prev``: not ``almost.Equal`` (fast paths for the usual counts first)."""
    if prev == 0:
        if current >= _MIN_NORMAL:
            return True
    elif prev >= _MIN_NORMAL:
        relative = (current - prev) / (current + prev)
        if relative >= SMALL_DELTA_TOLERANCE:  # False for NaN (overflow): decided below
            return True
    return not _almost_equal(prev, current, SMALL_DELTA_TOLERANCE)


def prepare_buckets(buckets: Sequence[tuple[float, float]]) -> Buckets | None:
    """Sort, coalesce and make monotonic exactly as ``bucketQuantile`` does before searching.

    Returns None when Prometheus would answer NaN whatever ``q`` is: no ``+Inf`` bucket, fewer
    than two buckets after coalescing, or zero observations. Splitting this from the search lets
    one histogram serve several quantiles without re-sorting.
    """
    if not buckets:
        return None
    # Plain tuple order sorts by ``le`` first; ties in ``le`` are summed below, so their order
    # (by count) cannot change the result.
    ordered = sorted(buckets)
    if ordered[-1][0] != math.inf:
        return None
    coalesced: list[list[float]] = []
    for le, count in ordered:
        if coalesced and coalesced[-1][0] == le:
            coalesced[-1][1] += count
        else:
            coalesced.append([le, count])
    # ensureMonotonicAndIgnoreSmallDeltas: ``prev`` is the last *accepted* count; a neighbour
    # that is lower, or equal up to float noise, is replaced by it.
    prev = coalesced[0][1]
    for bucket in coalesced[1:]:
        current = bucket[1]
        if current > prev and _clearly_greater(prev, current):
            prev = current
        elif current != prev:
            bucket[1] = prev
    if len(coalesced) < 2 or coalesced[-1][1] == 0:
        return None
    return tuple((le, count) for le, count in coalesced)


def _outside_unit_interval(q: float) -> float | None:
    """Prometheus' answer for a ``q`` that is NaN or outside [0, 1]; None for a usable ``q``."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    return None


def quantile_of_prepared(q: float, buckets: Buckets | None) -> float:
    """The ``q`` quantile of buckets already passed through :func:`prepare_buckets`."""
    special = _outside_unit_interval(q)
    if special is not None:
        return special
    if buckets is None:
        return math.nan
    last = len(buckets) - 1
    rank = q * buckets[last][1]
    # sort.Search over [0, last): first index whose cumulative count reaches the rank.
    lo, hi = 0, last
    while lo < hi:
        mid = (lo + hi) // 2
        if buckets[mid][1] >= rank:
            hi = mid
        else:
            lo = mid + 1
    b = lo
    if b == last:
        return buckets[last - 1][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start = 0.0
    end, count = buckets[b]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    # Go divides 0/0 into NaN (q=0 with an empty first bucket); Python would raise.
    fraction = rank / count if count != 0 else math.nan
    return start + (end - start) * fraction


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative ``(le, count)`` buckets, exactly.

    NaN when there is nothing to compute (no ``+Inf`` bucket, < 2 buckets, no observations);
    ``-inf``/``+inf`` for ``q`` below 0 / above 1.
    """
    special = _outside_unit_interval(q)
    if special is not None:
        return special
    return quantile_of_prepared(q, prepare_buckets(buckets))


def counter_increase(old: float | None, new: float) -> float:
    """Increase of a counter between two readings; a decrease is a reset, counted from zero.

    ``old=None`` means the counter is known to have started from zero since (a restart), so the
    whole ``new`` value is the increase. Never negative for non-negative counters.
    """
    if old is None or new < old:
        return new
    return new - old


def histogram_increase(old: Histogram | None, new: Histogram) -> Histogram:
    """Per-bucket increase from ``old`` to ``new``; a reset yields ``new`` itself.

    A reset is any sign that the process started again: the bucket edges changed (they are fixed
    for a process's life), or some bucket holds fewer observations of its own than before, i.e.
    the cumulative increase would go down from one edge to the next (this also covers a lower
    count). A restart that ends with the same total but differently spread is caught that way too.
    Treating the histogram as one unit, as Prometheus does for native histograms, keeps the result
    a valid cumulative histogram; Prometheus' classic per-series detection can differ from this
    only inside a window that spans a restart.
    """
    if old is None or new.count < old.count or old.edges != new.edges:
        return new
    deltas: list[float] = []
    previous_delta = 0.0
    for old_count, new_count in zip(old.counts, new.counts, strict=True):
        delta = new_count - old_count
        if delta < previous_delta:
            return new
        deltas.append(delta)
        previous_delta = delta
    return Histogram.from_columns(
        new.edges, deltas, count=new.count - old.count, sum=new.sum - old.sum
    )


def merge_histograms(histograms: Sequence[Histogram]) -> Histogram | None:
    """Sum histograms bucket by bucket (PromQL ``sum by (le)``); None for an empty input.

    Edges are read from the data. When the inputs disagree on edges (engines started with
    different ``--custom-histogram-buckets``), the sum is taken over the edges they all share:
    a cumulative count is only exact at an edge every input has, so the result is coarser but never
    wrong. ``+Inf`` is always shared, so the worst case is a histogram with only a ``+Inf`` bucket,
    whose quantiles are NaN.
    """
    if not histograms:
        return None
    first = histograms[0]
    if len(histograms) == 1:
        return first
    edges = first.edges
    if all(other.edges == edges for other in histograms[1:]):
        counts = [0.0] * len(edges)
        for histogram in histograms:
            for index, count in enumerate(histogram.counts):
                counts[index] += count
        merged_edges, merged_counts = edges, counts
    else:
        shared = set(edges).intersection(*(other.edges for other in histograms[1:]))
        totals = dict.fromkeys(sorted(shared), 0.0)
        for histogram in histograms:
            for le, count in zip(histogram.edges, histogram.counts, strict=True):
                if le in totals:
                    totals[le] += count
        merged_edges, merged_counts = tuple(totals), list(totals.values())
    # Plain left-to-right sums (not fsum) so ``count`` rounds exactly like the +Inf bucket.
    total_count = 0.0
    total_sum = 0.0
    for histogram in histograms:
        total_count += histogram.count
        total_sum += histogram.sum
    return Histogram.from_columns(merged_edges, merged_counts, count=total_count, sum=total_sum)
