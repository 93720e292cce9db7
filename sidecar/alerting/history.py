"""Counter readings over time, so the engine can take increases over windows it chooses.

The signals module keeps ``history_seconds`` (15 minutes by default) of whole snapshots, enough
for 1m/5m quantiles but not for the 1h..3d windows of burn-rate alerts. The engine therefore
records the few counters it needs (SLO good/total counts, the sidecar's own counters) once per
evaluation: a fine tier keeps every reading for ``fine_span`` seconds and a coarse tier one
reading per ``coarse_step`` seconds for up to ``max_span``. Three days of one counter cost a few
thousand floats instead of every snapshot.

Resets (a restarted vLLM) are folded in as Prometheus does: a drop in value means the counter
started again from zero, so the stored value is the running total across restarts.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable

FINE_SPAN = 2 * 3600.0
COARSE_STEP = 60.0


class CounterSeries:
    """Reset-adjusted readings of one counter, thinned with age (see module docstring)."""

    __slots__ = ("_coarse", "_fine", "_last_raw", "_max_span", "_offset")

    def __init__(self, max_span: float) -> None:
        self._max_span = max_span
        self._fine: deque[tuple[float, float]] = deque()
        self._coarse: deque[tuple[float, float]] = deque()
        self._last_raw: float | None = None
        self._offset = 0.0

    def add(self, now: float, raw: float) -> None:
        """Record a reading taken at monotonic time ``now``."""
        if self._last_raw is not None and raw < self._last_raw:
            self._offset += self._last_raw
        self._last_raw = raw
        point = (now, raw + self._offset)
        self._fine.append(point)
        while self._fine and self._fine[0][0] < now - min(FINE_SPAN, self._max_span):
            self._fine.popleft()
        if self._max_span > FINE_SPAN and (
            not self._coarse or now - self._coarse[-1][0] >= COARSE_STEP
        ):
            self._coarse.append(point)
            while self._coarse and self._coarse[0][0] < now - self._max_span:
                self._coarse.popleft()

    def increase(self, window: float, now: float) -> float | None:
        """Increase from the oldest reading inside ``(now - window, now]`` to the newest.

        None with fewer than two readings in the window. Unlike ``increase()`` in PromQL there
        is no extrapolation to the window's edges; ratios of two counters read at the same
        moments (every use here) come out the same either way.
        """
        if not self._fine:
            return None
        start = now - window
        tier = self._fine if self._fine[0][0] <= start or not self._coarse else self._coarse
        index = bisect.bisect_left(tier, (start, float("-inf")))
        if index >= len(tier):
            return None
        first_time, first_value = tier[index]
        last_time, last_value = self._fine[-1]
        if last_time <= first_time:
            return None
        return last_value - first_value

    def __len__(self) -> int:
        return len(self._fine) + len(self._coarse)


class CounterHistory:
    """Many :class:`CounterSeries` by key; series not refreshed for ``max_span`` are dropped."""

    def __init__(self) -> None:
        self._series: dict[Hashable, CounterSeries] = {}
        self._seen: dict[Hashable, float] = {}

    def add(self, key: Hashable, now: float, raw: float, *, max_span: float = FINE_SPAN) -> None:
        """Record one reading of the counter ``key``."""
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = CounterSeries(max_span)
        series.add(now, raw)
        self._seen[key] = now

    def increase(self, key: Hashable, window: float, now: float) -> float | None:
        """The counter's increase over the window, None without two readings in it."""
        series = self._series.get(key)
        return None if series is None else series.increase(window, now)

    def forget_stale(self, now: float, max_age: float) -> None:
        """Drop series that were last read more than ``max_age`` seconds ago."""
        for key in [key for key, seen in self._seen.items() if now - seen > max_age]:
            del self._series[key]
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._series)
