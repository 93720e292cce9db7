"""Two-sample tests on embeddings, calibrated by permutation.

The statistic is the (biased) linear-kernel MMD: the squared distance between the two windows'
mean embeddings. Under "nothing changed" the window labels are exchangeable, so the permutation
p-value ``(1 + #{permuted >= observed}) / (1 + permutations)`` is exact at any sample size, with
no distributional assumption about the embeddings. The effect is the share of the total variance
of the embeddings that lies between the two windows (0 = same centre, 1 = two points); a floor
on it keeps a huge sample from flagging a shift nobody would notice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PERMUTATIONS = 999
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ShiftTest:
    """A permutation MMD test's result."""

    statistic: float
    p_value: float
    effect: float
    """Share of the total variance between the windows."""


def _mmd(a: FloatArray, b: FloatArray) -> float:
    gap = a.mean(axis=0) - b.mean(axis=0)
    return float(gap @ gap)


def shift_test(
    baseline: FloatArray, current: FloatArray, permutations: int = PERMUTATIONS, seed: int = 0
) -> ShiftTest:
    """Permutation test of equal mean embeddings (rows are observations)."""
    n1, n2 = baseline.shape[0], current.shape[0]
    pooled = np.vstack([baseline, current])
    observed = _mmd(baseline, current)
    rng = np.random.default_rng(seed)
    # Every permutation at once: row i of ``labels`` marks which rows form the first window.
    order = np.argsort(rng.random((permutations, n1 + n2)), axis=1)
    first = np.zeros((permutations, n1 + n2))
    np.put_along_axis(first, order[:, :n1], 1.0 / n1, axis=1)
    second = np.full((permutations, n1 + n2), 1.0 / n2)
    np.put_along_axis(second, order[:, :n1], 0.0, axis=1)
    gaps = first @ pooled - second @ pooled
    permuted = np.einsum("ij,ij->i", gaps, gaps)
    p_value = (1.0 + float(np.sum(permuted >= observed - 1e-15))) / (1.0 + permutations)
    total = float(np.sum(pooled.var(axis=0)))
    share = n1 * n2 / (n1 + n2) ** 2 * observed / total if total > 0 else 0.0
    return ShiftTest(observed, p_value, share)
