"""The paired verdict table printed by ``compare`` (rich); formatting shared with drift."""

from __future__ import annotations

from typing import Any

from sidecar.samples.compare.analyse import CompareResult
from sidecar.samples.compare.signals import PairedResult
from sidecar.samples.drift.table import VerdictRow, p_text, signal_table

STATUS_TEXT = {
    "regression": "REGRESSION",
    "improved": "improved",
    "ok": "ok",
    "insufficient": "not enough data",
}
STATUS_STYLE = {
    "regression": "bold red",
    "improved": "cyan",
    "ok": "green",
    "insufficient": "yellow",
}


def effect_text(signal: PairedResult) -> str:
    """``ratio x0.42 (min ±10%)`` or ``+12.0 pp (min 1)``."""
    if not signal.enough_data:
        return "-"
    if signal.spec.kind == "similarity":
        return f"median {signal.effect:+.3f} vs floor"
    if signal.spec.kind == "ratio":
        return f"{signal.effect * 100:+.0f}% (min ±{signal.effect_threshold * 100:g}%)"
    return f"{signal.effect * 100:+.1f} pp (min {signal.effect_threshold * 100:g})"


def verdict_table(result: CompareResult) -> Any:
    """A rich Table with one row per paired signal."""
    return signal_table(
        f"Replay {result.run_id}: {result.pairs.size} pairs - {result.verdict.upper()}",
        f"paired tests, family-wise alpha {result.config.alpha:g} (Holm); flag = significant, "
        f"effect >= minimum and in the bad direction; min {result.config.min_samples} pairs",
        "Candidate",
        (
            VerdictRow(
                signal.spec.title,
                signal.baseline_text,
                signal.candidate_text,
                signal.change_text,
                f"{signal.test} {p_text(signal.p_adjusted)}" if signal.enough_data else "-",
                effect_text(signal),
                STATUS_TEXT[signal.status],
                STATUS_STYLE[signal.status],
                signal.note,
            )
            for signal in result.signals
        ),
    )
