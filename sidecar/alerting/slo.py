"""Latency SLOs as multi-window, multi-burn-rate alerts (Google SRE workbook, four-row table).

The SLI is bucket-based: a request is *good* when its latency is at or under the SLO threshold,
read as the cumulative count of the bucket whose ``le`` equals the threshold. That is exact, but
only at a bucket edge, so thresholds must sit on vLLM's bucket edges (checked).

The windows are data (:data:`BURN_ROWS`); the burn-rate factors are derived from the budget
share each row may spend, as sloth does: ``factor = budget_share * period / long_window``.

In-process, windows up to 3 days cannot come from the 15-minute snapshot history, so the engine
records each model's good/total counts once per evaluation in a
:class:`~sidecar.alerting.history.CounterHistory` (thinned to one reading a minute after two
hours) and takes increases from there. After a restart the long windows cover only the time since
start, exactly as Prometheus' ``rate()`` does over a young series.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.alerting.history import CounterHistory
from sidecar.alerting.inputs import EvalContext
from sidecar.alerting.promql import number
from sidecar.alerting.spec import AlertRule, RuleConfig, Sample, Severity
from sidecar.alerting.templating import humanize_duration, humanize_percentage
from sidecar.snapshot import Histogram, Snapshot

PERIOD_SECONDS = 30 * 86400.0
"""The SLO period the budget is counted over (30 days)."""
UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0}

TTFT_EDGES = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""vLLM's ``vllm:time_to_first_token_seconds`` buckets (unchanged since 0.8)."""
E2E_EDGES = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""vLLM's ``vllm:e2e_request_latency_seconds`` buckets (unchanged since 0.8)."""


def seconds(window: str) -> float:
    """``"30m"`` -> 1800.0 (the window spellings of :data:`BURN_ROWS`)."""
    return float(window[:-1]) * UNITS[window[-1]]


@dataclass(frozen=True, slots=True)
class BurnRow:
    """One row of the table: both windows must burn faster than ``factor`` for ``for``."""

    severity: Severity
    long: str
    short: str
    budget_share: float
    """Share of the period's error budget this row lets ``long`` spend before alerting."""
    for_seconds: float

    @property
    def factor(self) -> float:
        """The burn rate threshold: 14.4 for 2 % of a 30-day budget in one hour."""
        return self.budget_share * PERIOD_SECONDS / seconds(self.long)


BURN_ROWS: tuple[BurnRow, ...] = (
    BurnRow(Severity.CRITICAL, "1h", "5m", 0.02, 120.0),
    BurnRow(Severity.CRITICAL, "6h", "30m", 0.05, 900.0),
    BurnRow(Severity.WARNING, "1d", "2h", 0.10, 3600.0),
    BurnRow(Severity.WARNING, "3d", "6h", 0.10, 10800.0),
)
SLO_WINDOWS: tuple[str, ...] = tuple(
    sorted({w for row in BURN_ROWS for w in (row.long, row.short)}, key=seconds)
)
LONGEST_WINDOW = max(seconds(window) for window in SLO_WINDOWS)


@dataclass(frozen=True, slots=True)
class LatencySlo:
    """One latency SLO: which histogram, which setting holds its threshold, which alert."""

    key: str
    """Metric segment of the recorded error ratio (``ttft`` -> ``vllm_ttft_slo_...``)."""
    canonical: str
    alert: str
    what: str
    edges: tuple[float, ...]

    def threshold(self, config: RuleConfig) -> float:
        """The latency that separates good from bad requests, in seconds."""
        return config.slo_ttft_seconds if self.canonical == "ttft" else config.slo_e2e_seconds


LATENCY_SLOS: tuple[LatencySlo, ...] = (
    LatencySlo("ttft", "ttft", "VLLMTTFTBudgetBurn", "to the first token", TTFT_EDGES),
    LatencySlo("e2e_latency", "e2e_latency", "VLLME2ELatencyBudgetBurn", "end to end", E2E_EDGES),
)


def check_edges(config: RuleConfig) -> None:
    """Raise ValueError when an SLO threshold is not one of vLLM's default bucket edges."""
    for slo in LATENCY_SLOS:
        value = slo.threshold(config)
        if not any(abs(value - edge) <= 1e-9 * edge for edge in slo.edges):
            edges = ", ".join(f"{edge:g}" for edge in slo.edges)
            raise ValueError(
                f"SLO threshold {value:g}s for {slo.canonical} is not a vLLM bucket edge; "
                f"the SLI is only exact at one of: {edges}"
            )


def _good(histogram: Histogram, edge: float) -> float | None:
    for le, count in zip(histogram.edges, histogram.counts, strict=True):
        if abs(le - edge) <= 1e-9 * max(edge, 1e-9):
            return count
    return None


def record_counts(
    history: CounterHistory, snapshot: Snapshot, config: RuleConfig, now: float
) -> list[str]:
    """Record each model's good/total counts; returns the SLIs whose edge the scrape lacks."""
    missing: list[str] = []
    for slo in LATENCY_SLOS:
        edge = slo.threshold(config)
        good: dict[str, float] = {}
        total: dict[str, float] = {}
        for key, histogram in snapshot.histograms.get(slo.canonical, {}).items():
            at_edge = _good(histogram, edge)
            if at_edge is None:
                missing.append(slo.canonical)
                break
            good[key.model_name] = good.get(key.model_name, 0.0) + at_edge
            total[key.model_name] = total.get(key.model_name, 0.0) + histogram.count
        else:
            span = LONGEST_WINDOW + 600.0
            for model, value in total.items():
                history.add(("slo", slo.key, model, "total"), now, value, max_span=span)
                history.add(("slo", slo.key, model, "good"), now, good[model], max_span=span)
    return missing


def error_ratio(ctx: EvalContext, slo: LatencySlo, model: str, window: str) -> float | None:
    """Share of ``model``'s requests over the SLO threshold within ``window``, None if idle."""
    span = seconds(window)
    total = ctx.history.increase(("slo", slo.key, model, "total"), span, ctx.now)
    good = ctx.history.increase(("slo", slo.key, model, "good"), span, ctx.now)
    if total is None or good is None or total <= 0:
        return None
    return max(0.0, 1.0 - good / total)


def slo_error_ratio(slo: LatencySlo, window: str) -> str:
    """Recorded name of the share of requests slower than the SLO threshold over ``window``."""
    return f"model_name:vllm_{slo.key}_slo_errors_per_request:ratio_rate{window}"


def _expr(slo: LatencySlo, row: BurnRow, config: RuleConfig, threshold: float) -> str:
    del threshold
    limit = number(row.factor * (1 - config.slo_target))
    return (
        f"{slo_error_ratio(slo, row.long)} > {limit}\n"
        f"and\n{slo_error_ratio(slo, row.short)} > {limit}"
    )


def _evaluate(
    slo: LatencySlo, row: BurnRow, ctx: EvalContext, threshold: float
) -> Iterable[Sample]:
    del threshold
    limit = row.factor * (1 - ctx.config.slo_target)
    for target in ctx.models():
        long = error_ratio(ctx, slo, target.model_name, row.long)
        short = error_ratio(ctx, slo, target.model_name, row.short)
        if long is not None and short is not None and long > limit and short > limit:
            yield Sample({"model_name": target.model_name}, long)


def _params(slo: LatencySlo, row: BurnRow, config: RuleConfig) -> dict[str, str]:
    return {
        "slo_seconds": humanize_duration(slo.threshold(config)),
        "allowed": humanize_percentage(1 - config.slo_target),
        "factor": number(round(row.factor, 4)),
        "budget": humanize_percentage(row.budget_share),
        "long": row.long,
        "short": row.short,
    }


def burn_rules(slo: LatencySlo, summary: str) -> tuple[AlertRule, ...]:
    """The four rows of one SLO's burn-rate alert: one name, told apart by ``long``/``short``."""
    return tuple(
        AlertRule(
            name=slo.alert,
            severity=row.severity,
            summary=summary,
            description=(
                "{{ $value | humanizePercentage }} of requests to model {{ $labels.model_name }} "
                f"took longer than ${{slo_seconds}} {slo.what} over the last ${{long}} (and "
                "${short}); the SLO allows ${allowed}. Burning ${factor}x faster than "
                "sustainable spends ${budget} of the 30-day error budget in ${long}."
            ),
            expr=functools.partial(_expr, slo, row),
            evaluate=functools.partial(_evaluate, slo, row),
            for_seconds=row.for_seconds,
            labels={"long": row.long, "short": row.short},
            params=functools.partial(_params, slo, row),
            overridable=False,
        )
        for row in BURN_ROWS
    )
