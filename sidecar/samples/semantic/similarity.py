"""``compare --semantic``: how close is each candidate answer to the original, in meaning?

Each pair gets the cosine similarity of the two answers' embeddings (1 = same meaning; the same
model at temperature 0 gives exactly 1). The signal asks whether the typical pair is less similar
than ``min_similarity`` (default 0.9): a one-sided sign test of "the median similarity is at
least the floor", counting the pairs below it. Pick the floor below what your current model
reaches against itself when resampled (replay against the current deployment to see it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sidecar.samples.semantic.embed import Embedder

FloatArray = npt.NDArray[np.float64]
DEFAULT_MIN_SIMILARITY = 0.9


def pair_similarity(
    baseline: Sequence[str], candidate: Sequence[str], embedder: Embedder
) -> FloatArray:
    """Cosine similarity of each pair of answers (unit vectors, so a dot product)."""
    a = embedder.embed(list(baseline))
    b = embedder.embed(list(candidate))
    similarity: FloatArray = np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0)
    return similarity


def below_floor_p(similarity: FloatArray, floor: float) -> float:
    """One-sided sign test: p of this many pairs below ``floor`` if the median were at it."""
    from scipy import stats

    below = int(np.sum(similarity < floor))
    at_or_above = int(similarity.size - below)
    if below == 0:
        return 1.0
    return float(stats.binomtest(below, below + at_or_above, 0.5, alternative="greater").pvalue)
