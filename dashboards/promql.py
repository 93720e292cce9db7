"""PromQL fragments shared by the dashboards: selectors, rates, quantiles, legacy fallbacks.

Every selector goes through :func:`selector` so it always carries the dashboard's filter
(``job`` / ``instance`` / ``model_name`` template variables); every range is ``$__rate_interval``.

vLLM names reach Prometheus in two spellings: ``vllm:x`` when Prometheus scrapes the classic text
format, and ``vllm_x`` when it negotiates OpenMetrics (Prometheus' default) and vLLM's
prometheus_client escapes the colon (0.26 does). Every vLLM selector is ``(vllm:x{..} or
vllm_x{..})``, built by :func:`sidecar.alerting.promql.each_spelling` (one home for the rule
generator and the dashboards): ``or`` rather than a ``__name__`` regex so an overlap of the two
spellings in one window cannot make ``rate()`` fail on duplicate series.

Legacy vLLM names are handled with ``or`` *inside* the aggregation, per series, never around it:
``sum by (le) (rate(new[R]) or rate(old[R]))`` keeps a fleet that mixes old and new vLLM
correct (an outer ``sum(new) or sum(old)`` would drop every old server as soon as one new one
exists). ``or`` matches label sets without the metric name, so on vLLM 0.9.2-0.11, which exposes
both names for the same series, the new one wins and nothing is counted twice. We do this in
the dashboards rather than through the alert pack's recording rules because a user's Prometheus
may not load those rules; the boards must work against a bare scrape.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.alerting.promql import each_spelling, spellings

RATE_INTERVAL = "$__rate_interval"

ENGINE_FILTER = 'job=~"$job", instance=~"$instance", model_name=~"$model_name"'
"""vLLM's own series (scraped from vLLM's /metrics): every one carries ``model_name``."""

SIDECAR_FILTER = 'job=~"$job", instance=~"$instance"'
"""The sidecar's process-wide series (proxy overhead, sampling, spool, scrape health)."""

SIDECAR_MODEL_FILTER = SIDECAR_FILTER + ', model_name=~"$model_name"'
"""The sidecar's per-model series (proxy histograms, derived engine gauges)."""

QUANTILES: tuple[str, ...] = ("0.5", "0.95", "0.99")
QUANTILE_LEGEND = {"0.5": "p50", "0.95": "p95", "0.99": "p99"}


def selector(metric: str, filters: str, *matchers: str) -> str:
    """``metric{filters, matchers...}``."""
    return metric + "{" + ", ".join((filters, *matchers)) + "}"


def rate(metric: str, filters: str, *matchers: str) -> str:
    """Per-second rate of a counter (or histogram part) over ``$__rate_interval``."""
    return f"rate({selector(metric, filters, *matchers)}[{RATE_INTERVAL}])"


def first_present(*exprs: str) -> str:
    """The first expression that has a series for a given label set (``a or b or c``)."""
    return "(" + " or ".join(exprs) + ")"


def by(labels: Sequence[str]) -> str:
    """`` by (a, b)`` or nothing."""
    return f" by ({', '.join(labels)})" if labels else ""


def agg(op: str, expr: str, labels: Sequence[str] = ()) -> str:
    """``op by (labels) (expr)``."""
    return f"{op}{by(labels)} ({expr})"


def histogram_quantile(q: str, bucket_rate: str, labels: Sequence[str] = ()) -> str:
    """Quantile of bucket rates summed over everything but ``le`` and ``labels``."""
    return f"histogram_quantile({q}, {agg('sum', bucket_rate, ('le', *labels))})"


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator``, undefined (not +Inf) where the denominator is 0."""
    return f"{numerator} / ({denominator} > 0)"


def zero_if_absent(expr: str, like: str) -> str:
    """``expr``, or 0 for every label set of ``like`` that ``expr`` lacks (a true zero)."""
    return f"({expr} or {like} * 0)"


# --- vLLM series that changed names across versions -----------------------------------------


def engine(metric: str, *matchers: str) -> str:
    """A vLLM series under the engine filter, in either spelling."""
    return each_spelling(lambda name: selector(name, ENGINE_FILTER, *matchers), metric)


def engine_rate(metric: str, *matchers: str) -> str:
    """Rate of a vLLM counter under the engine filter, in either spelling."""
    return each_spelling(lambda name: rate(name, ENGINE_FILTER, *matchers), metric)


def engine_series(metric: str) -> str:
    """A ``label_values()`` series selector matching both spellings of a vLLM metric."""
    colon, underscore = spellings(metric)
    return '{__name__=~"' + colon + "|" + underscore + '"}'


def kv_cache_usage() -> str:
    """KV-cache usage 0..1 per engine; ``gpu_cache_usage_perc`` before vLLM 0.9.2 (removed 0.12)."""
    return first_present(engine("vllm:kv_cache_usage_perc"), engine("vllm:gpu_cache_usage_perc"))


def inter_token_bucket_rate() -> str:
    """ITL bucket rates; ``time_per_output_token_seconds`` (same observations) before 0.11."""
    return first_present(
        engine_rate("vllm:inter_token_latency_seconds_bucket"),
        engine_rate("vllm:time_per_output_token_seconds_bucket"),
    )


def prefix_cache_hit_ratio(labels: Sequence[str]) -> str:
    """Hit tokens over queried tokens in the window, by ``labels``.

    Counters are ``prefix_cache_*`` since 0.9.2 and ``gpu_prefix_cache_*`` on V1 before that
    (blocks instead of tokens, which a ratio does not mind). V0 (<= 0.8) only had a gauge
    ``gpu_prefix_cache_hit_rate``, -1 when prefix caching is off; it is the last fallback, with
    -1 kept so the panel can say "disabled" instead of showing nothing.
    """
    hits = agg(
        "sum",
        first_present(
            engine_rate("vllm:prefix_cache_hits_total"),
            engine_rate("vllm:gpu_prefix_cache_hits_total"),
        ),
        labels,
    )
    queries = agg(
        "sum",
        first_present(
            engine_rate("vllm:prefix_cache_queries_total"),
            engine_rate("vllm:gpu_prefix_cache_queries_total"),
        ),
        labels,
    )
    legacy_gauge = agg("max", engine("vllm:gpu_prefix_cache_hit_rate"), labels)
    return f"({ratio(hits, queries)}) or {legacy_gauge}"


def finished_requests_rate(labels: Sequence[str], *matchers: str) -> str:
    """Finished requests per second (every ``finished_reason``), by ``labels``."""
    return agg("sum", engine_rate("vllm:request_success_total", *matchers), labels)


def error_ratio(labels: Sequence[str]) -> str:
    """Share of finished requests that ended in ``error`` or ``abort``.

    Older vLLM has no ``error`` (added 2025-12) and creates ``abort`` lazily, so a missing
    numerator is a true zero for every label set that finished requests.
    """
    finished = finished_requests_rate(labels)
    failed = finished_requests_rate(labels, 'finished_reason=~"error|abort"')
    return ratio(zero_if_absent(failed, finished), finished)


def instances_by_model() -> str:
    """Number of vLLM servers (job, instance) serving each model; engines fold into one."""
    per_server = agg(
        "count", engine("vllm:num_requests_running"), ("model_name", "job", "instance")
    )
    return agg("count", per_server, ("model_name",))


def tokens_per_second(labels: Sequence[str], which: str = "both") -> str:
    """Prompt, generation or both token rates, summed by ``labels``."""
    prompt = agg("sum", engine_rate("vllm:prompt_tokens_total"), labels)
    generation = agg("sum", engine_rate("vllm:generation_tokens_total"), labels)
    if which == "prompt":
        return prompt
    if which == "generation":
        return generation
    return f"({prompt} + {generation})"


# --- serving: progress, backpressure, cache sources, sleep (vLLM 0.32+ with fallbacks) -------


def admission_rejections_rate(labels: Sequence[str]) -> str:
    """Requests rejected at admission per second (vLLM 0.32+); a true 0 on older vLLM.

    vLLM before 0.32 had no admission limit, so it rejected nothing: 0 for every label set that
    finished requests, not an empty panel.
    """
    rejected = agg("sum", engine_rate("vllm:admission_rejections_total"), labels)
    return zero_if_absent(rejected, finished_requests_rate(labels))


def waiting_by_reason(labels: Sequence[str]) -> str:
    """Waiting requests by ``reason`` (capacity, deferred); before vLLM 0.32 all are capacity."""
    split = agg("sum", engine("vllm:num_requests_waiting_by_reason"), (*labels, "reason"))
    unsplit = agg("sum", engine("vllm:num_requests_waiting"), labels)
    return f'({split} or label_replace({unsplit}, "reason", "capacity", "", ""))'


def cached_prompt_share(labels: Sequence[str]) -> str:
    """Share of prompt tokens served from a cache (local or external), by ``labels``.

    ``prompt_tokens_cached_total`` (vLLM 0.32+) over ``prompt_tokens_total``; older vLLM falls
    back to the prefix-cache hit ratio (hit tokens over queried tokens, nearly the same thing).
    """
    cached = agg("sum", engine_rate("vllm:prompt_tokens_cached_total"), labels)
    prompt = agg("sum", engine_rate("vllm:prompt_tokens_total"), labels)
    return f"({ratio(cached, prompt)}) or {prefix_cache_hit_ratio(labels)}"


def prompt_tokens_by_source(labels: Sequence[str]) -> str:
    """Prompt tokens per second by ``source``, by ``labels``.

    Sources are local_compute, local_cache_hit and external_kv_transfer. Before vLLM 0.32 there
    is no split: the total appears with ``source="all"``.
    """
    split = agg("sum", engine_rate("vllm:prompt_tokens_by_source_total"), (*labels, "source"))
    total = agg("sum", engine_rate("vllm:prompt_tokens_total"), labels)
    return f'({split} or label_replace({total}, "source", "all", "", ""))'


def engines_awake(labels: Sequence[str]) -> str:
    """Engines awake (``engine_sleep_state{sleep_state="awake"}``), by ``labels``.

    vLLM before the sleep-state gauge cannot report sleeping; an engine that serves its metrics is
    counted awake there (one per engine series of ``num_requests_running``).
    """
    awake = agg("sum", engine("vllm:engine_sleep_state", 'sleep_state="awake"'), labels)
    engines = agg("count", engine("vllm:num_requests_running"), labels)
    return f"({awake} or {engines})"


def engines_asleep(labels: Sequence[str]) -> str:
    """Engines in sleep level 1 (weights offloaded) or 2 (everything discarded), by ``labels``."""
    asleep = agg(
        "sum",
        engine("vllm:engine_sleep_state", 'sleep_state=~"weights_offloaded|discard_all"'),
        labels,
    )
    return zero_if_absent(asleep, agg("count", engine("vllm:num_requests_running"), labels))
