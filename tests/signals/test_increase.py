"""Increases across scrapes: counter resets, histogram deltas, engine sums and window walks."""

from __future__ import annotations

from sidecar.signals.quantile import counter_increase, histogram_increase, merge_histograms
from sidecar.signals.windowed import (
    columns,
    counter_window_increase,
    histogram_window_increase,
    restart_flags,
)
from sidecar.snapshot import Histogram
from tests.signals.synthetic import INF, histogram, key, snapshot

EDGES = (0.1, 1.0, INF)


def test_counter_increase_plain_and_reset() -> None:
    """A rise is the difference; a drop is a restart, so the new value is the increase."""
    assert counter_increase(10.0, 25.0) == 15.0
    assert counter_increase(10.0, 10.0) == 0.0
    assert counter_increase(100.0, 7.0) == 7.0
    assert counter_increase(None, 7.0) == 7.0


def test_histogram_increase_subtracts_bucket_by_bucket() -> None:
    """Deltas per bucket, count and sum."""
    old = histogram(EDGES, [1, 2, 3], total=4.0)
    new = histogram(EDGES, [2, 5, 3], total=9.5)
    increase = histogram_increase(old, new)
    assert increase.buckets == ((0.1, 1.0), (1.0, 4.0), (INF, 4.0))
    assert (increase.count, increase.sum) == (4.0, 5.5)


def test_histogram_increase_reset_returns_new() -> None:
    """Count down, a bucket losing observations, or new edges: the new histogram is the increase."""
    old = histogram(EDGES, [5, 5, 5], total=10.0)
    fewer = histogram(EDGES, [1, 1, 1], total=1.0)
    assert histogram_increase(old, fewer) is fewer
    shifted = histogram(EDGES, [4, 7, 5], total=12.0)  # le=0.1 bucket went down, count went up
    assert histogram_increase(old, shifted) is shifted
    other_edges = histogram((0.2, 1.0, INF), [6, 6, 6], total=20.0)
    assert histogram_increase(old, other_edges) is other_edges
    moved = histogram(EDGES, [5, 6, 4], total=10.0)  # same count, one observation moved down
    assert histogram_increase(old, moved) is moved
    longer = histogram((0.1, 0.5, 1.0, INF), [5, 1, 5, 5], total=20.0)
    assert histogram_increase(old, longer) is longer
    assert histogram_increase(None, old) is old


def test_merge_same_edges_sums_buckets() -> None:
    """Engines with the same edges add bucket by bucket (sum by le)."""
    merged = merge_histograms([histogram(EDGES, [1, 2, 3], 1.5), histogram(EDGES, [4, 0, 1], 2.5)])
    assert merged is not None
    assert merged.buckets == ((0.1, 5.0), (1.0, 7.0), (INF, 11.0))
    assert (merged.count, merged.sum) == (11.0, 4.0)


def test_merge_different_edges_uses_shared_edges() -> None:
    """Disagreeing edges: only the edges every input has survive, with exact sums."""
    a = histogram((0.1, 0.5, 1.0, INF), [1, 1, 1, 1], 1.0)
    b = histogram((0.2, 1.0, INF), [2, 2, 2], 2.0)
    merged = merge_histograms([a, b])
    assert merged is not None
    assert merged.buckets == ((1.0, 3.0 + 4.0), (INF, 4.0 + 6.0))
    assert merged.count == 10.0


def test_merge_nothing_or_one() -> None:
    """No input gives None; one input is returned as is."""
    only = histogram(EDGES, [1, 1, 1])
    assert merge_histograms([]) is None
    assert merge_histograms([only]) is only


def test_counter_walk_counts_reset_in_the_middle() -> None:
    """A restart mid-window whose new value overtook the old one is still seen (unlike new-old)."""
    values: list[float | None] = [100.0, 110.0, 5.0, 130.0]
    restarts = [False] * 4
    # 10 before the restart, 5 counted from zero, then 125 more.
    assert counter_window_increase(values, restarts) == 10.0 + 5.0 + 125.0
    assert counter_window_increase(values, restarts, start=2) == 125.0


def test_counter_walk_start_time_change_is_a_reset() -> None:
    """A changed process start time is a reset even when the value went up."""
    snaps = [
        snapshot(0.0, start_time=1000.0),
        snapshot(5.0, start_time=1000.0),
        snapshot(10.0, start_time=2000.0),
    ]
    restarts = restart_flags(snaps)
    assert restarts == [False, False, True]
    assert counter_window_increase([3.0, 4.0, 50.0], restarts) == 1.0 + 50.0


def test_counter_walk_unknown_start_time_is_not_a_reset() -> None:
    """Missing start times (multiprocess vLLM) leave resets to value decreases."""
    snaps = [snapshot(0.0, start_time=None), snapshot(5.0, start_time=2000.0)]
    assert restart_flags(snaps) == [False, False]


def test_counter_walk_series_appearing_and_vanishing() -> None:
    """A series new without a restart gives nothing for its first reading; a gap is skipped."""
    no_restarts = [False] * 5
    assert counter_window_increase([None, None, 8.0, 10.0, 13.0], no_restarts) == 5.0
    assert counter_window_increase([1.0, 2.0, None, 10.0, 13.0], no_restarts) == 1.0 + 3.0
    assert counter_window_increase([None, None, None, None, 13.0], no_restarts) is None
    assert counter_window_increase([None] * 5, no_restarts) is None
    # Appearing right after a restart: it counted from zero inside the window.
    assert counter_window_increase([None, 8.0, 10.0], [False, True, False]) == 10.0


def test_counter_walk_ignores_restart_before_window_start() -> None:
    """A restart between the window's first snapshot and the one before it is outside the window."""
    assert counter_window_increase([50.0, 3.0, 4.0], [False, True, False], start=1) == 1.0


def test_histogram_walk_without_reset_equals_endpoint_difference() -> None:
    """No reset: the walk's result is exactly last - first."""
    hs: list[Histogram | None] = [
        histogram(EDGES, [1, 1, 1], 1.0),
        histogram(EDGES, [2, 1, 3], 2.0),
        histogram(EDGES, [4, 2, 3], 3.0),
    ]
    walked = histogram_window_increase(hs, [False] * 3)
    assert walked is not None
    assert walked.buckets == ((0.1, 3.0), (1.0, 4.0), (INF, 6.0))
    assert walked.sum == 2.0


def test_histogram_walk_with_reset() -> None:
    """Before the reset: last - first; after: everything since zero."""
    hs: list[Histogram | None] = [
        histogram(EDGES, [10, 10, 10], 30.0),
        histogram(EDGES, [11, 10, 10], 31.0),
        histogram(EDGES, [0, 1, 0], 0.5),  # restarted
        histogram(EDGES, [0, 2, 1], 3.0),
    ]
    walked = histogram_window_increase(hs, [False] * 4)
    assert walked is not None
    assert walked.buckets == ((0.1, 1.0), (1.0, 3.0), (INF, 4.0))
    assert walked.sum == 1.0 + 3.0


def test_histogram_walk_needs_two_readings() -> None:
    """One reading without a restart carries no increase information."""
    h = histogram(EDGES, [1, 1, 1])
    assert histogram_window_increase([None, None, h], [False] * 3) is None
    assert histogram_window_increase([None, h], [False, True]) is h


def test_columns_match_equal_keys_across_snapshots() -> None:
    """Each key gets one slot per table, matched by value (not identity), None where absent."""
    tables = [{key(engine="0"): 1.0}, None, {key(engine="0"): 3.0, key(engine="1"): 9.0}]
    got = columns(tables, [key(engine="0"), key(engine="2")])
    assert got == {key(engine="0"): [1.0, None, 3.0], key(engine="2"): [None, None, None]}
