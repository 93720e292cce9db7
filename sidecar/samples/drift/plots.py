"""Baseline-vs-current pictures for the report, as inline PNG data URIs (no files, no network).

Distributions get an overlaid histogram (weighted share per bin on shared bins, logarithmic when
the values span orders of magnitude, as lengths and latencies do) next to the two weighted ECDFs
with the KS gap marked; the finish-reason mix gets grouped bars; all shares get one chart of bars
with 95% Wilson intervals. matplotlib's object API is used (no pyplot state), Agg backend.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from sidecar.samples.drift import stats
from sidecar.samples.drift.signals import SignalResult

BASELINE_COLOUR = "#4C72B0"
CURRENT_COLOUR = "#DD8452"
DPI = 100
_LOG_SPAN = 30.0


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    figure.patch.set_facecolor("white")
    return figure


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bins(values: stats.FloatArray) -> tuple[stats.FloatArray, bool]:
    """Shared bin edges for both windows, and whether they are logarithmic."""
    low, high = float(np.min(values)), float(np.quantile(values, 0.995))
    if high <= low:
        high = low + 1.0
    positive = values[values > 0]
    if positive.size and low >= 0 and high / float(np.min(positive)) > _LOG_SPAN:
        start = float(np.min(positive))
        return np.geomspace(start, max(high, start * 1.01), 40), True
    return np.linspace(low, high, 40), False


def distribution_plot(signal: SignalResult) -> str | None:
    """Histogram overlay and ECDFs; None when a window has no values."""
    base, cur = signal.baseline, signal.current
    if base.values.size == 0 or cur.values.size == 0:
        return None
    unit = signal.spec.unit
    figure = _figure(9.0, 3.0)
    left, right = figure.subplots(1, 2)
    edges, logarithmic = _bins(np.concatenate([base.values, cur.values]))
    for side, colour, label in (
        (base, BASELINE_COLOUR, "baseline"),
        (cur, CURRENT_COLOUR, "current"),
    ):
        left.hist(
            np.clip(side.values, edges[0], edges[-1]),
            bins=edges,
            weights=side.weights / side.weights.sum() * 100,
            histtype="stepfilled",
            alpha=0.45,
            color=colour,
            label=f"{label} (n={side.n})",
        )
    if logarithmic:
        left.set_xscale("log")
    left.set_xlabel(unit or "value")
    left.set_ylabel("% of responses per bin")
    left.legend(frameon=False, fontsize=8)
    left.set_title("distribution", fontsize=10)

    grid = np.union1d(base.values, cur.values)
    base_cdf = stats.weighted_ecdf(base.values, base.weights, grid)
    cur_cdf = stats.weighted_ecdf(cur.values, cur.weights, grid)
    right.step(grid, base_cdf, where="post", color=BASELINE_COLOUR, label="baseline")
    right.step(grid, cur_cdf, where="post", color=CURRENT_COLOUR, label="current")
    widest = int(np.argmax(np.abs(base_cdf - cur_cdf)))
    right.vlines(grid[widest], base_cdf[widest], cur_cdf[widest], colors="#444", linestyles=":")
    right.annotate(
        f"KS D={abs(base_cdf[widest] - cur_cdf[widest]):.2f}",
        (grid[widest], (base_cdf[widest] + cur_cdf[widest]) / 2),
        xytext=(6, 0),
        textcoords="offset points",
        fontsize=8,
    )
    if logarithmic:
        right.set_xscale("log")
        right.set_xlim(edges[0], edges[-1])
    right.set_xlabel(unit or "value")
    right.set_ylabel("share at or below")
    right.set_ylim(0, 1.02)
    right.legend(frameon=False, fontsize=8, loc="lower right")
    right.set_title("cumulative (ECDF)", fontsize=10)
    return _data_uri(figure)


def mix_plot(signal: SignalResult) -> str | None:
    """Grouped bars of each finish reason's share."""
    labels = sorted(set(signal.baseline.shares) | set(signal.current.shares))
    if not labels:
        return None
    figure = _figure(9.0, 0.5 + 0.45 * len(labels) + 0.8)
    axes = figure.subplots()
    positions = np.arange(len(labels))
    height = 0.38
    for offset, side, colour, label in (
        (-height / 2, signal.baseline, BASELINE_COLOUR, "baseline"),
        (height / 2, signal.current, CURRENT_COLOUR, "current"),
    ):
        shares = [side.shares.get(name, 0.0) * 100 for name in labels]
        bars = axes.barh(positions + offset, shares, height, color=colour, label=label)
        axes.bar_label(bars, fmt="%.1f%%", fontsize=8, padding=2)
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    axes.set_xlabel("share of ok responses (%)")
    axes.set_xlim(0, 112)
    axes.legend(frameon=False, fontsize=8, loc="lower right")
    return _data_uri(figure)


def proportions_plot(signals: list[SignalResult]) -> str | None:
    """One chart of every share signal: bars with 95% intervals, baseline next to current."""
    shown = [
        s for s in signals if not math.isnan(s.baseline.share) or not math.isnan(s.current.share)
    ]
    if not shown:
        return None
    figure = _figure(9.0, 3.2)
    axes = figure.subplots()
    positions = np.arange(len(shown))
    width = 0.38
    for offset, attribute, colour, label in (
        (-width / 2, "baseline", BASELINE_COLOUR, "baseline"),
        (width / 2, "current", CURRENT_COLOUR, "current"),
    ):
        sides = [getattr(signal, attribute) for signal in shown]
        shares = np.array([0.0 if math.isnan(s.share) else s.share * 100 for s in sides])
        low = np.array([0.0 if math.isnan(s.interval[0]) else s.interval[0] * 100 for s in sides])
        high = np.array([0.0 if math.isnan(s.interval[1]) else s.interval[1] * 100 for s in sides])
        errors = np.vstack([np.maximum(shares - low, 0), np.maximum(high - shares, 0)])
        axes.bar(
            positions + offset, shares, width, yerr=errors, color=colour, label=label, capsize=3
        )
        for x, top, share in zip(positions + offset, high, shares, strict=True):
            axes.annotate(
                f"{share:.1f}%",
                (x, max(top, share)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    axes.set_xticks(positions, [signal.spec.title for signal in shown], fontsize=8)
    axes.set_ylabel("share (%)")
    axes.margins(y=0.12)
    axes.legend(frameon=False, fontsize=8)
    return _data_uri(figure)


def plots_for(signals: list[SignalResult]) -> dict[str, str]:
    """Signal name (or ``"proportions"``) -> PNG data URI."""
    images: dict[str, str] = {}
    for signal in signals:
        image: str | None = None
        if signal.spec.kind == "distribution":
            image = distribution_plot(signal)
        elif signal.spec.kind == "mix":
            image = mix_plot(signal)
        if image is not None:
            images[signal.spec.name] = image
    shares = proportions_plot([s for s in signals if s.spec.kind == "proportion"])
    if shares is not None:
        images["proportions"] = shares
    return images
