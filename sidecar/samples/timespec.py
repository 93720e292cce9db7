"""Points in time and time ranges as reviewers type them.

An instant is ``now``, a relative offset (``-7d``, ``-12h``, ``-30m``, ``-90s``, ``-2w``, or
``now-7d``, which needs no ``=`` after a command-line flag), a date
(``2026-11-01``, midnight UTC) or an ISO 8601 date-time (``2026-11-01T05:30``, ``...Z`` or with an
offset; without one it is UTC). A range is ``A..B`` (either side may be empty = open),
``last:7d`` (the last 7 days up to now), ``all``, or a single date (that whole UTC day). Ranges are
half-open, ``[start, end)``; a date-only *end* includes that whole day, so
``2026-11-01..2026-11-07`` is seven full days.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_RELATIVE = re.compile(r"^(?:now)?-(\d+(?:\.\d+)?)([smhdw])$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
HOUR_SECONDS = 3600.0


class TimeSpecError(ValueError):
    """A time or range the reviewer typed that cannot be understood; the message says why."""


def parse_duration(text: str) -> float:
    """``7d`` -> seconds (units s, m, h, d, w)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise TimeSpecError(f"expected a duration like 7d, 12h, 30m, got {text!r}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise TimeSpecError(f"duration must be positive, got {text!r}")
    return seconds


def parse_instant(text: str, now: float, *, end: bool = False) -> float:
    """Unix seconds for ``text``; with ``end=True`` a bare date means the end of that day."""
    value = text.strip()
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        return now - float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
    if _DATE_ONLY.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise TimeSpecError(f"not a valid date: {value!r} ({exc})") from None
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return (start + timedelta(days=1) if end else start).timestamp()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TimeSpecError(
            f"expected now, -7d, 2026-11-01 or 2026-11-01T05:00[Z], got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start, end)`` in Unix seconds; ``None`` is open on that side."""

    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise TimeSpecError(
                f"range ends ({describe_instant(self.end)}) before it starts "
                f"({describe_instant(self.start)})"
            )

    def contains(self, moment: float) -> bool:
        """Whether ``moment`` falls inside the range."""
        after_start = self.start is None or moment >= self.start
        return after_start and (self.end is None or moment < self.end)

    def overlaps(self, start: float, end: float) -> bool:
        """Whether ``[start, end)`` shares any time with this range."""
        return (self.end is None or start < self.end) and (self.start is None or end > self.start)

    def overlaps_hour(self, day: date, hour: int) -> bool:
        """Whether the partition ``dt=day/hour=hour`` may hold records inside the range."""
        begin = datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()
        return self.overlaps(begin, begin + HOUR_SECONDS)

    def days(self, now: float) -> list[date] | None:
        """The UTC days the range touches, or ``None`` when it is open at the start."""
        if self.start is None:
            return None
        last = self.end if self.end is not None else now + 86400.0
        first_day = datetime.fromtimestamp(self.start, tz=UTC).date()
        last_day = datetime.fromtimestamp(math.nextafter(last, -math.inf), tz=UTC).date()
        count = (last_day - first_day).days + 1
        return [first_day + timedelta(days=offset) for offset in range(max(count, 0))]

    def union(self, other: TimeRange) -> TimeRange:
        """The smallest range covering both."""
        start = None if self.start is None or other.start is None else min(self.start, other.start)
        end = None if self.end is None or other.end is None else max(self.end, other.end)
        return TimeRange(start, end)

    def describe(self) -> str:
        """``2026-11-01 00:00:00Z .. 2026-11-08 00:00:00Z`` (``…`` for an open side)."""
        if self.start is None and self.end is None:
            return "all time"
        left = describe_instant(self.start) if self.start is not None else "…"
        right = describe_instant(self.end) if self.end is not None else "…"
        return f"{left} .. {right}"


def describe_instant(moment: float) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SSZ``."""
    return f"{datetime.fromtimestamp(moment, tz=UTC):%Y-%m-%d %H:%M:%S}Z"


def parse_range(text: str, now: float) -> TimeRange:
    """``A..B``, ``last:7d``, ``all`` or a single date (see the module docstring)."""
    value = text.strip()
    if value in ("", "all", "*"):
        return TimeRange()
    if value.startswith("last:"):
        return TimeRange(now - parse_duration(value[5:]), now)
    if ".." in value:
        left, _, right = value.partition("..")
        start = parse_instant(left, now) if left.strip() else None
        end = parse_instant(right, now, end=True) if right.strip() else None
        return TimeRange(start, end)
    if _DATE_ONLY.match(value):
        return TimeRange(parse_instant(value, now), parse_instant(value, now, end=True))
    raise TimeSpecError(f"expected A..B, last:7d, all or a date, got {text!r}")


def bounded(since: str | None, until: str | None, now: float) -> TimeRange:
    """The range of ``--since``/``--until`` flags (either may be missing)."""
    start = parse_instant(since, now) if since else None
    end = parse_instant(until, now, end=True) if until else None
    return TimeRange(start, end)
