"""vLLM overview: the golden signals of every vLLM server, for one server or a fleet, per model.

Everything here is computed in PromQL from vLLM's own ``/metrics`` (scraped by Prometheus), not
from the sidecar's per-pod quantile gauges: histogram buckets summed across pods give true fleet
percentiles, quantiles of pods cannot be averaged. KV-cache usage is a fraction per engine, so it
is shown as the max (the engine that preempts first) and the average per model, never a sum.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from dashboards import promql
from dashboards.board import Board, filter_chain
from dashboards.panels import (
    KV_THRESHOLDS,
    Query,
    heatmap_panel,
    stat_panel,
    table_panel,
    thresholds,
    timeseries_panel,
)
from dashboards.promql import (
    QUANTILE_LEGEND,
    QUANTILES,
    agg,
    engine,
    engine_rate,
    histogram_quantile,
)

UID = "vllm-sidecar-overview"
BY_MODEL = ("model_name",)
ERROR_THRESHOLDS = thresholds((None, "green"), (0.001, "orange"), (0.01, "red"))

ALERTS_FILTER = 'alertstate="firing", alertname=~"VLLM.*", model_name=~"$model_name|"'
"""Firing vLLM/sidecar alerts; ``$model_name|`` also keeps alerts without a model label."""

PREFIX_DISABLED = model.ValueMap(
    options={"-1": model.ValueMappingResult(text="disabled", color="text", index=0)}
)
"""vLLM <= 0.8 reports -1 when prefix caching is off."""


def _latency_queries(bucket_rate: str) -> list[Query]:
    return [
        Query(
            histogram_quantile(q, bucket_rate, BY_MODEL),
            legend=f"{{{{model_name}}}} {QUANTILE_LEGEND[q]}",
        )
        for q in QUANTILES
    ]


def _top_stats(board: Board) -> None:
    board.row("Fleet at a glance").add(
        stat_panel(
            "Finished requests / s",
            "Requests vLLM finished per second (any finish reason), across the selection.",
            "reqps",
            [Query(promql.finished_requests_rate(()))],
        ),
        stat_panel(
            "Error ratio",
            "Share of finished requests that ended in error or abort over the rate window.",
            "percentunit",
            [Query(promql.error_ratio(()))],
            limits=ERROR_THRESHOLDS,
        ),
        stat_panel(
            "TTFT p95",
            "95th percentile time to first token across the selection (vLLM's histogram).",
            "s",
            [
                Query(
                    histogram_quantile(
                        "0.95", engine_rate("vllm:time_to_first_token_seconds_bucket")
                    )
                )
            ],
        ),
        stat_panel(
            "Inter-token latency p95",
            "95th percentile time between output tokens across the selection.",
            "s",
            [Query(histogram_quantile("0.95", promql.inter_token_bucket_rate()))],
        ),
        stat_panel(
            "KV cache, fullest engine",
            "KV-cache usage of the fullest engine in the selection; orange from the 85% canary.",
            "percentunit",
            [Query(agg("max", promql.kv_cache_usage()))],
            limits=KV_THRESHOLDS,
        ),
        stat_panel(
            "Firing alerts",
            "Alerts named VLLM* firing in Prometheus for the selected models (0 is good).",
            "none",
            [Query(f"count(ALERTS{{{ALERTS_FILTER}}}) or vector(0)")],
            limits=thresholds((None, "green"), (1, "red")),
            decimals=0,
        ),
    )


def _traffic(board: Board) -> None:
    board.row("Traffic and errors").add(
        timeseries_panel(
            "Finished requests / s by model",
            "Requests vLLM finished per second, per served model.",
            "reqps",
            [Query(promql.finished_requests_rate(BY_MODEL), legend="{{model_name}}")],
        ),
        timeseries_panel(
            "Finish reasons",
            "Finished requests per second by finish reason: stop and length are normal, "
            "abort and error are failures.",
            "reqps",
            [
                Query(
                    promql.finished_requests_rate(("model_name", "finished_reason")),
                    legend="{{model_name}} {{finished_reason}}",
                )
            ],
        ),
        timeseries_panel(
            "Error ratio by model",
            "Share of finished requests per model that ended in error or abort.",
            "percentunit",
            [Query(promql.error_ratio(BY_MODEL), legend="{{model_name}}")],
            limits=ERROR_THRESHOLDS,
        ),
    )


def _latency(board: Board) -> None:
    board.row("Latency (engine side)").add(
        timeseries_panel(
            "Time to first token",
            "TTFT p50/p95/p99 per model from vLLM's histogram (arrival to first token).",
            "s",
            _latency_queries(engine_rate("vllm:time_to_first_token_seconds_bucket")),
        ),
        timeseries_panel(
            "Inter-token latency",
            "Time between output tokens p50/p95/p99 per model (time_per_output_token on "
            "vLLM before 0.11).",
            "s",
            _latency_queries(promql.inter_token_bucket_rate()),
        ),
        timeseries_panel(
            "End-to-end latency",
            "Request latency p50/p95/p99 per model, arrival to last token.",
            "s",
            _latency_queries(engine_rate("vllm:e2e_request_latency_seconds_bucket")),
        ),
    )


def _saturation(board: Board) -> None:
    kv = promql.kv_cache_usage()
    board.row("Queue, KV cache and preemptions").add(
        timeseries_panel(
            "Requests running and waiting",
            "Requests in the running batch and in the queue, summed per model over servers.",
            "short",
            [
                Query(
                    agg("sum", engine("vllm:num_requests_running"), BY_MODEL),
                    legend="{{model_name}} running",
                ),
                Query(
                    agg("sum", engine("vllm:num_requests_waiting"), BY_MODEL),
                    legend="{{model_name}} waiting",
                ),
            ],
        ),
        timeseries_panel(
            "KV-cache usage by model",
            "Fullest engine (max) and average engine per model; the dashed line is the 85% "
            "canary. Never summed: a sum of fractions across pods means nothing.",
            "percentunit",
            [
                Query(agg("max", kv, BY_MODEL), legend="{{model_name}} max"),
                Query(agg("avg", kv, BY_MODEL), legend="{{model_name}} avg"),
            ],
            max_value=1,
            limits=KV_THRESHOLDS,
        ),
        timeseries_panel(
            "KV-cache usage by instance",
            "Fullest engine of each server, to find the pod that will preempt first; dashed "
            "line at the 85% canary.",
            "percentunit",
            [
                Query(
                    agg("max", kv, ("model_name", "instance")),
                    legend="{{instance}} {{model_name}}",
                )
            ],
            max_value=1,
            limits=KV_THRESHOLDS,
        ),
        timeseries_panel(
            "Preemptions / s",
            "Requests pushed out of the batch because the KV cache was full, per model.",
            "ops",
            [
                Query(
                    agg("sum", engine_rate("vllm:num_preemptions_total"), BY_MODEL),
                    legend="{{model_name}}",
                )
            ],
        ),
        timeseries_panel(
            "Token throughput",
            "Prompt (prefill) and generated tokens per second, per model.",
            "suffix: tok/s",
            [
                Query(promql.tokens_per_second(BY_MODEL, "prompt"), legend="{{model_name}} prompt"),
                Query(
                    promql.tokens_per_second(BY_MODEL, "generation"),
                    legend="{{model_name}} generation",
                ),
            ],
        ),
        timeseries_panel(
            "Prefix-cache hit ratio",
            "Prompt tokens served from the prefix cache over tokens looked up, per model "
            "(vLLM <= 0.8: its own gauge, -1 = prefix caching disabled).",
            "percentunit",
            [Query(promql.prefix_cache_hit_ratio(BY_MODEL), legend="{{model_name}}")],
            min_value=None,
            max_value=1,
        ).mappings([PREFIX_DISABLED]),
    )


def _serving(board: Board) -> None:
    per_engine = ("model_name", "instance", "engine")
    board.row("Stalls and backpressure").add(
        timeseries_panel(
            "Engine progress",
            "Generated tokens and finished requests per second, per model. Both at 0 while "
            "requests are running is a stalled engine, whatever /health says (VLLMEngineStalled "
            "also checks engine steps, so a long prefill is not mistaken for a stall).",
            "ops",
            [
                Query(
                    promql.tokens_per_second(BY_MODEL, "generation"),
                    legend="{{model_name}} tokens",
                ),
                Query(promql.finished_requests_rate(BY_MODEL), legend="{{model_name}} finished"),
            ],
        ),
        timeseries_panel(
            "Admission rejections / s",
            "Requests vLLM (0.32+, --max-num-queued-reqs/-tokens) turned away with a 503 at "
            "admission, per model; always 0 on older vLLM, which had no admission limit.",
            "reqps",
            [Query(promql.admission_rejections_rate(BY_MODEL), legend="{{model_name}}")],
        ),
        timeseries_panel(
            "Waiting requests by reason",
            "Waiting for capacity, or deferred by a LoRA budget, KV transfer or blocked state "
            "(vLLM 0.32+; older vLLM does not split, shown as capacity).",
            "short",
            [Query(promql.waiting_by_reason(BY_MODEL), legend="{{model_name}} {{reason}}")],
        ),
        timeseries_panel(
            "KV-cache usage by engine",
            "Each data-parallel engine's KV-cache usage: one engine far above the others is "
            "an imbalance (VLLMEngineImbalance) that per-model averages hide. Dashed line at "
            "the 85% canary.",
            "percentunit",
            [
                Query(
                    agg("max", promql.kv_cache_usage(), per_engine),
                    legend="{{instance}} {{model_name}} engine {{engine}}",
                )
            ],
            max_value=1,
            limits=KV_THRESHOLDS,
        ),
        timeseries_panel(
            "Waiting requests by engine",
            "Each data-parallel engine's waiting queue, to spot one engine taking the load.",
            "short",
            [
                Query(
                    agg("sum", engine("vllm:num_requests_waiting"), per_engine),
                    legend="{{instance}} {{model_name}} engine {{engine}}",
                )
            ],
        ),
    )


def _workload(board: Board) -> None:
    board.row("Workload shape").add(
        heatmap_panel(
            "Prompt length",
            "Distribution of prompt lengths in tokens (finished requests per second per bucket).",
            "short",
            agg("sum", engine_rate("vllm:request_prompt_tokens_bucket"), ("le",)),
        ),
        heatmap_panel(
            "Generation length",
            "Distribution of generated tokens per request (finished requests per second per "
            "bucket).",
            "short",
            agg("sum", engine_rate("vllm:request_generation_tokens_bucket"), ("le",)),
        ),
    )


def _alerts(board: Board) -> None:
    board.row("Alerts").add(
        table_panel(
            "Alerts firing now",
            "Alerts named VLLM* that Prometheus reports as firing now, one row per alert and "
            "label set (needs the alert pack's rules loaded in Prometheus).",
            "none",
            [
                Query(
                    agg(
                        "sum",
                        f"ALERTS{{{ALERTS_FILTER}}}",
                        ("alertname", "severity", "model_name", "instance"),
                    ),
                    legend="{{alertname}}",
                    instant=True,
                    table=True,
                )
            ],
        ),
    )


def build() -> model.Dashboard:
    """The vLLM overview dashboard."""
    board = Board(
        UID,
        "vLLM / Overview",
        "Golden signals of vLLM servers from their own /metrics: traffic, errors, latency, "
        "queue, KV cache, throughput and alerts, per model, for one server or a fleet.",
    )
    for variable in filter_chain(promql.engine_series("vllm:num_requests_running")):
        board.variable(variable)
    _top_stats(board)
    _traffic(board)
    _latency(board)
    _saturation(board)
    _serving(board)
    _workload(board)
    _alerts(board)
    return board.build()
