"""The weighted statistics behind ``drift``, checked against scipy and worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from sidecar.samples.drift import stats

RNG = np.random.default_rng(11)


def test_equal_weights_give_scipys_ks_test() -> None:
    """With constant weights the test is scipy's two-sample KS, statistic and p-value."""
    x1, x2 = RNG.lognormal(0, 1, 300), RNG.lognormal(0.2, 1, 250)
    d, p = stats.weighted_ks(x1, np.full(300, 100.0), x2, np.full(250, 50.0))
    expected = sp.ks_2samp(x1, x2)
    assert d == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)


def test_integer_weights_act_like_repeated_observations() -> None:
    """Weight 3 counts an observation three times in the ECDF gap and in the quantiles."""
    x1, w1 = RNG.normal(0, 1, 200), RNG.integers(1, 4, 200).astype(float)
    x2, w2 = RNG.normal(0.3, 1, 200), RNG.integers(1, 4, 200).astype(float)
    d, p = stats.weighted_ks(x1, w1, x2, w2)
    expanded1, expanded2 = np.repeat(x1, w1.astype(int)), np.repeat(x2, w2.astype(int))
    assert d == pytest.approx(sp.ks_2samp(expanded1, expanded2).statistic)
    assert 0 < p < 1
    assert p > sp.ks_2samp(expanded1, expanded2).pvalue, "effective n is smaller than the sum"
    quantiles = stats.weighted_quantiles(x1, w1, (0.1, 0.5, 0.9))
    assert list(quantiles) == pytest.approx(
        list(np.quantile(expanded1, (0.1, 0.5, 0.9), method="inverted_cdf"))
    )


def test_kish_effective_sample_size() -> None:
    """Equal weights: n; one dominant weight: close to one."""
    assert stats.kish_n(np.full(40, 7.0)) == pytest.approx(40)
    assert stats.kish_n(np.array([1000.0, 1, 1, 1])) == pytest.approx(1.006, abs=1e-3)


def test_psi_is_zero_for_equal_mixes_and_grows_with_the_shift() -> None:
    """PSI of identical shares is 0; a worked 2-bin example matches by hand."""
    assert stats.psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    by_hand = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert stats.psi(np.array([0.5, 0.5]), np.array([0.7, 0.3])) == pytest.approx(by_hand)
    same = RNG.normal(0, 1, 5000)
    shifted = same + 1
    ones = np.ones(5000)
    assert stats.distribution_psi(same, ones, same, ones, 10) == pytest.approx(0)
    assert stats.distribution_psi(same, ones, shifted, ones, 10) > 0.25


def test_holm_adjustment_worked_example() -> None:
    """Holm: sorted p times (m - rank), made monotone, capped at 1."""
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.3, 0.02]) == pytest.approx([0.3, 0.04])
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]
    assert stats.holm([]) == []


def test_two_proportion_test_uses_z_or_fisher() -> None:
    """Large counts: the pooled z-test; small counts: Fisher's exact test; no events: p = 1."""
    z = (0.30 - 0.25) / math.sqrt(0.275 * 0.725 * (2 / 1000))
    assert stats.two_proportion_p(0.25, 1000, 0.30, 1000) == pytest.approx(2 * sp.norm.sf(z))
    fisher = sp.fisher_exact([[1, 99], [6, 94]]).pvalue
    assert stats.two_proportion_p(0.01, 100, 0.06, 100) == pytest.approx(fisher)
    assert stats.two_proportion_p(0.0, 100, 0.0, 120) == 1.0


def test_weighted_share_and_wilson_interval() -> None:
    """Shares are weighted; the interval matches the Wilson formula and stays in [0, 1]."""
    events = np.array([True, False, False, False])
    share, n_eff = stats.weighted_share(events, np.array([10.0, 1.0, 1.0, 1.0]))
    assert share == pytest.approx(10 / 13)
    assert n_eff == pytest.approx(13**2 / 103)
    low, high = stats.wilson_interval(0.5, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert stats.wilson_interval(0.0, 50)[0] == 0.0


def test_mix_test_pools_rare_categories() -> None:
    """A reason seen once does not make the chi-square approximation invalid."""
    baseline = {"stop": 0.95, "length": 0.05}
    current = {"stop": 0.75, "length": 0.249, "tool_calls": 0.001}
    p, cramers_v, effect = stats.mix_test(baseline, 400, current, 400)
    assert p < 1e-6
    assert 0.2 < cramers_v < 0.3
    assert effect > 0.1
    assert stats.mix_test({"stop": 1.0}, 100, {"stop": 1.0}, 100)[0] == 1.0
