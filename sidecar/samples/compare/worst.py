"""The pairs a reviewer should read first: bad flips, then the largest length changes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sidecar.samples.compare.pairs import Pairs

WORST_PAIRS = 10


@dataclass(frozen=True, slots=True)
class WorstPair:
    """One pair side by side, with what went wrong."""

    request_id: str
    prompt: str
    baseline: str
    candidate: str
    problems: tuple[str, ...]
    length_ratio: float


def worst_pairs(pairs: Pairs, limit: int = WORST_PAIRS) -> list[WorstPair]:
    """Pairs with a flip for the worse first, then by how far the length moved."""
    base, cand = pairs.baseline, pairs.candidate
    flips = {
        "now an error": ~base.error & cand.error,
        "now empty": ~base.empty & cand.empty,
        "now a refusal": ~base.refusal & cand.refusal,
        "now cut off by length": (base.finish_reason != "length")
        & (cand.finish_reason == "length"),
        "JSON no longer valid": base.json_requested & base.json_valid & ~cand.json_valid,
    }
    ratio = (np.nan_to_num(cand.output_chars) + 1) / (np.nan_to_num(base.output_chars) + 1)
    distance = np.abs(np.log(ratio))
    scored: list[tuple[float, int]] = []
    for index in range(pairs.size):
        problems = sum(bool(mask[index]) for mask in flips.values())
        scored.append((problems * 10.0 + float(distance[index]), index))
    scored.sort(reverse=True)
    chosen: list[WorstPair] = []
    for score, index in scored[:limit]:
        if score <= 0:
            break
        chosen.append(
            WorstPair(
                pairs.ids[index],
                pairs.prompts[index],
                pairs.baseline_text[index],
                pairs.candidate_text[index],
                tuple(name for name, mask in flips.items() if mask[index]),
                float(ratio[index]) if math.isfinite(float(ratio[index])) else math.nan,
            )
        )
    return chosen
