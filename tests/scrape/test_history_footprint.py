"""Snapshots are kept by the hundred (15 minutes of scrapes per engine): they must be compact."""

from __future__ import annotations

import math

import pytest

from sidecar.scrape.parse import parse_snapshot
from sidecar.snapshot import Histogram
from tests.scrape.pages import TEXT, V1_PAGE


def test_repeated_scrapes_share_keys_edges_and_names() -> None:
    first, second = (
        parse_snapshot(V1_PAGE.read_bytes(), TEXT, timestamp=i, monotonic=i) for i in (0, 1)
    )
    assert first.present is second.present
    for name, series in first.histograms.items():
        for key, histogram in series.items():
            other_key = next(k for k in second.histograms[name] if k == key)
            assert other_key is key
            assert second.histograms[name][key].edges is histogram.edges


def test_histogram_keeps_its_pair_interface_and_is_immutable() -> None:
    pairs = ((0.1, 1.0), (1.0, 3.0), (math.inf, 4.0))
    histogram = Histogram(buckets=pairs, count=4.0, sum=2.5)
    assert histogram.buckets == pairs
    assert histogram == Histogram.from_columns((0.1, 1.0, math.inf), [1.0, 3.0, 4.0], 4.0, 2.5)
    assert histogram != Histogram(buckets=pairs, count=4.0, sum=2.0)
    assert hash(histogram) == hash(Histogram(buckets=pairs, count=4.0, sum=2.5))
    with pytest.raises(AttributeError):
        histogram.count = 5.0
    with pytest.raises(ValueError, match=r"\+Inf"):
        Histogram(buckets=((0.1, 1.0),), count=1.0, sum=0.1)
    with pytest.raises(ValueError, match="one count per"):
        Histogram.from_columns((0.1, math.inf), [1.0], 1.0, 0.1)
