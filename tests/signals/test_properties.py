"""Properties that must hold for any histogram or counter history (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import assume, given
from hypothesis import strategies as st

from sidecar.signals.derive import WINDOWS, derive
from sidecar.signals.history import History
from sidecar.signals.quantile import (
    counter_increase,
    histogram_increase,
    histogram_quantile,
    prepare_buckets,
)
from sidecar.signals.windowed import counter_window_increase
from sidecar.snapshot import Histogram
from tests.signals.synthetic import INF, Engine, scrape

COUNTS = st.integers(min_value=0, max_value=10_000).map(float)
QS = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def bucket_lists(draw: st.DrawFn) -> tuple[tuple[float, float], ...]:
    """Cumulative buckets with distinct sorted edges (some may be <= 0) ending in +Inf."""
    edges = draw(
        st.lists(
            st.integers(min_value=-50, max_value=500).map(lambda n: n / 10),
            min_size=1,
            max_size=25,
            unique=True,
        )
    )
    per_bucket = draw(st.lists(COUNTS, min_size=len(edges) + 1, max_size=len(edges) + 1))
    total = 0.0
    buckets = []
    for le, count in zip([*sorted(edges), INF], per_bucket, strict=True):
        total += count
        buckets.append((le, total))
    return tuple(buckets)


def histogram_of(buckets: tuple[tuple[float, float], ...]) -> Histogram:
    """A Histogram over cumulative buckets."""
    return Histogram(buckets=buckets, count=buckets[-1][1], sum=0.0)


@given(bucket_lists(), QS, QS)
def test_quantile_monotonic_in_q(
    buckets: tuple[tuple[float, float], ...], a: float, b: float
) -> None:
    """A higher q never gives a lower quantile."""
    low, high = sorted((a, b))
    v_low, v_high = histogram_quantile(low, buckets), histogram_quantile(high, buckets)
    assume(not math.isnan(v_low) and not math.isnan(v_high))
    assert v_low <= v_high + 1e-12 * max(1.0, abs(v_high))


@given(bucket_lists(), QS)
def test_quantile_within_the_bucket_holding_the_rank(
    buckets: tuple[tuple[float, float], ...], q: float
) -> None:
    """The answer lies between the edges of the first bucket whose count reaches the rank."""
    value = histogram_quantile(q, buckets)
    total = buckets[-1][1]
    if total == 0:
        assert math.isnan(value)
        return
    assume(not math.isnan(value))  # q = 0 with an empty first bucket is 0/0 in Prometheus too
    rank = q * total
    index = (
        next(i for i, (_, count) in enumerate(buckets[:-1]) if count >= rank)
        if any(count >= rank for _, count in buckets[:-1])
        else len(buckets) - 1
    )
    if index == len(buckets) - 1:
        assert value == buckets[-2][0]
        return
    upper = buckets[index][0]
    lower = buckets[index - 1][0] if index > 0 else min(0.0, upper)
    assert lower - 1e-12 <= value <= upper + 1e-12 * max(1.0, abs(upper))


@given(bucket_lists(), QS, st.floats(min_value=1e-6, max_value=1e6))
def test_quantile_is_scale_invariant(
    buckets: tuple[tuple[float, float], ...], q: float, factor: float
) -> None:
    """Dividing every bucket by the window (a rate) leaves the quantile as it was."""
    scaled = tuple((le, count * factor) for le, count in buckets)
    plain, rated = histogram_quantile(q, buckets), histogram_quantile(q, scaled)
    assume(not math.isnan(plain))
    assume(all(c != q * buckets[-1][1] for _, c in buckets))  # a rank on an edge may round apart
    assert math.isclose(plain, rated, rel_tol=1e-9, abs_tol=1e-9)


@given(bucket_lists())
def test_prepared_buckets_are_monotonic(buckets: tuple[tuple[float, float], ...]) -> None:
    """After preparation counts never decrease, whatever order they came in."""
    prepared = prepare_buckets(tuple(reversed(buckets)))
    if prepared is not None:
        counts = [count for _, count in prepared]
        assert counts == sorted(counts)


@given(st.one_of(st.none(), COUNTS), COUNTS)
def test_counter_increase_never_negative(old: float | None, new: float) -> None:
    """Whatever the two readings, the increase is between 0 and the new value."""
    assert 0.0 <= counter_increase(old, new) <= new


@given(bucket_lists(), st.lists(COUNTS, min_size=26, max_size=26))
def test_histogram_increase_is_a_valid_histogram(
    buckets: tuple[tuple[float, float], ...], per_bucket_new: list[float]
) -> None:
    """Reset or not, the increase has non-negative, non-decreasing buckets and +Inf == count."""
    old = histogram_of(buckets)
    total = 0.0
    new_buckets = []
    for (le, _), count in zip(buckets, per_bucket_new, strict=False):
        total += count
        new_buckets.append((le, total))
    increase = histogram_increase(old, histogram_of(tuple(new_buckets)))
    counts = [count for _, count in increase.buckets]
    assert all(count >= 0 for count in counts)
    assert counts == sorted(counts)
    assert counts[-1] == increase.count


@given(
    st.lists(st.one_of(st.none(), COUNTS), min_size=1, max_size=40),
    st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_window_increase_never_negative(values: list[float | None], restarts: list[bool]) -> None:
    """Any mix of resets, restarts and gaps gives a non-negative increase (or None)."""
    increase = counter_window_increase(values, restarts[: len(values)])
    assert increase is None or increase >= 0.0


@given(st.lists(COUNTS, min_size=2, max_size=40))
def test_window_increase_without_reset_is_last_minus_first(values: list[float]) -> None:
    """A counter that only rises increases by exactly last - first."""
    rising = sorted(values)
    assert counter_window_increase(rising, [False] * len(rising)) == rising[-1] - rising[0]


@given(st.lists(st.tuples(COUNTS, st.booleans()), min_size=2, max_size=30))
def test_derived_rates_never_negative(readings: list[tuple[float, bool]]) -> None:
    """Counters that jump around and restart never yield a negative rate in derive()."""
    history = History(900.0)
    start = 1.0
    for index, (value, restart) in enumerate(readings):
        start += 1.0 if restart else 0.0
        engine = Engine(prompt_tokens=value, finished={"stop": value, "error": value / 2})
        history.append(scrape(index * 5.0, {"0": engine}, start_time=start))
    for target in derive(history, min_requests_for_ratio=0.0).targets:
        for window in WINDOWS:
            for rate in (
                target.prompt_tokens_per_second[window],
                target.requests_per_second[window],
            ):
                assert rate is not None
                assert rate >= 0.0
            ratio = target.error_ratio[window]
            assert ratio is None or 0.0 <= ratio <= 1.0
