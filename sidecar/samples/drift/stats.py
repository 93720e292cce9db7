"""Weighted two-sample statistics for drift: KS, PSI, proportions, chi-square, Holm.

Every observation carries a weight, ``1 / sample_rate``: a record sampled at 1% stands for 100
requests, one sampled at 10% for 10. Estimates (ECDFs, quantiles, shares) use the weights, so a
window whose models were sampled at different rates still describes the traffic, not the sampler.
Tests use Kish's effective sample size ``n_eff = (sum w)^2 / sum w^2`` in place of ``n``: equal
weights give ``n_eff = n`` (and then the exact unweighted test is used), unequal weights give
fewer effective observations and so more cautious p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
PSI_FLOOR = 1e-4
"""Smallest share used in PSI, so an empty bin does not make it infinite."""
MIN_EXPECTED = 5.0
"""Below this expected count a 2x2 table gets Fisher's exact test; rarer categories are pooled."""


def kish_n(weights: FloatArray) -> float:
    """Kish's effective sample size."""
    total = float(weights.sum())
    squares = float(np.square(weights).sum())
    return total * total / squares if squares > 0 else 0.0


def constant(weights: FloatArray) -> bool:
    """Whether all weights are equal (the weighted test is then the ordinary one)."""
    return weights.size == 0 or bool(np.all(weights == weights[0]))


def weighted_quantiles(
    values: FloatArray, weights: FloatArray, qs: Sequence[float] | FloatArray
) -> FloatArray:
    """Quantiles of the weighted empirical distribution (inverse of the weighted ECDF)."""
    if values.size == 0:
        return np.full(len(qs), np.nan)
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_weights = values[order], weights[order]
    cumulative = np.cumsum(sorted_weights) / sorted_weights.sum()
    index = np.searchsorted(cumulative, np.asarray(qs, dtype=float) - 1e-12, side="left")
    picked: FloatArray = sorted_values[np.clip(index, 0, values.size - 1)]
    return picked


def weighted_ecdf(values: FloatArray, weights: FloatArray, grid: FloatArray) -> FloatArray:
    """The weighted ECDF of ``values`` evaluated at ``grid``."""
    order = np.argsort(values, kind="stable")
    cumulative = np.concatenate(([0.0], np.cumsum(weights[order]))) / weights.sum()
    evaluated: FloatArray = cumulative[np.searchsorted(values[order], grid, side="right")]
    return evaluated


def weighted_ks(
    x1: FloatArray, w1: FloatArray, x2: FloatArray, w2: FloatArray
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value with weights.

    Equal weights within each sample: scipy's ``ks_2samp`` (exact for small samples). Otherwise
    the largest gap between the weighted ECDFs, with the asymptotic p-value at the effective
    sizes ``n1_eff * n2_eff / (n1_eff + n2_eff)``.
    """
    from scipy import stats

    if constant(w1) and constant(w2):
        result = stats.ks_2samp(x1, x2)
        return float(result.statistic), float(result.pvalue)
    grid = np.union1d(x1, x2)
    gap = float(np.max(np.abs(weighted_ecdf(x1, w1, grid) - weighted_ecdf(x2, w2, grid))))
    n1, n2 = kish_n(w1), kish_n(w2)
    effective = max(1, round(n1 * n2 / (n1 + n2)))
    return gap, float(min(1.0, stats.kstwo.sf(gap, effective)))


def psi(baseline: FloatArray, current: FloatArray) -> float:
    """Population stability index of two share vectors over the same bins."""
    b = np.maximum(baseline, PSI_FLOOR)
    c = np.maximum(current, PSI_FLOOR)
    return float(np.sum((c - b) * np.log(c / b)))


def binned_shares(values: FloatArray, weights: FloatArray, edges: FloatArray) -> FloatArray:
    """Weighted share of values per bin; bin ``i`` is ``(edges[i-1], edges[i]]``."""
    index = np.searchsorted(edges, values, side="left")
    totals = np.bincount(index, weights=weights, minlength=edges.size + 1)
    return totals / max(float(weights.sum()), 1e-300)


def distribution_psi(
    x1: FloatArray, w1: FloatArray, x2: FloatArray, w2: FloatArray, bins: int
) -> float:
    """PSI over bins cut at the baseline's weighted quantiles (ties merge bins)."""
    cuts = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(weighted_quantiles(x1, w1, cuts))
    return psi(binned_shares(x1, w1, edges), binned_shares(x2, w2, edges))


def weighted_share(events: npt.NDArray[np.bool_], weights: FloatArray) -> tuple[float, float]:
    """Weighted share of ``events`` and the effective sample size behind it."""
    total = float(weights.sum())
    if total <= 0:
        return math.nan, 0.0
    return float(weights[events].sum()) / total, kish_n(weights)


def two_proportion_p(p1: float, n1: float, p2: float, n2: float) -> float:
    """Two-sided test of equal proportions (pooled z; Fisher's exact when counts are small)."""
    from scipy import stats

    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0
    smallest = min(n1 * pooled, n1 * (1 - pooled), n2 * pooled, n2 * (1 - pooled))
    if smallest < MIN_EXPECTED:
        x1, x2 = round(p1 * n1), round(p2 * n2)
        table = [[x1, max(round(n1) - x1, 0)], [x2, max(round(n2) - x2, 0)]]
        return float(stats.fisher_exact(table).pvalue)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * stats.norm.sf(abs(p1 - p2) / spread))


def wilson_interval(share: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a share observed over ``n`` (effective) observations."""
    if n <= 0 or math.isnan(share):
        return math.nan, math.nan
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def category_shares(labels: npt.NDArray[np.str_], weights: FloatArray) -> dict[str, float]:
    """Weighted share of each label."""
    total = float(weights.sum())
    if total <= 0:
        return {}
    shares: dict[str, float] = {}
    for label in np.unique(labels):
        shares[str(label)] = float(weights[labels == label].sum()) / total
    return shares


def mix_test(
    baseline: dict[str, float], n1: float, current: dict[str, float], n2: float
) -> tuple[float, float, float]:
    """Chi-square test of two category mixes: ``(p, Cramér's V, PSI)``.

    Counts are shares times effective sizes; categories expected fewer than 5 times in either
    window are pooled into one, so the chi-square approximation holds.
    """
    from scipy import stats

    labels = sorted(set(baseline) | set(current))
    b = np.array([baseline.get(label, 0.0) for label in labels])
    c = np.array([current.get(label, 0.0) for label in labels])
    table = np.vstack([b * n1, c * n2])
    pooled = table.sum(axis=0) / table.sum()
    rare = (pooled * min(n1, n2)) < MIN_EXPECTED
    if rare.any() and (~rare).any():
        table = np.column_stack([table[:, ~rare], table[:, rare].sum(axis=1)])
    table = table[:, table.sum(axis=0) > 0]
    effect_psi = psi(b, c)
    if table.shape[1] < 2:
        return 1.0, 0.0, effect_psi
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    cramers_v = math.sqrt(chi2 / table.sum())
    return float(p_value), cramers_v, effect_psi


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control under any dependence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
