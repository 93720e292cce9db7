"""Durations as people type them: seconds (``90``, ``2.5``) or Prometheus form (``5m``, ``1h30m``).

One parser for every place a duration is set (settings, ``alert_for``, ``top``/``demo`` flags),
so ``5m`` means the same thing in a rule file, a flag and the YAML config.
"""

from __future__ import annotations

import math
import re

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+$")
EXPECTED = "seconds or a duration like 30s, 5m, 1h30m"


def parse_seconds(value: object) -> float:
    """``value`` in seconds; numbers pass through. ValueError says what is expected."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("expected a finite number of seconds") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not _WHOLE.match(text):
                raise ValueError(f"expected {EXPECTED}") from None
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    else:
        raise ValueError(f"expected {EXPECTED}")  # noqa: TRY004 - ConfigError is a ValueError
    if not math.isfinite(seconds):
        raise ValueError("expected a finite number of seconds")
    return seconds


def seconds_flag(text: str) -> float:
    """argparse ``type=`` for a duration flag (``--interval 2``, ``--duration 5m``)."""
    import argparse

    try:
        seconds = parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"expected {EXPECTED} >= 0")
    return seconds
