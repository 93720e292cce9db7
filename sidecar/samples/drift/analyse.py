"""The verdict: which signals drifted, after multiple-testing correction and effect gates.

With ten signals tested at once, a plain 5% level would raise a false alarm on unchanged traffic
in roughly a third of runs. Holm's step-down adjustment keeps the chance of *any* false alarm
across the family below ``alpha`` whatever the dependence between signals (output length, tokens
and latency move together). A signal is flagged only when its adjusted p-value is below
``alpha`` and its effect reaches the configured minimum (see
:class:`~sidecar.samples.drift.config.DriftConfig`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.drift.observe import Observations, WindowSummary
from sidecar.samples.drift.signals import SIGNALS, SignalResult
from sidecar.samples.drift.stats import holm

Verdict = Literal["drift", "no drift", "not enough data"]


@dataclass(slots=True)
class DriftResult:
    """Everything ``drift`` found, ready for the table, the report and ``--json``."""

    baseline: WindowSummary
    current: WindowSummary
    config: DriftConfig
    signals: list[SignalResult]

    @property
    def drifted(self) -> list[SignalResult]:
        return [signal for signal in self.signals if signal.status == "drift"]

    @property
    def judged(self) -> list[SignalResult]:
        return [signal for signal in self.signals if signal.enough_data]

    @property
    def verdict(self) -> Verdict:
        if self.drifted:
            return "drift"
        return "no drift" if self.judged else "not enough data"

    def to_json(self) -> dict[str, Any]:
        """Plain data (no arrays) for ``--json`` and schedulers."""

        def number(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "verdict": self.verdict,
            "baseline": self.baseline.to_json(),
            "current": self.current.to_json(),
            "config": {
                "alpha": self.config.alpha,
                "min_samples": self.config.min_samples,
                "min_psi": self.config.min_psi,
                "min_share_change": self.config.min_share_change,
                "min_relative_change": self.config.min_relative_change,
            },
            "signals": [
                {
                    "name": signal.spec.name,
                    "title": signal.spec.title,
                    "status": signal.status,
                    "test": signal.test,
                    "p_value": number(signal.p_value),
                    "p_adjusted": number(signal.p_adjusted),
                    "effect_name": signal.effect_name,
                    "effect": signal.effect,
                    "effect_threshold": signal.effect_threshold,
                    "n_baseline": signal.baseline.n,
                    "n_current": signal.current.n,
                    "baseline": signal.baseline_text,
                    "current": signal.current_text,
                    "change": signal.change_text,
                    "note": signal.note,
                }
                for signal in self.signals
            ],
        }


def evaluate_signals(
    baseline: Observations, current: Observations, config: DriftConfig
) -> list[SignalResult]:
    """Compute every enabled signal, adjust the p-values (Holm) and set each verdict."""
    results = [
        evaluate(baseline, current, config)
        for spec, evaluate in SIGNALS
        if spec.name not in config.disabled_signals
    ]
    judged = [result for result in results if result.enough_data]
    for result, adjusted in zip(judged, holm([r.p_value for r in judged]), strict=True):
        result.p_adjusted = adjusted
        significant = adjusted < config.alpha
        if significant and result.large_enough:
            result.status = "drift"
        elif significant:
            result.note = f"significant, but {result.small_because}"
        elif result.large_enough:
            result.note = "large but not significant (noisy)"
    return results


def analyse(
    baseline: Observations,
    current: Observations,
    config: DriftConfig,
    baseline_summary: WindowSummary,
    current_summary: WindowSummary,
) -> DriftResult:
    """Compare two windows."""
    signals = evaluate_signals(baseline, current, config)
    return DriftResult(baseline_summary, current_summary, config, signals)
