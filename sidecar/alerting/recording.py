"""Recording rules: vLLM's series folded into one name per signal, whatever vLLM release fed them.

Naming follows ``level:metric:operations``. The metric segment is the sidecar's *canonical* name
(``sidecar/scrape/catalogue.py``) behind ``vllm_``, not vLLM's exposed name, because a recorded
series may come from either the new or the legacy name (``kv_cache_usage_perc`` or
``gpu_cache_usage_perc``; ``inter_token_latency_seconds`` or ``time_per_output_token_seconds``).
The level is ``model_name`` (plus the configured instance labels). Alerts and dashboards query
these names, so they work on old and new vLLM alike. vLLM series are selected by a ``__name__``
as ``(f(vllm:x) or f(vllm_x))``, accepting the ``vllm_`` spelling OpenMetrics scrapes produce
without ever putting both spellings into one range vector (see :func:`~.promql.each_spelling`).
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar.alerting.promql import each_spelling, folded, le_matcher, selector
from sidecar.alerting.slo import LATENCY_SLOS, SLO_WINDOWS, slo_error_ratio
from sidecar.alerting.spec import RuleConfig

KV_CACHE_USAGE = "model_name:vllm_kv_cache_usage:max"
REQUESTS_WAITING = "model_name:vllm_requests_waiting:sum"
REQUESTS_RUNNING = "model_name:vllm_requests_running:sum"
PREEMPTIONS_RATE = "model_name:vllm_preemptions:rate5m"
SUCCESS_RATE = "model_name_finished_reason:vllm_request_success:rate5m"
ERROR_RATIO = "model_name:vllm_request_errors_per_request:ratio_rate5m"
PROMPT_TOKENS_RATE = "model_name:vllm_prompt_tokens:rate5m"
GENERATION_TOKENS_RATE = "model_name:vllm_generation_tokens:rate5m"
PREFIX_HIT_RATIO = "model_name:vllm_prefix_cache_hits_per_query:ratio_rate5m"
ADMISSION_RATE = "model_name:vllm_admission_rejections:rate5m"
ADMISSION_RATIO = "model_name:vllm_admission_rejections_per_request:ratio_rate5m"
"""Rejected over attempted (rejected + finished) requests; vLLM 0.32+ only."""
ITERATIONS_RATE = "model_name:vllm_engine_iterations:rate5m"
REQUESTS_DEFERRED = "model_name:vllm_requests_deferred:sum"
ENGINE_PROGRESS = "model_name:vllm_engine_progress:sum"
"""Generated tokens + finished requests + engine steps, summed raw: it changes while vLLM works."""
PROGRESS_SAMPLES = (
    ("generation_tokens", ""),
    ("request_success", ""),
    ("iteration_tokens", "_count"),
)
"""Canonical counters (histograms by their count) whose change proves the engine moved."""

ERROR_REASONS_REGEX = "error|abort"
"""``finished_reason`` values counted as failed requests (same set as the signals module)."""

LATENCY_HISTOGRAMS: dict[str, str] = {
    "ttft": "ttft_seconds",
    "itl": "itl_seconds",
    "e2e_latency": "e2e_latency_seconds",
    "queue_time": "queue_time_seconds",
}
"""Canonical histogram -> metric segment of its recorded series."""
QUANTILES = ("0.5", "0.95", "0.99")

Rule = dict[str, str]


def bucket_rate(canonical: str) -> str:
    """Name of the per-``le`` 5m rate of one latency histogram."""
    return f"model_name_le:vllm_{LATENCY_HISTOGRAMS[canonical]}_bucket:rate5m"


def quantile(canonical: str, q: str) -> str:
    """Name of a recorded quantile, e.g. ``model_name:vllm_ttft_seconds:p99_5m``."""
    percent = str(round(float(q) * 100))
    return f"model_name:vllm_{LATENCY_HISTOGRAMS[canonical]}:p{percent}_5m"


def _aggregate(
    config: RuleConfig, op: str, extra_by: str = "", rate: str = "", matcher: str = ""
) -> Callable[[str], str]:
    """A :func:`folded` template: ``op by (model_name...) ([rate(]name{sel}[rate])``."""
    by = ", ".join(part for part in (config.model_by, extra_by) if part)

    def spelt(name: str) -> str:
        series = selector(name, config.vllm_selector, matcher)
        return f"rate({series}[{rate}])" if rate else series

    def template(sample: str) -> str:
        return f"{op} by ({by}) {each_spelling(spelt, sample)}"

    return template


def _engine_rules(config: RuleConfig) -> list[Rule]:
    by = f"by ({config.model_by})"
    rate = _aggregate(config, "sum", rate="5m")
    deferred = _aggregate(config, "sum", matcher='reason="deferred"')
    return [
        {"record": KV_CACHE_USAGE, "expr": folded("kv_cache_usage", _aggregate(config, "max"))},
        {"record": REQUESTS_WAITING, "expr": folded("requests_waiting", _aggregate(config, "sum"))},
        {"record": REQUESTS_RUNNING, "expr": folded("requests_running", _aggregate(config, "sum"))},
        {"record": PREEMPTIONS_RATE, "expr": folded("preemptions", rate)},
        {"record": PROMPT_TOKENS_RATE, "expr": folded("prompt_tokens", rate)},
        {"record": GENERATION_TOKENS_RATE, "expr": folded("generation_tokens", rate)},
        {
            "record": SUCCESS_RATE,
            "expr": folded(
                "request_success", _aggregate(config, "sum", "finished_reason", rate="5m")
            ),
        },
        {
            "record": ERROR_RATIO,
            "expr": (
                f'(\n  sum {by} ({SUCCESS_RATE}{{finished_reason=~"{ERROR_REASONS_REGEX}"}})\n'
                f"  or\n  0 * sum {by} ({SUCCESS_RATE})\n)\n/\nsum {by} ({SUCCESS_RATE})"
            ),
        },
        {
            "record": PREFIX_HIT_RATIO,
            "expr": (
                f"(\n{folded('prefix_cache_hits', rate)}\n)\n"
                f"/\n(\n{folded('prefix_cache_queries', rate)}\n)"
            ),
        },
        {"record": ADMISSION_RATE, "expr": folded("admission_rejections", rate)},
        {
            "record": ADMISSION_RATIO,
            "expr": (f"{ADMISSION_RATE}\n/\n({ADMISSION_RATE} + sum {by} ({SUCCESS_RATE}))"),
        },
        {"record": ITERATIONS_RATE, "expr": folded("iteration_tokens", rate, "_count")},
        {"record": REQUESTS_DEFERRED, "expr": folded("requests_waiting_by_reason", deferred)},
        {"record": ENGINE_PROGRESS, "expr": _progress(config)},
    ]


def _progress(config: RuleConfig) -> str:
    """Every progress counter, told apart by a ``progress`` label, summed per model."""
    parts = []
    for canonical, suffix in PROGRESS_SAMPLES:

        def labelled(sample: str, canonical: str = canonical) -> str:
            series = each_spelling(lambda name: selector(name, config.vllm_selector), sample)
            return f'label_replace({series}, "progress", "{canonical}", "", "")'

        parts.append(folded(canonical, labelled, suffix))
    inner = "\n  or\n  ".join(part.replace("\n", "\n  ") for part in parts)
    return f"sum by ({config.model_by}) (\n  {inner}\n)"


def _latency_rules(config: RuleConfig) -> list[Rule]:
    rules: list[Rule] = []
    for canonical in LATENCY_HISTOGRAMS:
        template = _aggregate(config, "sum", "le", rate="5m")
        rules.append(
            {"record": bucket_rate(canonical), "expr": folded(canonical, template, "_bucket")}
        )
        rules.extend(
            {
                "record": quantile(canonical, q),
                "expr": f"histogram_quantile({q}, {bucket_rate(canonical)})",
            }
            for q in QUANTILES
        )
    return rules


def _slo_rules(config: RuleConfig) -> list[Rule]:
    rules: list[Rule] = []
    for slo in LATENCY_SLOS:
        edge = le_matcher(slo.threshold(config))
        for window in SLO_WINDOWS:

            def ratio(bucket: str, window: str = window, edge: str = edge) -> str:
                family = bucket.removesuffix("_bucket")
                good = each_spelling(
                    lambda name: f"rate({selector(name, config.vllm_selector, edge)}[{window}])",
                    bucket,
                )
                total = each_spelling(
                    lambda name: f"rate({selector(name, config.vllm_selector)}[{window}])",
                    f"{family}_count",
                )
                return (
                    f"1 - (\n  sum by ({config.model_by}) {good}\n"
                    f"  /\n  sum by ({config.model_by}) {total}\n)"
                )

            rules.append(
                {
                    "record": slo_error_ratio(slo, window),
                    "expr": folded(slo.canonical, ratio, "_bucket"),
                }
            )
    return rules


def recording_groups(config: RuleConfig) -> list[dict[str, object]]:
    """The recording rule groups of the rule file, in evaluation order."""
    return [
        {"name": "vllm-sidecar.recording", "rules": _engine_rules(config) + _latency_rules(config)},
        {"name": "vllm-sidecar.slo", "rules": _slo_rules(config)},
    ]
