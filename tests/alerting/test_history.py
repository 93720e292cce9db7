"""Counter history: increases over windows, resets, thinning of old readings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar.alerting.history import COARSE_STEP, FINE_SPAN, CounterHistory, CounterSeries


def test_increase_over_a_window_uses_the_oldest_reading_inside_it() -> None:
    """With a reading every 15 s, a 60 s window spans four intervals."""
    series = CounterSeries(max_span=FINE_SPAN)
    for step in range(11):
        series.add(step * 15.0, step * 10.0)
    assert series.increase(60.0, now=150.0) == 40.0
    assert series.increase(1000.0, now=150.0) == 100.0  # only what exists, like a young series
    assert series.increase(5.0, now=150.0) is None  # one reading in the window


def test_a_reset_counts_the_new_value_from_zero() -> None:
    """A restarted vLLM (counter drops) adds its new value, never a negative increase."""
    series = CounterSeries(max_span=FINE_SPAN)
    for now, value in ((0, 100), (15, 130), (30, 5), (45, 25)):
        series.add(float(now), float(value))
    assert series.increase(60.0, now=45.0) == 30 + 5 + 20


def test_old_readings_are_thinned_to_one_a_minute_and_still_answer_long_windows() -> None:
    """Three days at one reading per 15 s keep only ~a few thousand points."""
    span = 3 * 86400.0
    series = CounterSeries(max_span=span + 600)
    now = 0.0
    while now <= span:
        series.add(now, now)  # one count per second
        now += 15.0
    now -= 15.0
    assert len(series) < FINE_SPAN / 15 + span / COARSE_STEP + 10
    day = series.increase(86400.0, now)
    assert day is not None
    assert abs(day - 86400.0) <= COARSE_STEP
    assert series.increase(300.0, now) == 300.0


def test_stale_series_are_forgotten() -> None:
    """A series not read for longer than max_age disappears (models that went away)."""
    history = CounterHistory()
    history.add("gone", 0.0, 1.0)
    history.add("live", 0.0, 1.0)
    history.add("live", 100.0, 2.0)
    history.forget_stale(now=100.0, max_age=50.0)
    assert len(history) == 1
    assert history.increase("gone", 100.0, 100.0) is None
    assert history.increase("live", 200.0, 100.0) == 1.0


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=2, max_size=40))
def test_increase_is_never_negative(values: list[float]) -> None:
    """Whatever the readings, resets included, an increase is >= 0."""
    series = CounterSeries(max_span=FINE_SPAN)
    for index, value in enumerate(values):
        series.add(index * 10.0, value)
    increase = series.increase(10.0 * len(values), now=10.0 * (len(values) - 1))
    assert increase is not None
    assert increase >= 0
