"""Alerts about how vLLM fails to serve while it still looks alive: stalls, backpressure, skew.

* **Stalled engine.** The EngineCore can hang (or die) while the API server keeps answering
  ``/health`` and ``/metrics``: requests sit in ``running``/``waiting`` and nothing moves. Progress
  is any of generated tokens, finished requests or engine iterations (``iteration_tokens_total``
  counts every engine step, prefill chunks included, so a long prefill is not a stall). The
  threshold is the window, in seconds, that must pass without progress; ``for`` (1m) comes on top.
* **Backpressure.** vLLM 0.32+ with ``--max-num-queued-reqs/-tokens`` answers 503 at admission and
  counts it in ``admission_rejections_total{reason}``; it also splits waiting requests into
  ``capacity`` and ``deferred`` (LoRA budget, KV transfer, blocked), where deferred requests wait
  on something more capacity will not fix.
* **Data-parallel imbalance.** Per-model aggregates hide one saturated engine beside idle ones:
  the gap between the fullest and the emptiest engine (KV usage, or waiting requests) is compared.

Progress in PromQL is ``changes()`` of one recorded per-model sum of the raw progress counters, so
the stall window (the threshold, in seconds) appears once in the rule and the chart can set it.

The in-process side reads the same numbers: :class:`~sidecar.signals.derive.TargetSignals` per
model and per engine, plus per-model progress counters recorded into the engine's
:class:`~sidecar.alerting.history.CounterHistory` (windows of any length, as ``increase()``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.alerting.history import CounterHistory
from sidecar.alerting.inputs import EvalContext
from sidecar.alerting.promql import each_spelling, number
from sidecar.alerting.promql import selector as plain_selector
from sidecar.alerting.recording import (
    ADMISSION_RATE,
    ADMISSION_RATIO,
    ENGINE_PROGRESS,
    PROGRESS_SAMPLES,
    REQUESTS_DEFERRED,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    SUCCESS_RATE,
)
from sidecar.alerting.spec import AlertRule, RuleConfig, Sample, Severity, Unit
from sidecar.snapshot import Snapshot

PROGRESS_SPAN = 3600.0
IMBALANCE_QUEUE_GAP = 10.0
"""Waiting requests by which the most loaded engine must lead the least loaded one."""
WINDOW_5M = 300.0


def record_progress(history: CounterHistory, snapshot: Snapshot) -> None:
    """Record each model's progress total (tokens + finished requests + engine steps).

    Stamped with the scrape's time, not the evaluation's: the engine evaluates again on the same
    snapshot after a missed scrape, and a reading stamped "now" would read as a flat counter, so
    one scrape's numbers alone would look like a stall. "No progress" takes two scrapes.
    """
    totals: dict[str, float] = {}
    for name, suffix in PROGRESS_SAMPLES:
        if suffix:
            for key, histogram in snapshot.histograms.get(name, {}).items():
                totals[key.model_name] = totals.get(key.model_name, 0.0) + histogram.count
        else:
            for key, value in snapshot.counters.get(name, {}).items():
                totals[key.model_name] = totals.get(key.model_name, 0.0) + value
    for model, total in totals.items():
        history.add(("progress", model), snapshot.monotonic, total, max_span=PROGRESS_SPAN)


def _stalled(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    for target in ctx.models():
        busy = (target.requests_running or 0.0) + (target.requests_waiting or 0.0)
        if busy <= 0:
            continue
        moved = ctx.history.increase(("progress", target.model_name), threshold, ctx.now)
        if moved is not None and moved <= 0:
            yield Sample({"model_name": target.model_name}, busy)


def _stalled_expr(config: RuleConfig, threshold: float) -> str:
    return (
        f"({REQUESTS_RUNNING} + {REQUESTS_WAITING}) > 0\n"
        f"and on ({config.model_by})\n"
        f"changes({ENGINE_PROGRESS}[{number(threshold)}s]) == 0"
    )


def _rejections(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    floor = ctx.config.min_requests_for_ratio
    for target in ctx.models():
        rejected = target.admission_rejections_per_second.get("5m")
        finished = target.requests_per_second.get("5m")
        if rejected is None:
            continue
        attempts = rejected + (finished or 0.0)
        if attempts <= 0 or attempts * WINDOW_5M < floor:
            continue
        if rejected / attempts > threshold:
            yield Sample({"model_name": target.model_name}, rejected / attempts)


def _rejections_expr(config: RuleConfig, threshold: float) -> str:
    attempts = f"{ADMISSION_RATE} + sum by ({config.model_by}) ({SUCCESS_RATE})"
    return (
        f"{ADMISSION_RATIO} > {number(threshold)}\n"
        f"and on ({config.model_by})\n"
        f"({attempts}) * 300 >= {number(config.min_requests_for_ratio)}"
    )


def _deferred(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    for target in ctx.models():
        deferred = target.requests_deferred
        if deferred is not None and deferred > threshold:
            yield Sample({"model_name": target.model_name}, deferred)


def _imbalance(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    if ctx.inputs.signals is None or not ctx.fresh:
        return
    per_engine: dict[tuple[str, str], list[float]] = {}
    for target in ctx.inputs.signals.targets:
        if target.engine is None:
            continue
        for signal, value in (
            ("kv_cache", target.kv_cache_usage),
            ("queue", target.requests_waiting),
        ):
            if value is not None:
                per_engine.setdefault((target.model_name, signal), []).append(value)
    limits = {"kv_cache": threshold, "queue": IMBALANCE_QUEUE_GAP}
    for (model, signal), values in per_engine.items():
        gap = max(values) - min(values)
        if len(values) >= 2 and gap >= limits[signal]:
            yield Sample({"model_name": model, "signal": signal}, gap)


def _imbalance_expr(config: RuleConfig, threshold: float) -> str:
    """Engines are compared within one server (every label but ``engine`` kept), then the worst
    server's gap is reported per model: grouping ``by (model_name, engine)`` across servers mixed
    one server's engine 0 with another's, hiding mirrored imbalance and inventing it between a
    balanced server and a busy single-engine one. The engine sees one server, so both agree."""

    def gap(sample: str, limit: float, signal: str) -> str:
        spelt = each_spelling(lambda name: plain_selector(name, config.vllm_selector), sample)
        spread = f"max without (engine) {spelt}\n    -\n    min without (engine) {spelt}"
        worst = f"max by ({config.model_by}) (\n    {spread}\n  )"
        named = f'"signal", "{signal}", "", ""'
        return f"label_replace(\n  {worst}\n  >= {number(limit)},\n  {named}\n)"

    return (
        f"{gap('vllm:kv_cache_usage_perc', threshold, 'kv_cache')}\nor\n"
        f"{gap('vllm:num_requests_waiting', IMBALANCE_QUEUE_GAP, 'queue')}"
    )


SERVING_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        name="VLLMEngineStalled",
        severity=Severity.CRITICAL,
        summary="A model has requests in flight but its engine makes no progress.",
        description=(
            "{{ $value | humanize }} request(s) of model {{ $labels.model_name }} are running or "
            "waiting, yet no token was generated, no request finished and the engine did not step "
            "for ${threshold}, while the server still answers: the EngineCore is hung or dead."
        ),
        expr=_stalled_expr,
        evaluate=_stalled,
        threshold=120.0,
        unit=Unit.SECONDS,
        for_seconds=60.0,
        inhibits=("VLLMRequestQueueGrowing", "VLLMRequestQueueTimeHigh"),
    ),
    AlertRule(
        name="VLLMAdmissionRejections",
        severity=Severity.WARNING,
        summary="The vLLM server turns requests away at admission: its queue limits are reached.",
        description=(
            "{{ $value | humanizePercentage }} of requests to model {{ $labels.model_name }} were "
            "rejected at admission (HTTP 503) over 5 minutes (threshold ${threshold}, alerting "
            "only above ${floor} requests): --max-num-queued-reqs/-tokens are reached."
        ),
        expr=_rejections_expr,
        evaluate=_rejections,
        threshold=0.05,
        unit=Unit.RATIO,
        for_seconds=300.0,
        params=lambda config: {"floor": number(config.min_requests_for_ratio)},
    ),
    AlertRule(
        name="VLLMRequestsDeferred",
        severity=Severity.WARNING,
        summary="Requests keep waiting on constraints that more capacity does not lift.",
        description=(
            "{{ $value | humanize }} request(s) of model {{ $labels.model_name }} are deferred "
            "(LoRA budget, KV transfer or a blocked state), and have been for a sustained "
            "period: they wait however much capacity is free."
        ),
        expr=lambda config, threshold: f"{REQUESTS_DEFERRED} > {number(threshold)}",
        evaluate=_deferred,
        threshold=0.0,
        unit=Unit.COUNT,
        for_seconds=600.0,
    ),
    AlertRule(
        name="VLLMEngineImbalance",
        severity=Severity.WARNING,
        summary="One data-parallel engine carries far more load than the others.",
        description=(
            "The {{ $labels.signal }} of model {{ $labels.model_name }}'s fullest engine leads "
            'the emptiest one by {{ printf "%.2f" $value }} (threshold ${threshold} of KV '
            "usage, or ${queue_gap} waiting requests): the router or the data-parallel "
            "balancer is sending work to one engine."
        ),
        expr=_imbalance_expr,
        evaluate=_imbalance,
        by=("model_name", "signal"),
        threshold=0.4,
        unit=Unit.RATIO,
        for_seconds=600.0,
        params=lambda config: {"queue_gap": number(IMBALANCE_QUEUE_GAP)},
    ),
)
