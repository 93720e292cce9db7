"""Alerts about the vLLM engine: KV-cache saturation, queueing, preemptions, errors, reachability.

Each rule pairs its PromQL (over the recorded series of :mod:`.recording`) with the same test over
:class:`~sidecar.signals.derive.TargetSignals`. Both aggregate to one series per model (all
engines together; KV-cache usage is the fullest engine's), so both produce the label set
``{alertname, severity, model_name}``.

Why the KV canary is paired: vLLM V1 allocates the KV pool up front, so a full cache never shows
as a CUDA OOM. It shows as requests waiting for blocks and running requests being preempted
(recomputed later), which is what users feel. 85 % is the early warning; the critical tier needs
the cache nearly full *and* that queueing or preemption is happening.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sidecar.alerting.inputs import EvalContext
from sidecar.alerting.promql import aggregate, joined, number, presence_regex, selector
from sidecar.alerting.recording import (
    ERROR_RATIO,
    KV_CACHE_USAGE,
    PREEMPTIONS_RATE,
    REQUESTS_WAITING,
    SUCCESS_RATE,
    quantile,
)
from sidecar.alerting.spec import AlertRule, RuleConfig, Sample, Severity, Unit
from sidecar.scrape.catalogue import CATALOGUE
from sidecar.signals.derive import TargetSignals

FILLING_UP_MIN_USAGE = 0.5
"""Below half full a steep trend is usually a burst, not a cache about to fill."""


def per_model(
    ctx: EvalContext,
    value_of: Callable[[TargetSignals], float | None],
    fires: Callable[[float], bool],
) -> Iterable[Sample]:
    """One sample per model whose value exists and meets the condition."""
    for target in ctx.models():
        value = value_of(target)
        if value is not None and fires(value):
            yield Sample({"model_name": target.model_name}, value)


def _kv_saturation(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    return per_model(ctx, lambda t: t.kv_cache_usage, lambda v: v >= threshold)


def _kv_exhausted(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    def hurting(target: TargetSignals) -> bool:
        preempting = (target.preemptions_per_second.get("5m") or 0.0) > 0
        return preempting or (target.requests_waiting or 0.0) > 0

    for target in ctx.models():
        usage = target.kv_cache_usage
        if usage is not None and usage >= threshold and hurting(target):
            yield Sample({"model_name": target.model_name}, usage)


def _kv_exhausted_expr(config: RuleConfig, threshold: float) -> str:
    return (
        f"{KV_CACHE_USAGE} >= {number(threshold)}\n"
        f"and on ({config.model_by})\n"
        f"(\n  {PREEMPTIONS_RATE} > 0\n  or\n  {REQUESTS_WAITING} > 0\n)"
    )


def _kv_filling_up(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    for target in ctx.models():
        left, usage = target.kv_cache_seconds_to_full, target.kv_cache_usage
        if left is None or usage is None:
            continue
        if FILLING_UP_MIN_USAGE <= usage < 1 and left < threshold:
            yield Sample({"model_name": target.model_name}, left)


def _kv_filling_up_expr(config: RuleConfig, threshold: float) -> str:
    del config
    return (
        f"(1 - {KV_CACHE_USAGE}) / (deriv({KV_CACHE_USAGE}[5m]) > 0) < {number(threshold)}\n"
        f"and\n{KV_CACHE_USAGE} >= {number(FILLING_UP_MIN_USAGE)} < 1"
    )


def _queue_growing(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    return per_model(ctx, lambda t: t.queue_slope, lambda v: v > threshold)


def _queue_time(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    return per_model(ctx, lambda t: t.latency["queue_time"]["5m"]["0.95"], lambda v: v > threshold)


def _preemptions(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    return per_model(ctx, lambda t: t.preemptions_per_second.get("5m"), lambda v: v > threshold)


def _errors(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    return per_model(ctx, lambda t: t.error_ratio.get("5m"), lambda v: v > threshold)


def _errors_expr(config: RuleConfig, threshold: float) -> str:
    return (
        f"{ERROR_RATIO} > {number(threshold)}\n"
        f"and on ({config.model_by})\n"
        f"sum by ({config.model_by}) ({SUCCESS_RATE}) * 300 >= "
        f"{number(config.min_requests_for_ratio)}"
    )


def _down(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    del threshold
    if ctx.inputs.readings.value("vllm_sidecar_upstream_up") == 0:
        yield Sample({}, 1.0)


def _down_expr(config: RuleConfig, threshold: float) -> str:
    del threshold
    up = selector("up", config.vllm_up_selector)
    sidecar_view = selector("vllm_sidecar_upstream_up", config.sidecar_selector)
    return (
        f"{aggregate('count', config.target_by, f'{up} == 0')}\nor\n"
        f"{aggregate('count', config.target_by, f'{sidecar_view} == 0')}"
    )


def _missing(ctx: EvalContext, threshold: float) -> Iterable[Sample]:
    del threshold
    for labels, value in ctx.inputs.readings.series("vllm_sidecar_vllm_metrics_missing"):
        if value > 0:
            yield Sample({"metric": dict(labels).get("metric", "")}, 1.0)


def _missing_expr(config: RuleConfig, threshold: float) -> str:
    """The sidecar's own check, or Prometheus' check of the raw series (both by metric)."""
    del threshold
    target = config.target_by
    gauge = selector("vllm_sidecar_vllm_metrics_missing", config.sidecar_selector)
    clauses = [f"{aggregate('max', joined(target, 'metric'), gauge)} > 0"]
    up = aggregate("group", target, f"{selector('up', config.vllm_up_selector)} == 1")
    for metric in CATALOGUE:
        if not metric.required:
            continue
        present = selector("", f'__name__=~"{presence_regex(metric.name)}"', config.vllm_selector)
        absent = f"{up}\nunless on ({target})\n{aggregate('group', target, present)}"
        clauses.append(f'label_replace(\n{absent},\n"metric", "{metric.name}", "", "")')
    return "\nor\n".join(clauses)


SUMMARY_KV = "A model's KV cache is nearly full; new requests will queue instead of running."

ENGINE_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        name="VLLMKVCacheSaturation",
        severity=Severity.WARNING,
        summary=SUMMARY_KV,
        description=(
            "KV-cache usage of model {{ $labels.model_name }} is {{ $value | humanizePercentage }} "
            "(threshold ${threshold}). vLLM pre-allocates the cache, so this is not an imminent "
            "CUDA OOM: once it is full, requests wait for blocks and running ones get preempted."
        ),
        expr=lambda config, threshold: f"{KV_CACHE_USAGE} >= {number(threshold)}",
        evaluate=_kv_saturation,
        threshold=0.85,
        unit=Unit.RATIO,
        for_seconds=300.0,
    ),
    AlertRule(
        name="VLLMKVCacheExhausted",
        severity=Severity.CRITICAL,
        summary="A model's KV cache is full and requests are queueing or being preempted.",
        description=(
            "KV-cache usage of model {{ $labels.model_name }} is {{ $value | humanizePercentage }} "
            "(threshold ${threshold}) while requests wait or running requests are preempted: "
            "users see growing time to first token and slower streams."
        ),
        expr=_kv_exhausted_expr,
        evaluate=_kv_exhausted,
        threshold=0.95,
        unit=Unit.RATIO,
        for_seconds=120.0,
        inhibits=("VLLMKVCacheSaturation", "VLLMKVCacheFillingUp"),
    ),
    AlertRule(
        name="VLLMKVCacheFillingUp",
        severity=Severity.WARNING,
        summary="At the current trend a model's KV cache will be full soon.",
        description=(
            "KV-cache usage of model {{ $labels.model_name }} is rising and reaches 100% in "
            "{{ $value | humanizeDuration }} at the 5-minute trend (threshold ${threshold})."
        ),
        expr=_kv_filling_up_expr,
        evaluate=_kv_filling_up,
        threshold=600.0,
        unit=Unit.SECONDS,
        for_seconds=300.0,
    ),
    AlertRule(
        name="VLLMRequestQueueGrowing",
        severity=Severity.WARNING,
        summary="Requests are waiting for a model faster than it serves them.",
        description=(
            "The waiting queue of model {{ $labels.model_name }} grows by "
            '{{ printf "%.2f" $value }} requests per second over 5 minutes '
            "(threshold ${threshold})."
        ),
        expr=lambda config, threshold: f"deriv({REQUESTS_WAITING}[5m]) > {number(threshold)}",
        evaluate=_queue_growing,
        threshold=0.05,
        unit=Unit.PER_SECOND,
        for_seconds=600.0,
    ),
    AlertRule(
        name="VLLMRequestQueueTimeHigh",
        severity=Severity.WARNING,
        summary="Requests wait too long before a model starts on them.",
        description=(
            "95% of requests to model {{ $labels.model_name }} waited up to "
            "{{ $value | humanizeDuration }} in the queue over 5 minutes "
            "(threshold ${threshold})."
        ),
        expr=lambda config, threshold: f"{quantile('queue_time', '0.95')} > {number(threshold)}",
        evaluate=_queue_time,
        threshold=5.0,
        unit=Unit.SECONDS,
        for_seconds=600.0,
    ),
    AlertRule(
        name="VLLMPreemptionsSustained",
        severity=Severity.WARNING,
        summary="A model keeps preempting running requests for lack of KV-cache space.",
        description=(
            "Model {{ $labels.model_name }} preempts "
            '{{ printf "%.3f" $value }} requests per second over 5 minutes '
            "(threshold ${threshold}); preempted requests are recomputed, "
            "which wastes GPU time and stalls their streams."
        ),
        expr=lambda config, threshold: f"{PREEMPTIONS_RATE} > {number(threshold)}",
        evaluate=_preemptions,
        threshold=0.01,
        unit=Unit.PER_SECOND,
        for_seconds=900.0,
    ),
    AlertRule(
        name="VLLMRequestErrorsHigh",
        severity=Severity.WARNING,
        summary="Too many of a model's requests end in an error or abort.",
        description=(
            "{{ $value | humanizePercentage }} of requests to model {{ $labels.model_name }} "
            "finished with reason error or abort over 5 minutes (threshold ${threshold}, "
            "alerting only above ${floor} requests)."
        ),
        expr=_errors_expr,
        evaluate=_errors,
        threshold=0.05,
        unit=Unit.RATIO,
        for_seconds=300.0,
        params=lambda config: {"floor": number(config.min_requests_for_ratio)},
    ),
    AlertRule(
        name="VLLMDown",
        severity=Severity.CRITICAL,
        summary="The vLLM metrics endpoint cannot be scraped.",
        description=(
            "{{ $value | humanize }} vLLM target(s) failed their last scrape (as seen by "
            "Prometheus or by the sidecar): vLLM is down, unreachable or serving a broken "
            "/metrics page. Every other vLLM alert is blind meanwhile."
        ),
        expr=_down_expr,
        evaluate=_down,
        by=(),
        for_seconds=60.0,
        inhibits=("VLLMMetricsMissing",),
    ),
    AlertRule(
        name="VLLMMetricsMissing",
        severity=Severity.WARNING,
        summary="The vLLM server is up but a metric the alerts depend on is missing or renamed.",
        description=(
            "vLLM exposes no series for {{ $labels.metric }} under any name the sidecar knows. "
            "A vLLM upgrade probably renamed or dropped it; alerts built on it cannot fire "
            "until the name catalogue and rules are updated."
        ),
        expr=_missing_expr,
        evaluate=_missing,
        by=("metric",),
        for_seconds=600.0,
    ),
)
