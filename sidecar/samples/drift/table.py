"""The verdict table printed by ``drift`` (rich), and the small formatting helpers it shares."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sidecar.samples.drift.analyse import DriftResult
from sidecar.samples.drift.observe import WindowSummary
from sidecar.samples.drift.signals import SignalResult
from sidecar.samples.timespec import describe_instant

STATUS_TEXT = {"drift": "DRIFT", "ok": "ok", "insufficient": "not enough data"}
STATUS_STYLE = {"drift": "bold red", "ok": "green", "insufficient": "yellow"}


def p_text(value: float) -> str:
    """A p-value as people read it."""
    if math.isnan(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def effect_text(signal: SignalResult) -> str:
    """``PSI 0.31`` or ``Δ share 4.2 pp``, empty when not judged."""
    if not signal.enough_data:
        return "-"
    if signal.spec.kind == "proportion":
        return f"{signal.effect * 100:.1f} pp (min {signal.effect_threshold * 100:g})"
    if signal.spec.kind == "semantic":
        return f"shift {signal.effect * 100:.1f}% (min {signal.effect_threshold * 100:g}%)"
    return f"PSI {signal.effect:.2f} (min {signal.effect_threshold:g})"


def window_line(summary: WindowSummary) -> str:
    """``baseline: 2026-11-01 .. 2026-11-08 [deployment=blue] - 812 records (...)``."""
    span = ""
    if summary.first is not None and summary.last is not None:
        span = f", seen {describe_instant(summary.first)} .. {describe_instant(summary.last)}"
    rates = ", ".join(f"{rate:g}" for rate in sorted(summary.sample_rates))
    kept = f", {summary.kept_excluded} keep-rule records left out" if summary.kept_excluded else ""
    return (
        f"{summary.label}: {summary.window.describe()} - {summary.records} random samples"
        f"{span}{kept}; sample rate {rates or '-'}"
    )


@dataclass(frozen=True)
class VerdictRow:
    """One signal's row of a verdict table, as text (drift's and compare's tables share it)."""

    title: str
    baseline: str
    other: str
    change: str
    test: str
    effect: str
    status_text: str
    status_style: str
    note: str | None


def signal_table(title: str, caption: str, other_side: str, rows: Iterable[VerdictRow]) -> Any:
    """A rich Table with one row per signal: the layout drift and compare print."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, caption=caption, header_style="bold")
    for column in ("Signal", "Baseline", other_side, "Change", "Test, p (adj.)", "Effect"):
        table.add_column(column, overflow="fold")
    table.add_column("Verdict", overflow="fold")
    for row in rows:
        verdict = Text(row.status_text, style=row.status_style)
        if row.note:
            verdict.append("\n" + row.note, style="dim")
        table.add_row(row.title, row.baseline, row.other, row.change, row.test, row.effect, verdict)
    return table


def verdict_table(result: DriftResult) -> Any:
    """A rich Table with one row per signal."""
    return signal_table(
        f"Drift check - verdict: {result.verdict.upper()}",
        f"family-wise alpha {result.config.alpha:g} (Holm); flag = significant and effect "
        f">= minimum; min {result.config.min_samples} effective samples per window",
        "Current",
        (
            VerdictRow(
                signal.spec.title,
                signal.baseline_text,
                signal.current_text,
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


def print_result(result: DriftResult, console: Any) -> None:
    """The window lines and the verdict table."""
    console.print(window_line(result.baseline), highlight=False, markup=False)
    console.print(window_line(result.current), highlight=False, markup=False)
    console.print(verdict_table(result))
