"""Straight-line trends over a gauge's recent readings: queue growth and KV-cache time-to-full.

Ordinary least squares rather than "last minus first": one noisy reading at either end of the
window cannot flip the sign of the trend. Times are centred on their mean before summing so that
large monotonic clock values (days of uptime) do not cost precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_TREND_POINTS = 3
"""Two points always fit a line exactly; a trend needs at least three to mean anything."""


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope (value units per second) of the OLS line through ``(time, value)`` points.

    None with fewer than :data:`MIN_TREND_POINTS` points or when all times are equal.
    """
    if len(points) < MIN_TREND_POINTS:
        return None
    mean_t = math.fsum(t for t, _ in points) / len(points)
    mean_v = math.fsum(v for _, v in points) / len(points)
    spread = math.fsum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    covariance = math.fsum((t - mean_t) * (v - mean_v) for t, v in points)
    return covariance / spread


def seconds_to_full(latest: float | None, slope: float | None, full: float = 1.0) -> float | None:
    """Seconds until ``latest`` reaches ``full`` at ``slope`` per second.

    0 when already at or past ``full`` (even without a trend: it is full now); None when there is
    no reading, no trend, or the trend is flat or falling.
    """
    if latest is None:
        return None
    if latest >= full:
        return 0.0
    if slope is None or slope <= 0 or not math.isfinite(slope):
        return None
    return (full - latest) / slope
