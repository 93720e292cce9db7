"""Alerts about the sidecar itself and about what clients see through its proxy.

The in-process side reads the sidecar's own registry (see :mod:`.inputs`), the Prometheus side
the same ``vllm_sidecar_*`` series after a scrape, so both evaluate one set of numbers. Two rules
are Prometheus-only: a process cannot report itself dead, and the notification path cannot be
trusted to report its own failure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from sidecar.alerting.inputs import EvalContext
from sidecar.alerting.promql import aggregate, joined, number, selector
from sidecar.alerting.spec import AlertRule, RuleConfig, Sample, Severity, Unit
from sidecar.signals.quantile import histogram_quantile

PROXY_REQUESTS = "vllm_sidecar_proxy_requests_total"
OVERHEAD = "vllm_sidecar_proxy_overhead_seconds"
DROPPED = "vllm_sidecar_samples_dropped_total"
INTENDED_DROPS = frozenset({"keep_budget"})
"""Drop reasons that are policy, not loss: the keep-rules' per-minute budget doing its job."""
WINDOW_5M = 300.0
WINDOW_15M = 900.0
WINDOW_30M = 1800.0
CLIENT_CLOSED = "499"
"""The proxy's status label for requests whose client went away first (nginx's convention)."""
NO_MODEL = "none"
"""The proxy's ``model_name`` for requests tied to no model (health checks, unread bodies, 401s):
their aborts are load balancers and bad clients, not users abandoning a model's answers."""
COUNTER_SAMPLES = (PROXY_REQUESTS, DROPPED, f"{OVERHEAD}_bucket", f"{OVERHEAD}_count")
"""Counter samples the engine records each evaluation so these rules can take increases."""


def _series(config: RuleConfig, name: str, *matchers: str) -> str:
    return selector(name, config.sidecar_selector, *matchers)


def _server_errors(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    total = ctx.increase_by(PROXY_REQUESTS, WINDOW_5M, lambda labels: labels.get("model_name"))
    failed = ctx.increase_by(
        PROXY_REQUESTS,
        WINDOW_5M,
        lambda labels: (
            labels.get("model_name") if labels.get("status", "").startswith("5") else None
        ),
    )
    for model, count in total.items():
        if count <= 0 or count < ctx.config.min_requests_for_ratio:
            continue
        ratio = failed.get(model, 0.0) / count
        if ratio > threshold:
            yield Sample({"model_name": model}, ratio)


def _server_errors_expr(config: RuleConfig, threshold: float) -> str:
    by = joined("model_name", config.target_by)
    failed = _series(config, PROXY_REQUESTS, 'status=~"5.."')
    every = _series(config, PROXY_REQUESTS)
    return (
        f"(\n  sum by ({by}) (rate({failed}[5m]))\n  /\n  sum by ({by}) (rate({every}[5m]))\n)"
        f" > {number(threshold)}\nand on ({by})\n"
        f"sum by ({by}) (increase({every}[5m])) >= {number(config.min_requests_for_ratio)}"
    )


def _aborts(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    def model(labels: Mapping[str, str]) -> str | None:
        name = labels.get("model_name")
        return None if name == NO_MODEL else name

    def aborted(labels: Mapping[str, str]) -> str | None:
        return model(labels) if labels.get("status") == CLIENT_CLOSED else None

    ratios: dict[str, list[float]] = {}
    for window in (WINDOW_5M, WINDOW_30M):
        total = ctx.increase_by(PROXY_REQUESTS, window, model)
        gone = ctx.increase_by(PROXY_REQUESTS, window, aborted)
        for name, count in total.items():
            if count > 0 and name in gone:
                ratios.setdefault(name, []).append(gone[name] / count)
    recent = ctx.increase_by(PROXY_REQUESTS, WINDOW_5M, model)
    for name, (short, *long) in ratios.items():
        if recent.get(name, 0.0) < max(ctx.config.min_requests_for_ratio, 1):
            continue
        if long and min(short, long[0]) > threshold:
            yield Sample({"model_name": name}, min(short, long[0]))


def _aborts_expr(config: RuleConfig, threshold: float) -> str:
    by = joined("model_name", config.target_by)
    modelled = f'model_name!="{NO_MODEL}"'
    gone = _series(config, PROXY_REQUESTS, f'status="{CLIENT_CLOSED}"', modelled)
    every = _series(config, PROXY_REQUESTS, modelled)

    def ratio(window: str) -> str:
        return (
            f"sum by ({by}) (rate({gone}[{window}]))\n  /\n"
            f"  sum by ({by}) (rate({every}[{window}]))"
        )

    short, long = f"(\n  {ratio('5m')}\n)", f"(\n  {ratio('30m')}\n)"
    smaller = f"(\n{short}\n<=\n{long}\nor\n{long}\n)"
    return (
        f"{smaller} > {number(threshold)}\nand on ({by})\n"
        f"sum by ({by}) (increase({every}[5m])) >= {number(config.min_requests_for_ratio)}"
    )


def _backlog(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    used = ctx.inputs.readings.value("vllm_sidecar_spool_bytes")
    capacity = ctx.inputs.readings.value("vllm_sidecar_spool_capacity_bytes")
    if used is not None and capacity and capacity > 0 and used / capacity > threshold:
        yield Sample({}, used / capacity)


def _backlog_expr(config: RuleConfig, threshold: float) -> str:
    used = aggregate("max", config.target_by, _series(config, "vllm_sidecar_spool_bytes"))
    capacity = aggregate(
        "max", config.target_by, f"{_series(config, 'vllm_sidecar_spool_capacity_bytes')} > 0"
    )
    return f"{used}\n/\n{capacity}\n> {number(threshold)}"


def _dropped(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    def reason(labels: Mapping[str, str]) -> str | None:
        value = labels.get("reason", "")
        return None if value in INTENDED_DROPS else value

    for name, count in ctx.increase_by(DROPPED, WINDOW_15M, reason).items():
        if count > threshold:
            yield Sample({"reason": name}, count)


def _dropped_expr(config: RuleConfig, threshold: float) -> str:
    intended = "|".join(sorted(INTENDED_DROPS))
    series = _series(config, DROPPED, f'reason!~"{intended}"')
    by = joined(config.target_by, "reason")
    return f"sum by ({by}) (increase({series}[15m])) > {number(threshold)}"


def _stalled(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    age = ctx.inputs.readings.value("vllm_sidecar_spool_oldest_record_age_seconds")
    if age is not None and age > threshold:
        yield Sample({}, age)


def _stalled_expr(config: RuleConfig, threshold: float) -> str:
    age = _series(config, "vllm_sidecar_spool_oldest_record_age_seconds")
    return f"{aggregate('max', config.target_by, age)} > {number(threshold)}"


def _overhead(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    buckets = ctx.increase_by(f"{OVERHEAD}_bucket", WINDOW_5M, lambda labels: labels.get("le"))
    count = ctx.increase_by(f"{OVERHEAD}_count", WINDOW_5M, lambda labels: "all").get("all")
    if not buckets or count is None or count < max(ctx.config.min_requests_for_ratio, 1):
        return
    p99 = histogram_quantile(0.99, [(float(le), value) for le, value in buckets.items()])
    if math.isfinite(p99) and p99 > threshold:
        yield Sample({}, p99)


def _overhead_expr(config: RuleConfig, threshold: float) -> str:
    buckets = aggregate(
        "sum", joined(config.target_by, "le"), f"rate({_series(config, f'{OVERHEAD}_bucket')}[5m])"
    )
    count = aggregate(
        "sum", config.target_by, f"increase({_series(config, f'{OVERHEAD}_count')}[5m])"
    )
    return (
        f"histogram_quantile(0.99, {buckets}) > {number(threshold)}\n"
        f"and on ({config.target_by})\n{count} >= {number(config.min_requests_for_ratio)}"
    )


def _sidecar_down_expr(config: RuleConfig, threshold: float) -> str:
    del threshold
    up = selector("up", config.sidecar_up_selector)
    return aggregate("count", config.target_by, f"{up} == 0")


def _notifications_expr(config: RuleConfig, threshold: float) -> str:
    del threshold
    by = joined(config.target_by, "receiver")
    name = "vllm_sidecar_alert_notifications_total"
    failed = _series(config, name, 'outcome=~"failure|rejected"')
    delivered = _series(config, name, 'outcome="success"')
    return (
        f"sum by ({by}) (increase({failed}[15m])) > 0\n"
        f"unless on ({by})\nsum by ({by}) (increase({delivered}[15m])) > 0"
    )


SIDECAR_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        name="VLLMServerErrorsHigh",
        severity=Severity.CRITICAL,
        summary="Clients get too many HTTP 5xx answers through the sidecar's proxy.",
        description=(
            "{{ $value | humanizePercentage }} of requests for model {{ $labels.model_name }} "
            "got an HTTP 5xx through the proxy over 5 minutes (threshold ${threshold}, alerting "
            "only above ${floor} requests)."
        ),
        expr=_server_errors_expr,
        evaluate=_server_errors,
        threshold=0.05,
        unit=Unit.RATIO,
        for_seconds=300.0,
        params=lambda config: {"floor": number(config.min_requests_for_ratio)},
    ),
    AlertRule(
        name="VLLMClientAbortsHigh",
        severity=Severity.WARNING,
        summary="Clients abandon a large share of a model's requests before the answer ends.",
        description=(
            "{{ $value | humanizePercentage }} or more of requests for model "
            "{{ $labels.model_name }} were abandoned by their client (HTTP 499 at the proxy: "
            "disconnects, cancelled streams) over both the last 5 and 30 minutes (threshold "
            "${threshold}, alerting only above ${floor} requests). vLLM does not count these; "
            "users are giving up on slow answers."
        ),
        expr=_aborts_expr,
        evaluate=_aborts,
        threshold=0.1,
        unit=Unit.RATIO,
        for_seconds=300.0,
        params=lambda config: {"floor": number(config.min_requests_for_ratio)},
    ),
    AlertRule(
        name="VLLMSidecarSampleBacklog",
        severity=Severity.WARNING,
        summary="The sidecar's sample spool is nearly full.",
        description=(
            "The sample spool is {{ $value | humanizePercentage }} full (threshold ${threshold}); "
            "when it is full, new samples are dropped."
        ),
        expr=_backlog_expr,
        evaluate=_backlog,
        by=(),
        threshold=0.8,
        unit=Unit.RATIO,
        for_seconds=900.0,
    ),
    AlertRule(
        name="VLLMSidecarSamplesDropped",
        severity=Severity.WARNING,
        summary="The sidecar lost sampled completions.",
        description=(
            '{{ printf "%.0f" $value }} sample records were dropped in the last 15 minutes '
            "(reason {{ $labels.reason }})."
        ),
        expr=_dropped_expr,
        evaluate=_dropped,
        by=("reason",),
        threshold=0.0,
        unit=Unit.COUNT,
        for_seconds=0.0,
    ),
    AlertRule(
        name="VLLMSidecarUploadsStalled",
        severity=Severity.WARNING,
        summary="Sampled completions are not reaching object storage.",
        description=(
            "The oldest sample record has waited {{ $value | humanizeDuration }} in the spool "
            "(threshold ${threshold}): uploads are failing or stuck."
        ),
        expr=_stalled_expr,
        evaluate=_stalled,
        by=(),
        threshold=1800.0,
        unit=Unit.SECONDS,
        for_seconds=300.0,
    ),
    AlertRule(
        name="VLLMSidecarProxyOverheadHigh",
        severity=Severity.WARNING,
        summary="The sidecar's proxy adds noticeable latency to requests.",
        description=(
            "The proxy's own share of request latency is {{ $value | humanizeDuration }} at "
            "p99 over 5 minutes (threshold ${threshold}); it is tens of microseconds when healthy."
        ),
        expr=_overhead_expr,
        evaluate=_overhead,
        by=(),
        threshold=0.05,
        unit=Unit.SECONDS,
        for_seconds=900.0,
    ),
    AlertRule(
        name="VLLMSidecarDown",
        severity=Severity.CRITICAL,
        summary="Prometheus cannot scrape the vLLM sidecar.",
        description=(
            "{{ $value | humanize }} sidecar target(s) are down. Clients that reach vLLM through "
            "its proxy are cut off, and the sidecar's own alerts stop."
        ),
        expr=_sidecar_down_expr,
        evaluate=None,
        by=(),
        for_seconds=120.0,
        prometheus_only="A process cannot report that it is down.",
    ),
    AlertRule(
        name="VLLMSidecarNotificationsFailing",
        severity=Severity.WARNING,
        summary="The sidecar cannot deliver its alert notifications.",
        description=(
            "Every notification from the sidecar to receiver {{ $labels.receiver }} failed "
            "in the last 15 minutes; its alerts reach nobody on that path."
        ),
        expr=_notifications_expr,
        evaluate=None,
        by=("receiver",),
        for_seconds=900.0,
        prometheus_only="The failing notification path cannot carry news of its own failure.",
    ),
)
