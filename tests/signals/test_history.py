"""The bounded snapshot history: ordering, expiry and window selection."""

from __future__ import annotations

import pytest

from sidecar.signals.history import History
from tests.signals.synthetic import snapshot


def filled(times: list[float], max_age: float = 300.0) -> History:
    """A history with one empty snapshot at each monotonic time."""
    history = History(max_age)
    for t in times:
        history.append(snapshot(t))
    return history


def test_empty_history() -> None:
    """Nothing scraped yet: no latest, no window, length 0."""
    history = History(60.0)
    assert history.latest() is None
    assert history.window(60.0) is None
    assert len(history) == 0
    assert history.snapshots() == ()


def test_drops_snapshots_older_than_max_age() -> None:
    """Only snapshots within max_age of the newest are kept; the boundary itself is kept."""
    history = filled([0.0, 10.0, 20.0, 30.0], max_age=20.0)
    assert [s.monotonic for s in history.snapshots()] == [10.0, 20.0, 30.0]
    history.append(snapshot(100.0))
    assert [s.monotonic for s in history.snapshots()] == [100.0]


def test_ignores_snapshots_not_newer_than_latest() -> None:
    """A late or duplicate scrape does not reorder the history."""
    history = filled([10.0, 20.0])
    history.append(snapshot(15.0))
    history.append(snapshot(20.0))
    assert [s.monotonic for s in history.snapshots()] == [10.0, 20.0]
    latest = history.latest()
    assert latest is not None
    assert latest.monotonic == 20.0


def test_window_picks_first_inside_and_latest() -> None:
    """The window starts at the first snapshot at or after now - seconds (inclusive)."""
    history = filled([0.0, 5.0, 10.0, 15.0, 20.0])
    window = history.window(10.0)
    assert window is not None
    assert (window[0].monotonic, window[1].monotonic) == (10.0, 20.0)
    window = history.window(12.0)
    assert window is not None
    assert window[0].monotonic == 10.0


def test_window_needs_two_snapshots() -> None:
    """A single snapshot in the window cannot give a rate."""
    history = filled([0.0, 20.0])
    assert history.window(10.0) is None
    assert history.window(20.0) is not None


def test_window_as_of_an_earlier_now() -> None:
    """With an explicit now, later snapshots are left out."""
    history = filled([0.0, 5.0, 10.0, 15.0, 20.0])
    window = history.window(10.0, now=12.0)
    assert window is not None
    assert (window[0].monotonic, window[1].monotonic) == (5.0, 10.0)
    assert [s.monotonic for s in history.since(100.0, now=7.0)] == [0.0, 5.0]


def test_window_after_scrapes_stopped() -> None:
    """A now far past the newest snapshot finds nothing in a short window."""
    history = filled([0.0, 5.0, 10.0])
    assert history.window(30.0, now=100.0) is None


@pytest.mark.parametrize("max_age", [0.0, -1.0, float("nan"), float("inf")])
def test_rejects_bad_max_age(max_age: float) -> None:
    """max_age must be a positive finite number of seconds."""
    with pytest.raises(ValueError, match="max_age"):
        History(max_age)


def test_snapshots_is_a_stable_copy() -> None:
    """Appending after snapshots() does not change the sequence already returned."""
    history = filled([0.0, 5.0])
    before = history.snapshots()
    history.append(snapshot(10.0))
    assert len(before) == 2
    assert len(history) == 3
