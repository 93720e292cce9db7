"""Time ranges and comparison windows as reviewers type them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from sidecar.samples.timespec import (
    TimeRange,
    TimeSpecError,
    bounded,
    parse_instant,
    parse_range,
)
from sidecar.samples.windows import parse_window

NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC).timestamp()


def _at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_instants_in_every_accepted_form() -> None:
    """now, relative offsets, dates, date-times with and without offsets (naive = UTC)."""
    assert parse_instant("now", NOW) == NOW
    assert parse_instant("-7d", NOW) == NOW - 7 * 86400
    assert parse_instant("-90m", NOW) == NOW - 5400
    assert parse_instant("now-12h", NOW) == NOW - 12 * 3600
    assert parse_instant("-2w", NOW) == NOW - 14 * 86400
    assert parse_instant("2026-11-01", NOW) == _at(2026, 11, 1)
    assert parse_instant("2026-11-01", NOW, end=True) == _at(2026, 11, 2)
    assert parse_instant("2026-11-01T05:30", NOW) == _at(2026, 11, 1, 5, 30)
    assert parse_instant("2026-11-01T05:30:00Z", NOW) == _at(2026, 11, 1, 5, 30)
    assert parse_instant("2026-11-01T07:30:00+02:00", NOW) == _at(2026, 11, 1, 5, 30)


@pytest.mark.parametrize("text", ["yesterday", "-7x", "2026-13-01", "7d", "2026-11-01T25:00"])
def test_bad_instants_are_named(text: str) -> None:
    """Anything else is an error that quotes what was typed."""
    with pytest.raises(TimeSpecError, match=r"got|not a valid"):
        parse_instant(text, NOW)


def test_ranges_are_half_open_and_a_date_end_includes_its_day() -> None:
    """``A..B`` with a date end covers that whole day; ``last:`` ends now; ``all`` is open."""
    week = parse_range("2026-11-01..2026-11-07", NOW)
    assert week == TimeRange(_at(2026, 11, 1), _at(2026, 11, 8))
    assert week.contains(_at(2026, 11, 7, 23, 59))
    assert not week.contains(_at(2026, 11, 8))
    assert parse_range("last:7d", NOW) == TimeRange(NOW - 7 * 86400, NOW)
    assert parse_range("-14d..-7d", NOW) == TimeRange(NOW - 14 * 86400, NOW - 7 * 86400)
    assert parse_range("now-14d..now-7d", NOW) == parse_range("-14d..-7d", NOW)
    assert parse_range("all", NOW) == TimeRange()
    assert parse_range("-1d..", NOW) == TimeRange(NOW - 86400, None)
    assert parse_range("2026-11-05", NOW) == TimeRange(_at(2026, 11, 5), _at(2026, 11, 6))
    assert bounded(None, "2026-11-05", NOW) == TimeRange(None, _at(2026, 11, 6))


def test_backwards_or_malformed_ranges_are_refused() -> None:
    """An end before the start, or words that are no range, fail with a reason."""
    with pytest.raises(TimeSpecError, match="before it starts"):
        parse_range("-7d..-14d", NOW)
    with pytest.raises(TimeSpecError, match="expected"):
        parse_range("last week", NOW)
    with pytest.raises(TimeSpecError, match="duration"):
        parse_range("last:0d", NOW)


def test_partition_overlap_and_days_of_a_range() -> None:
    """A range maps to the UTC days it touches and the hour partitions that overlap it."""
    window = parse_range("2026-11-01T22:30..2026-11-02T01:00", NOW)
    assert window.days(NOW) == [date(2026, 11, 1), date(2026, 11, 2)]
    assert window.overlaps_hour(date(2026, 11, 1), 22)
    assert not window.overlaps_hour(date(2026, 11, 1), 21)
    assert window.overlaps_hour(date(2026, 11, 2), 0)
    assert not window.overlaps_hour(date(2026, 11, 2), 1)
    assert TimeRange().days(NOW) is None


def test_windows_pin_deployment_versions_and_model() -> None:
    """``RANGE@pin=value,...`` pins the deployment label, versions and model; SQL follows."""
    window = parse_window("last:7d@deployment=green,vllm=0.33.0@model=Meta/Llama 3", NOW)
    assert window.pins == {"deployment": "green", "vllm": "0.33.0", "model": "Meta/Llama 3"}
    where, params = window.sql_filter()
    assert "deployment = ?" in where
    assert "vllm_version = ?" in where
    assert params == [NOW - 7 * 86400, NOW, "green", "Meta/Llama 3", "meta-llama-3", "0.33.0"]
    assert parse_window("all@deployment=blue", NOW).with_model("m").pins["model"] == "m"
    assert "deployment=green" in window.describe()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("all@colour=blue", "unknown pin"),
        ("all@deployment", "expected @name=value"),
        ("all@deployment=a,deployment=b", "given twice"),
    ],
)
def test_bad_pins_are_named(text: str, message: str) -> None:
    """Unknown, empty or contradictory pins are refused."""
    with pytest.raises(TimeSpecError, match=message):
        parse_window(text, NOW)
