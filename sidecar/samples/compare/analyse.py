"""The paired verdict: Holm over every judged signal, then effect floors and direction.

A signal counts as a **regression** when its Holm-adjusted p-value is below ``alpha``, its effect
reaches drift's floor, and it moved in the bad direction (longer *or* shorter answers both count
for length; only slower, more cut-offs, more refusals... for the others). A significant move in
the good direction is reported as "improved" and does not fail the gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from sidecar.samples.compare.pairs import Pairs
from sidecar.samples.compare.signals import (
    PAIRED_SIGNALS,
    SEMANTIC,
    PairedResult,
    semantic_signal,
)
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.drift.stats import holm
from sidecar.samples.semantic.similarity import DEFAULT_MIN_SIMILARITY

Verdict = Literal["regression", "no regression", "not enough data"]
EXIT_NO_REGRESSION = 0
EXIT_REGRESSION = 3


@dataclass(slots=True)
class CompareResult:
    """Everything ``compare`` found."""

    run_id: str
    pairs: Pairs
    config: DriftConfig
    signals: list[PairedResult]

    @property
    def regressions(self) -> list[PairedResult]:
        return [signal for signal in self.signals if signal.status == "regression"]

    @property
    def verdict(self) -> Verdict:
        if self.regressions:
            return "regression"
        judged = [signal for signal in self.signals if signal.enough_data]
        return "no regression" if judged else "not enough data"

    def to_json(self) -> dict[str, Any]:
        def number(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "verdict": self.verdict,
            "run_id": self.run_id,
            "pairs": self.pairs.size,
            "unpaired_candidates": self.pairs.unpaired_candidates,
            "config": {
                "alpha": self.config.alpha,
                "min_samples": self.config.min_samples,
                "min_share_change": self.config.min_share_change,
                "min_relative_change": self.config.min_relative_change,
            },
            "signals": [
                {
                    "name": signal.spec.name,
                    "title": signal.spec.title,
                    "status": signal.status,
                    "test": signal.test,
                    "n_pairs": signal.n,
                    "p_value": number(signal.p_value),
                    "p_adjusted": number(signal.p_adjusted),
                    "effect": signal.effect,
                    "effect_threshold": signal.effect_threshold,
                    "worse_flips": signal.worse_flips,
                    "better_flips": signal.better_flips,
                    "baseline": signal.baseline_text,
                    "candidate": signal.candidate_text,
                    "change": signal.change_text,
                    "note": signal.note,
                }
                for signal in self.signals
            ],
        }


def evaluate_pairs(
    pairs: Pairs, config: DriftConfig, min_similarity: float = DEFAULT_MIN_SIMILARITY
) -> list[PairedResult]:
    """Every enabled paired signal, Holm-adjusted together, with its status."""
    results = [
        evaluate(pairs, config)
        for spec, evaluate in PAIRED_SIGNALS
        if spec.name not in config.disabled_signals
    ]
    if pairs.similarity is not None and SEMANTIC.name not in config.disabled_signals:
        results.append(semantic_signal(pairs, config, min_similarity))
    judged = [result for result in results if result.enough_data]
    for result, adjusted in zip(judged, holm([r.p_value for r in judged]), strict=True):
        result.p_adjusted = adjusted
        significant = adjusted < config.alpha
        if significant and result.large_enough:
            result.status = "regression" if result.direction_is_worse else "improved"
        elif significant:
            result.note = "significant, but below the effect floor"
        elif result.large_enough:
            result.note = "large but not significant (noisy)"
    return results


def analyse(
    run_id: str,
    pairs: Pairs,
    config: DriftConfig,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> CompareResult:
    """Compare the pairs of one replay run."""
    return CompareResult(run_id, pairs, config, evaluate_pairs(pairs, config, min_similarity))


def exit_code(result: CompareResult) -> int:
    """3 on a regression (a CI gate), 0 otherwise."""
    return EXIT_REGRESSION if result.regressions else EXIT_NO_REGRESSION
