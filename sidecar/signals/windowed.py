"""Increases of one series across every snapshot of a window, the way PromQL's ``increase`` sees it.

Why walk every snapshot instead of subtracting the window's endpoints: a restart in the middle of
the window can leave the newest value above the oldest one, and then ``new - old`` silently loses
everything counted before the restart. Like Prometheus, we add up each step's increase, and a step
that goes down starts again from zero.

Rules, per series and per consecutive pair of snapshots (``prev`` -> ``cur``):

* both have the series: ``cur - prev``, or ``cur`` when it is a reset (value went down, or the
  process start time differs between the two snapshots);
* only ``cur`` has it: ``cur`` when the start time changed (the series is new because vLLM
  restarted, so it counted from zero inside the window), otherwise nothing -- the series is new to
  us (an engine came up, or a lazily created label child appeared) and we cannot tell how much of
  its value was counted before the window. Prometheus ignores a series' first sample the same way;
* only ``prev`` has it: nothing (the series vanished or a scrape missed it).

The result is None when no step carried information (the series was seen fewer than twice and no
restart was observed), so "no data" never masquerades as "zero".

Series are first gathered into *columns* (one value per snapshot, None where absent) so that each
snapshot's table is read once however many windows are evaluated: a window is then a suffix of the
columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from sidecar.signals.quantile import histogram_increase, merge_histograms
from sidecar.snapshot import Histogram, SeriesKey, Snapshot

Value = TypeVar("Value", float, Histogram)


def restarted(prev: Snapshot, cur: Snapshot) -> bool:
    """True when both snapshots know vLLM's process start time and it changed between them."""
    return (
        prev.start_time is not None
        and cur.start_time is not None
        and prev.start_time != cur.start_time
    )


def restart_flags(snapshots: Sequence[Snapshot]) -> list[bool]:
    """``flags[i]``: vLLM restarted between snapshot ``i-1`` and ``i`` (``flags[0]`` is False)."""
    flags = [False] * len(snapshots)
    for index in range(1, len(snapshots)):
        flags[index] = restarted(snapshots[index - 1], snapshots[index])
    return flags


def columns(
    tables: Sequence[Mapping[SeriesKey, Value] | None], keys: Sequence[SeriesKey]
) -> dict[SeriesKey, list[Value | None]]:
    """For each of ``keys``, its value in each table (one table per snapshot), None where absent.

    Matching goes through plain tuples: hashing them is much cheaper than hashing ``SeriesKey``
    instances, and this loop runs for every series of every snapshot in the window.
    """
    by_plain: dict[tuple[str, str | None, tuple[tuple[str, str], ...]], list[Value | None]] = {}
    result: dict[SeriesKey, list[Value | None]] = {}
    for key in keys:
        column: list[Value | None] = [None] * len(tables)
        by_plain[key.model_name, key.engine, key.extra] = column
        result[key] = column
    for index, table in enumerate(tables):
        if not table:
            continue
        for key, value in table.items():
            found = by_plain.get((key.model_name, key.engine, key.extra))
            if found is not None:
                found[index] = value
    return result


def counter_window_increase(
    values: Sequence[float | None], restarts: Sequence[bool], start: int = 0
) -> float | None:
    """Increase of one counter over ``values[start:]``, or None without information.

    ``restarts[i]`` says vLLM restarted between reading ``i-1`` and ``i``; see the module rules.
    """
    total = 0.0
    informative = False
    prev: float | None = None
    for index in range(start, len(values)):
        value = values[index]
        if value is None:
            prev = None
            continue
        if prev is None:
            if restarts[index] and index > start:
                total += value
                informative = True
        else:
            total += value if restarts[index] or value < prev else value - prev
            informative = True
        prev = value
    return total if informative else None


def histogram_window_increase(
    values: Sequence[Histogram | None], restarts: Sequence[bool], start: int = 0
) -> Histogram | None:
    """Bucket-wise increase of one histogram over ``values[start:]``, or None.

    The walk only compares counts to find resets (cheap); each reset-free stretch then becomes one
    :func:`histogram_increase`, which also catches bucket decreases and edge changes.
    """
    pieces: list[Histogram] = []
    base: Histogram | None = None  # None: the stretch counts from zero (it began with a restart)
    last: Histogram | None = None
    stretch = 0
    for index in range(start, len(values)):
        current = values[index]
        if current is None:
            if last is not None and (base is None or stretch > 1):
                pieces.append(histogram_increase(base, last))
            last = None
            continue
        if last is None:
            base = None if restarts[index] and index > start else current
            stretch = 1
        elif restarts[index] or current.count < last.count:
            if base is None or stretch > 1:
                pieces.append(histogram_increase(base, last))
            base = None
            stretch = 1
        else:
            stretch += 1
        last = current
    if last is not None and (base is None or stretch > 1):
        pieces.append(histogram_increase(base, last))
    return merge_histograms(pieces)
