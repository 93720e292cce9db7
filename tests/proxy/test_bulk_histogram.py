"""The bulk-fed histogram exposes exactly what prometheus_client's own Histogram would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from sidecar.proxy.bulk_histogram import BulkHistogram
from sidecar.proxy.metrics import ITL_BUCKETS

VALUES = st.lists(
    st.one_of(
        st.sampled_from([0.0, *ITL_BUCKETS, 1e9]),
        st.floats(min_value=0, max_value=200, allow_nan=False),
    ),
    max_size=60,
)


@given(streams=st.lists(st.tuples(st.sampled_from(["a", "b"]), VALUES), max_size=5))
def test_exposition_matches_prometheus_client(streams: list[tuple[str, list[float]]]) -> None:
    """Same observations, same text: buckets (edges inclusive), sums, counts, labels."""
    reference_registry, bulk_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram(
        "gaps_seconds", "Gaps.", ["model_name"], buckets=ITL_BUCKETS, registry=reference_registry
    )
    bulk = BulkHistogram("gaps_seconds", "Gaps.", ["model_name"], ITL_BUCKETS, bulk_registry)
    for model, values in streams:
        tally = bulk.tally()
        for value in values:
            tally.add(value)
            reference.labels(model).observe(value)
        bulk.merge((model,), tally)
    assert _comments(bulk_registry) == _comments(reference_registry)
    expected = _samples(reference_registry)
    got = _samples(bulk_registry)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key  # sums may differ in float rounding


def _comments(registry: CollectorRegistry) -> list[str]:
    """The HELP and TYPE lines of the histogram family."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith("#") and "_created" not in line]


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    """Exposition lines as {series: value}, without prometheus_client's _created series."""
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("#") or "_created" in line:
            continue
        series, value = line.rsplit(" ", 1)
        samples[series] = float(value)
    return samples


def test_bad_buckets_are_refused() -> None:
    """Unsorted or huge bucket bounds are a programming error caught at declaration."""
    with pytest.raises(ValueError, match="ascending"):
        BulkHistogram("x_seconds", "X.", [], [1.0, 0.5], CollectorRegistry())
    with pytest.raises(ValueError, match="below 1e6"):
        BulkHistogram("y_seconds", "Y.", [], [1.0, 1e7], CollectorRegistry())
