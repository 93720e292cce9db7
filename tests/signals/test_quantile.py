"""Hand-worked checks of histogram_quantile against Prometheus' bucketQuantile rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sidecar.signals.quantile import histogram_quantile, prepare_buckets, quantile_of_prepared
from tests.signals.synthetic import INF, TTFT_EDGES, histogram, numpy_quantile

TOLERANCE = 1e-9
SIMPLE = ((0.1, 1.0), (1.0, 3.0), (INF, 7.0))
"""1 observation <= 0.1 s, 2 more <= 1 s, 4 above 1 s."""


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.25, 0.1 + 0.9 * (0.75 / 2)),  # rank 1.75 -> bucket (0.1, 1], 0.75 of its 2 observations
        (0.1, 0.1 * 0.7),  # rank 0.7 -> first bucket, interpolated from 0
        (0.5, 1.0),  # rank 3.5 is in +Inf: the highest finite edge
        (0.99, 1.0),
    ],
)
def test_hand_worked_interpolation(q: float, expected: float) -> None:
    """Linear interpolation inside the bucket holding the rank; +Inf answers the top finite edge."""
    assert histogram_quantile(q, SIMPLE) == pytest.approx(expected, abs=TOLERANCE)


def test_all_observations_in_inf_bucket() -> None:
    """Everything above the last finite edge: every q > 0 answers that edge; q = 0 is 0/0 = NaN."""
    buckets = ((0.1, 0.0), (1.0, 0.0), (INF, 5.0))
    assert histogram_quantile(0.5, buckets) == 1.0
    assert histogram_quantile(0.99, buckets) == 1.0
    assert histogram_quantile(1.0, buckets) == 1.0
    assert math.isnan(histogram_quantile(0.0, buckets))


def test_empty_window_is_nan() -> None:
    """No observations (an idle window's increase) gives NaN, never 0."""
    assert math.isnan(histogram_quantile(0.5, ((0.1, 0.0), (1.0, 0.0), (INF, 0.0))))
    assert prepare_buckets(((0.1, 0.0), (INF, 0.0))) is None


def test_single_finite_bucket() -> None:
    """One finite bucket interpolates from 0 to its edge; q = 1 lands exactly on the edge."""
    buckets = ((0.5, 4.0), (INF, 4.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.25, abs=TOLERANCE)
    assert histogram_quantile(1.0, buckets) == 0.5
    assert histogram_quantile(0.0, buckets) == 0.0


def test_only_inf_bucket_is_nan() -> None:
    """Fewer than two buckets cannot be interpolated."""
    assert math.isnan(histogram_quantile(0.5, ((INF, 9.0),)))


def test_missing_inf_bucket_is_nan() -> None:
    """Without a +Inf bucket Prometheus refuses (NaN)."""
    assert math.isnan(histogram_quantile(0.5, ((0.1, 1.0), (1.0, 2.0))))
    assert math.isnan(histogram_quantile(0.5, ()))


def test_rank_exactly_on_bucket_boundary() -> None:
    """A rank equal to a cumulative count belongs to the lower bucket, so the answer is its edge."""
    buckets = ((1.0, 2.0), (2.0, 4.0), (INF, 4.0))
    assert histogram_quantile(0.5, buckets) == 1.0
    assert histogram_quantile(1.0, buckets) == 2.0


def test_q_zero_and_one() -> None:
    """q = 0 is the natural lower bound 0 when the first bucket has data; q = 1 its top edge."""
    buckets = ((1.0, 2.0), (2.0, 4.0), (INF, 4.0))
    assert histogram_quantile(0.0, buckets) == 0.0
    assert histogram_quantile(1.0, buckets) == 2.0


def test_q_out_of_range_and_nan() -> None:
    """q < 0 is -Inf, q > 1 is +Inf, NaN stays NaN, even for unusable buckets."""
    assert histogram_quantile(-0.1, SIMPLE) == -INF
    assert histogram_quantile(1.1, SIMPLE) == INF
    assert histogram_quantile(-1.0, ()) == -INF
    assert math.isnan(histogram_quantile(math.nan, SIMPLE))


def test_negative_edges() -> None:
    """A first bucket with le <= 0 answers its edge; later ones interpolate from the edge below."""
    buckets = ((-1.0, 2.0), (0.0, 3.0), (1.0, 4.0), (INF, 4.0))
    assert histogram_quantile(0.25, buckets) == -1.0  # rank 1 in the first bucket
    assert histogram_quantile(0.6, buckets) == pytest.approx(-0.6, abs=TOLERANCE)  # -1 + 1*0.4/1
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.6, abs=TOLERANCE)  # 0 + 1*0.6/1


def test_unsorted_and_duplicate_edges_are_coalesced() -> None:
    """Buckets are sorted by le and equal edges are added, as after a sum without ``by (le)``."""
    shuffled = ((INF, 7.0), (1.0, 3.0), (0.1, 1.0))
    assert histogram_quantile(0.25, shuffled) == histogram_quantile(0.25, SIMPLE)
    split = ((0.1, 0.5), (0.1, 0.5), (1.0, 3.0), (INF, 3.0), (INF, 4.0))
    assert histogram_quantile(0.25, split) == pytest.approx(0.4375, abs=TOLERANCE)


def test_non_monotonic_counts_are_enveloped() -> None:
    """A bucket lower than the one before is raised to it before searching."""
    buckets = ((1.0, 5.0), (2.0, 3.0), (3.0, 8.0), (INF, 10.0))
    # Fixed to (2, 5): rank 6 falls in (2, 3] with 3 observations, 1 of them below the rank.
    assert histogram_quantile(0.6, buckets) == pytest.approx(2.0 + 1.0 / 3.0, abs=TOLERANCE)


def test_float_noise_between_buckets_is_ignored() -> None:
    """Relative differences below 1e-12 count as equal (Prometheus' small-delta tolerance)."""
    noisy = 3.0 * (1 + 1e-13)
    buckets = ((1.0, 3.0), (2.0, noisy), (INF, noisy))
    # Without the tolerance the rank (== noisy) would land in (1, 2] and answer 2.0.
    assert histogram_quantile(1.0, buckets) == 1.0


def test_prepared_buckets_serve_several_quantiles() -> None:
    """Preparing once and asking several quantiles gives the one-shot answers."""
    prepared = prepare_buckets(SIMPLE)
    for q in (0.0, 0.1, 0.25, 0.5, 0.99, 1.0):
        assert quantile_of_prepared(q, prepared) == histogram_quantile(q, SIMPLE)


def test_matches_numpy_reference_on_random_histograms() -> None:
    """Random vLLM-shaped histograms agree with the numpy inverse-CDF reference to 1e-9."""
    rng = np.random.default_rng(20261122)
    for _ in range(500):
        per_bucket = rng.integers(0, 50, size=len(TTFT_EDGES)) * rng.integers(0, 2, len(TTFT_EDGES))
        if per_bucket.sum() == 0:
            continue
        h = histogram(TTFT_EDGES, per_bucket.tolist())
        cumulative = [count for _, count in h.buckets]
        for q in (0.5, 0.95, 0.99, float(rng.uniform(0.001, 0.999))):
            if q * cumulative[-1] in cumulative:
                continue  # a rank exactly on an edge is covered by the hand-worked test
            got = histogram_quantile(q, h.buckets)
            assert got == pytest.approx(
                numpy_quantile(q, TTFT_EDGES, cumulative), abs=TOLERANCE, rel=TOLERANCE
            )
