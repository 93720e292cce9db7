"""``samples compare RUN``: did the candidate answer the same prompts worse than production?

:mod:`.pairs` pairs each replayed answer with the original, :mod:`.signals` holds the paired
tests, :mod:`.analyse` applies Holm and the floors, :mod:`.report`/:mod:`.table` show the result.
"""

from sidecar.samples.compare.analyse import (
    EXIT_REGRESSION,
    CompareResult,
    analyse,
    evaluate_pairs,
    exit_code,
)
from sidecar.samples.compare.pairs import Pairs, load_pairs, pair_rows

__all__ = [
    "EXIT_REGRESSION",
    "CompareResult",
    "Pairs",
    "analyse",
    "evaluate_pairs",
    "exit_code",
    "load_pairs",
    "pair_rows",
]
