"""A bounded, time-ordered history of snapshots: the only state the signal functions read.

Time is ``Snapshot.monotonic`` throughout, so a wall-clock jump can neither reorder the history nor
produce a bogus rate. The history keeps snapshots strictly increasing in monotonic time; a snapshot
that is not newer than the newest one (a late or duplicate scrape) is ignored rather than inserted,
because two readings at the same instant would give a zero-length interval.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from sidecar.snapshot import Snapshot


class History:
    """Bounded ring of snapshots; anything older than ``max_age`` seconds before the newest goes."""

    __slots__ = ("_max_age", "_snapshots", "_times")

    def __init__(self, max_age: float) -> None:
        if not math.isfinite(max_age) or max_age <= 0:
            msg = f"History max_age must be a positive number of seconds, got {max_age!r}"
            raise ValueError(msg)
        self._max_age = max_age
        self._snapshots: list[Snapshot] = []
        self._times: list[float] = []

    @property
    def max_age(self) -> float:
        """How many seconds of history are kept behind the newest snapshot."""
        return self._max_age

    def append(self, snapshot: Snapshot) -> None:
        """Add the newest snapshot and drop those now older than ``max_age``.

        A snapshot whose monotonic time is not after the newest one is ignored.
        """
        if self._times and snapshot.monotonic <= self._times[-1]:
            return
        self._snapshots.append(snapshot)
        self._times.append(snapshot.monotonic)
        expired = bisect_left(self._times, snapshot.monotonic - self._max_age)
        if expired:
            del self._snapshots[:expired]
            del self._times[:expired]

    def latest(self) -> Snapshot | None:
        """The newest snapshot, or None when nothing has been scraped yet."""
        return self._snapshots[-1] if self._snapshots else None

    def since(self, seconds: float, now: float | None = None) -> Sequence[Snapshot]:
        """Snapshots with ``now - seconds <= monotonic <= now``, oldest first.

        ``now`` defaults to the newest snapshot's monotonic time. Snapshots after ``now`` are left
        out so that evaluating "as of" an earlier instant sees only what existed then.
        """
        if not self._snapshots:
            return ()
        end = self._times[-1] if now is None else now
        first = bisect_left(self._times, end - seconds)
        last = bisect_right(self._times, end)
        return tuple(self._snapshots[first:last])

    def window(self, seconds: float, now: float | None = None) -> tuple[Snapshot, Snapshot] | None:
        """(first snapshot at or after ``now - seconds``, last one at or before ``now``).

        None when fewer than two snapshots fall in the window, since no rate can come from one.
        """
        inside = self.since(seconds, now)
        if len(inside) < 2:
            return None
        return inside[0], inside[-1]

    def __len__(self) -> int:
        return len(self._snapshots)

    def snapshots(self) -> Sequence[Snapshot]:
        """Every retained snapshot, oldest first (a copy: appending later does not change it)."""
        return tuple(self._snapshots)
