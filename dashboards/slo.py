"""SLOs and availability: error budgets, burn rates, 30-day availability, incidents.

The SLIs are the alert pack's, computed from vLLM's own series so the board works on a bare
scrape: a request is *good* for a latency SLO when it lands in the bucket whose ``le`` is the
threshold (exact at vLLM's bucket edges, as the burn-rate alerts require), and *available* when
it was admitted and did not finish with ``finished_reason="error"`` (admission rejections, 503s
from vLLM 0.32+, count against availability; client aborts do not). Thresholds, the target and
the hosted API's availability to compare with are variables, defaulting to the sidecar's settings.

Unlike the other boards, windows here are the SLO's own (the burn-rate windows and the 30-day
period), not ``$__rate_interval``: a budget is spent over a fixed period whatever the zoom.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.models import dashboard as model

from dashboards import promql
from dashboards.board import Board, filter_chain, number_variable
from dashboards.panels import Query, stat_panel, thresholds, timeseries_panel
from dashboards.promql import ENGINE_FILTER, agg, ratio, selector
from sidecar.alerting.promql import each_spelling, number
from sidecar.alerting.slo import SLO_WINDOWS
from sidecar.config import fields_of_settings

UID = "vllm-sidecar-slo"
BY_MODEL = ("model_name",)
PERIOD = "30d"
WINDOWS: tuple[str, ...] = (*SLO_WINDOWS, PERIOD)
"""Every range this board uses: the burn-rate windows of the alert pack and the SLO period."""
HOSTED_AVAILABILITY = 0.999
ALERTS_FILTER = 'alertstate="firing", alertname=~"VLLM.*", model_name=~"$model_name|"'
BUDGET_THRESHOLDS = thresholds((None, "red"), (0.25, "orange"), (0.5, "green"))


def _default(name: str) -> str:
    return number(float(fields_of_settings()[name].default))


def _rate(metric: str, window: str, *matchers: str) -> str:
    """``sum by (model_name)`` of one vLLM counter's rate over a fixed SLO window."""
    inner = each_spelling(
        lambda name: f"rate({selector(name, ENGINE_FILTER, *matchers)}[{window}])", metric
    )
    return agg("sum", inner, BY_MODEL)


def latency_error_ratio(histogram: str, variable: str, window: str) -> str:
    """Share of requests slower than ``$variable`` seconds over ``window``, per model."""
    edge = f'le=~"${variable}(\\\\.0+)?"'
    good = _rate(f"{histogram}_bucket", window, edge)
    total = _rate(f"{histogram}_count", window)
    return f"(1 - {ratio(good, total)})"


def unavailability(window: str) -> str:
    """Share of attempted requests rejected at admission or failed with an error, per model."""
    finished = _rate("vllm:request_success_total", window)
    errors = promql.zero_if_absent(
        _rate("vllm:request_success_total", window, 'finished_reason="error"'), finished
    )
    rejected = promql.zero_if_absent(_rate("vllm:admission_rejections_total", window), finished)
    return f"(({errors} + {rejected}) / (({finished} + {rejected}) > 0))"


SLIS: tuple[tuple[str, str, Callable[[str], str]], ...] = (
    (
        "TTFT",
        "requests slower than $slo_ttft_seconds s to the first token",
        lambda window: latency_error_ratio(
            "vllm:time_to_first_token_seconds", "slo_ttft_seconds", window
        ),
    ),
    (
        "End-to-end",
        "requests slower than $slo_e2e_seconds s end to end",
        lambda window: latency_error_ratio(
            "vllm:e2e_request_latency_seconds", "slo_e2e_seconds", window
        ),
    ),
    ("Availability", "requests rejected at admission or failed with an error", unavailability),
)


def _budget_remaining(sli: Callable[[str], str]) -> str:
    """Share of the 30-day error budget left: 1 - (bad share / allowed bad share)."""
    return f"(1 - {sli(PERIOD)} / (1 - $slo_target))"


def _variables(board: Board) -> None:
    for variable in filter_chain(promql.engine_series("vllm:num_requests_running")):
        board.variable(variable)
    board.variable(
        number_variable(
            "slo_target",
            "SLO target",
            _default("slo_target"),
            "Share of requests that must be good over 30 days (the sidecar's slo_target).",
        )
    ).variable(
        number_variable(
            "slo_ttft_seconds",
            "TTFT SLO (s)",
            _default("slo_ttft_seconds"),
            "Time-to-first-token threshold; must be one of vLLM's bucket edges.",
        )
    ).variable(
        number_variable(
            "slo_e2e_seconds",
            "E2E SLO (s)",
            _default("slo_e2e_seconds"),
            "End-to-end latency threshold; must be one of vLLM's bucket edges.",
        )
    ).variable(
        number_variable(
            "hosted_availability",
            "Hosted API availability",
            number(HOSTED_AVAILABILITY),
            "The availability a hosted LLM API commits to, to compare with (99.9% is common).",
        )
    )


def _budgets(board: Board) -> None:
    board.row("Error budget remaining (30 days)").add(
        *(
            stat_panel(
                f"{name} budget remaining",
                f"Share of the 30-day error budget left for the {name} SLO ({what}), worst "
                "model in the selection; below 0 the SLO is missed.",
                "percentunit",
                [Query(agg("min", _budget_remaining(sli)))],
                limits=BUDGET_THRESHOLDS,
            )
            for name, what, sli in SLIS
        )
    )


def _burn_rates(board: Board) -> None:
    board.row("Burn rates").add(
        *(
            timeseries_panel(
                f"{name} burn rate",
                f"How fast the {name} SLO's budget burns per window ({what}): 1 spends exactly "
                "the budget in 30 days; the pack pages at 14.4 (1h) and 6 (6h).",
                "short",
                [
                    Query(
                        f"{sli(window)} / (1 - $slo_target)",
                        legend=f"{{{{model_name}}}} {window}",
                    )
                    for window in SLO_WINDOWS
                ],
            )
            for name, what, sli in SLIS
        )
    )


def _availability(board: Board) -> None:
    availability = f"(1 - {unavailability(PERIOD)})"
    board.row("Availability").add(
        timeseries_panel(
            "Availability over 30 days vs a hosted API",
            "Share of attempted requests admitted and not failed over the last 30 days, per "
            "model, beside the hosted API's commitment ($hosted_availability).",
            "percentunit",
            [
                Query(availability, legend="{{model_name}}"),
                Query(
                    f"0 * {availability} + $hosted_availability",
                    legend="{{model_name}} hosted API",
                ),
            ],
            min_value=None,
            max_value=1,
        ),
        timeseries_panel(
            "Incidents: firing alerts over time",
            "Alerts named VLLM* firing in Prometheus, by alert name (needs the alert pack's "
            "rules loaded in Prometheus).",
            "short",
            [
                Query(
                    agg("sum", f"ALERTS{{{ALERTS_FILTER}}}", ("alertname",)),
                    legend="{{alertname}}",
                )
            ],
        ),
    )


def build() -> model.Dashboard:
    """The SLOs and availability dashboard."""
    board = Board(
        UID,
        "vLLM / SLOs and availability",
        "Error budgets left for the TTFT, end-to-end and availability SLOs, burn rates per "
        "window, 30-day availability beside a hosted API's, and incidents over time.",
    )
    _variables(board)
    _budgets(board)
    _burn_rates(board)
    _availability(board)
    return board.build()
