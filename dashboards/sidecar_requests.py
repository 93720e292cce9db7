"""Requests through the sidecar: what clients see, what the proxy costs, what sampling keeps.

Client-side latency comes from the proxy's own histograms (``vllm_sidecar_proxy_*``), which
start when the proxy receives a request and include the network and queueing in front of vLLM;
the engine-side numbers next to them are the sidecar's derived gauges for the same model, so the
gap between the two lines is time spent outside vLLM's engine. Sampling and spool series answer
"is anything lost, and where": taken = written + dropped + still spooled.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from dashboards.board import Board, filter_chain
from dashboards.panels import Query, stat_panel, thresholds, timeseries_panel
from dashboards.promql import (
    QUANTILE_LEGEND,
    QUANTILES,
    SIDECAR_FILTER,
    SIDECAR_MODEL_FILTER,
    agg,
    histogram_quantile,
    rate,
    ratio,
    selector,
    zero_if_absent,
)

UID = "vllm-sidecar-requests"
BY_MODEL = ("model_name",)
REQUESTS = "vllm_sidecar_proxy_requests_total"


def _proxy_rate(metric: str, *matchers: str) -> str:
    return rate(metric, SIDECAR_MODEL_FILTER, *matchers)


def _requests(labels: tuple[str, ...], *matchers: str) -> str:
    return agg("sum", _proxy_rate(REQUESTS, *matchers), labels)


def _quantiles(metric: str, filters: str, labels: tuple[str, ...]) -> list[Query]:
    prefix = "{{model_name}} " if labels else ""
    return [
        Query(
            histogram_quantile(q, rate(f"{metric}_bucket", filters), labels),
            legend=f"{prefix}{QUANTILE_LEGEND[q]}",
        )
        for q in QUANTILES
    ]


def _process(metric: str, *matchers: str) -> str:
    return selector(metric, SIDECAR_FILTER, *matchers)


def _traffic(board: Board) -> None:
    server_errors = zero_if_absent(_requests(BY_MODEL, 'status=~"5.."'), _requests(BY_MODEL))
    board.row("Traffic through the proxy").add(
        stat_panel(
            "Requests / s",
            "Requests the proxy handled per second, any outcome.",
            "reqps",
            [Query(_requests(()))],
        ),
        stat_panel(
            "5xx ratio",
            "Share of proxied requests answered with a 5xx status (vLLM or the proxy).",
            "percentunit",
            [
                Query(
                    ratio(
                        zero_if_absent(_requests((), 'status=~"5.."'), _requests(())), _requests(())
                    )
                )
            ],
            limits=thresholds((None, "green"), (0.001, "orange"), (0.01, "red")),
        ),
        stat_panel(
            "In flight",
            "Requests the proxy is handling right now, summed over sidecars.",
            "short",
            [Query(agg("sum", _process("vllm_sidecar_proxy_in_flight_requests")))],
        ),
        stat_panel(
            "Proxy overhead p99",
            "99th percentile of the latency the proxy itself adds before the first byte.",
            "s",
            [
                Query(
                    histogram_quantile(
                        "0.99", rate("vllm_sidecar_proxy_overhead_seconds_bucket", SIDECAR_FILTER)
                    )
                )
            ],
        ),
        stat_panel(
            "Upstream errors / s",
            "Failures talking to vLLM (connect, timeout, disconnect, mid-response) per second.",
            "reqps",
            [Query(agg("sum", rate("vllm_sidecar_proxy_upstream_errors_total", SIDECAR_FILTER)))],
            limits=thresholds((None, "green"), (0.01, "red")),
        ),
        stat_panel(
            "vLLM reachable",
            "1 when the sidecar's last scrape of vLLM succeeded (worst sidecar in the selection).",
            "bool_yes_no",
            [Query(agg("min", _process("vllm_sidecar_upstream_up")))],
            limits=thresholds((None, "red"), (1, "green")),
        ),
        timeseries_panel(
            "Requests by status",
            "Proxied requests per second by HTTP status; 499 means the client went away first.",
            "reqps",
            [Query(_requests(("status",)), legend="{{status}}")],
        ),
        timeseries_panel(
            "Requests by model and endpoint",
            "Proxied requests per second by model and API route.",
            "reqps",
            [Query(_requests(("model_name", "endpoint")), legend="{{model_name}} {{endpoint}}")],
        ),
        timeseries_panel(
            "5xx ratio by model",
            "Share of each model's proxied requests answered with a 5xx status.",
            "percentunit",
            [Query(ratio(server_errors, _requests(BY_MODEL)), legend="{{model_name}}")],
        ),
        timeseries_panel(
            "Client abort ratio by model",
            "Share of each model's proxied requests the client abandoned (499: disconnects, "
            "cancelled streams). vLLM does not count these; a rising share is users giving up "
            "on slow answers (VLLMClientAbortsHigh).",
            "percentunit",
            [
                Query(
                    ratio(
                        zero_if_absent(_requests(BY_MODEL, 'status="499"'), _requests(BY_MODEL)),
                        _requests(BY_MODEL),
                    ),
                    legend="{{model_name}}",
                )
            ],
        ),
    )


def _latency(board: Board) -> None:
    engine_ttft = agg(
        "max",
        selector(
            "vllm_sidecar_ttft_seconds", SIDECAR_MODEL_FILTER, 'quantile="0.95"', 'window="1m"'
        ),
        BY_MODEL,
    )
    board.row("Latency the client sees").add(
        timeseries_panel(
            "Client-side time to first token",
            "TTFT p50/p95/p99 measured at the proxy (request received to first token "
            "relayed), streamed responses.",
            "s",
            _quantiles("vllm_sidecar_proxy_ttft_seconds", SIDECAR_MODEL_FILTER, BY_MODEL),
        ),
        timeseries_panel(
            "Client-side request latency",
            "End-to-end latency p50/p95/p99 measured at the proxy, to the last byte relayed.",
            "s",
            _quantiles("vllm_sidecar_proxy_e2e_latency_seconds", SIDECAR_MODEL_FILTER, BY_MODEL),
        ),
        timeseries_panel(
            "Client-side inter-token gap",
            "Gaps between stream reads after the first token, p50/p95/p99, at the proxy.",
            "s",
            _quantiles("vllm_sidecar_proxy_inter_token_seconds", SIDECAR_MODEL_FILTER, BY_MODEL),
        ),
        timeseries_panel(
            "Client vs engine TTFT p95",
            "TTFT p95 seen by clients at the proxy next to vLLM's own (1m window, derived by "
            "the sidecar); the gap is time spent outside the engine.",
            "s",
            [
                Query(
                    histogram_quantile(
                        "0.95", _proxy_rate("vllm_sidecar_proxy_ttft_seconds_bucket"), BY_MODEL
                    ),
                    legend="{{model_name}} client",
                ),
                Query(engine_ttft, legend="{{model_name}} engine"),
            ],
        ),
        timeseries_panel(
            "Proxy overhead",
            "Latency the proxy adds before the first byte (receipt to upstream call, headers, "
            "first chunk), p50/p95/p99.",
            "s",
            _quantiles("vllm_sidecar_proxy_overhead_seconds", SIDECAR_FILTER, ()),
        ),
        timeseries_panel(
            "Tokens per request",
            "Mean prompt and completion tokens per proxied request, per model.",
            "short",
            [
                Query(
                    ratio(
                        agg("sum", _proxy_rate(f"vllm_sidecar_proxy_{part}_tokens_sum"), BY_MODEL),
                        agg(
                            "sum", _proxy_rate(f"vllm_sidecar_proxy_{part}_tokens_count"), BY_MODEL
                        ),
                    ),
                    legend=f"{{{{model_name}}}} {part}",
                )
                for part in ("prompt", "completion")
            ],
        ),
    )


def _sampling(board: Board) -> None:
    taken = agg("sum", rate("vllm_sidecar_samples_taken_total", SIDECAR_FILTER))
    requests = agg("sum", rate(REQUESTS, SIDECAR_FILTER))
    board.row("Sampling, spool and upload").add(
        timeseries_panel(
            "Sampling rate",
            "Share of proxied requests selected for sampling (random plus keep rules).",
            "percentunit",
            [Query(ratio(taken, requests), legend="sampled share")],
        ),
        timeseries_panel(
            "Samples taken, written, dropped",
            "Sample records per second: selected (by reason), confirmed by the sink, and lost "
            "(by reason; any drop is worth a look).",
            "ops",
            [
                Query(
                    agg(
                        "sum", rate("vllm_sidecar_samples_taken_total", SIDECAR_FILTER), ("reason",)
                    ),
                    legend="taken {{reason}}",
                ),
                Query(
                    agg("sum", rate("vllm_sidecar_samples_written_total", SIDECAR_FILTER)),
                    legend="written",
                ),
                Query(
                    agg(
                        "sum",
                        rate("vllm_sidecar_samples_dropped_total", SIDECAR_FILTER),
                        ("reason",),
                    ),
                    legend="dropped {{reason}}",
                ),
            ],
        ),
        timeseries_panel(
            "Spool backlog",
            "Sample records waiting in the on-disk spool for upload, per sidecar.",
            "short",
            [
                Query(
                    agg("sum", _process("vllm_sidecar_spool_records"), ("instance",)),
                    legend="{{instance}} records",
                ),
            ],
        ),
        timeseries_panel(
            "Spool fill",
            "Spool bytes over its configured cap, per sidecar; at 100% new samples are dropped.",
            "percentunit",
            [
                Query(
                    ratio(
                        agg("sum", _process("vllm_sidecar_spool_bytes"), ("instance",)),
                        agg("sum", _process("vllm_sidecar_spool_capacity_bytes"), ("instance",)),
                    ),
                    legend="{{instance}}",
                )
            ],
            max_value=1,
            limits=thresholds((None, "green"), (0.8, "orange")),
            width=6,
        ),
        timeseries_panel(
            "Oldest spooled record",
            "Age of the oldest record not yet uploaded, per sidecar (0 when the spool is empty).",
            "s",
            [
                Query(
                    agg(
                        "max",
                        _process("vllm_sidecar_spool_oldest_record_age_seconds"),
                        ("instance",),
                    ),
                    legend="{{instance}}",
                )
            ],
            width=6,
        ),
        timeseries_panel(
            "Uploads",
            "Object writes to the sink per second, and failed ones (failures are retried).",
            "ops",
            [
                Query(
                    agg("sum", rate("vllm_sidecar_upload_attempts_total", SIDECAR_FILTER)),
                    legend="attempts",
                ),
                Query(
                    agg("sum", rate("vllm_sidecar_upload_failures_total", SIDECAR_FILTER)),
                    legend="failures",
                ),
            ],
            width=6,
        ),
        timeseries_panel(
            "Upload duration",
            "Time to write one batch object to the sink (S3 or the local directory), p50/p99.",
            "s",
            [
                Query(
                    histogram_quantile(
                        q, rate("vllm_sidecar_upload_duration_seconds_bucket", SIDECAR_FILTER)
                    ),
                    legend=QUANTILE_LEGEND[q],
                )
                for q in ("0.5", "0.99")
            ],
            width=6,
        ),
    )


def _scrape_health(board: Board) -> None:
    board.row("Sidecar health").add(
        timeseries_panel(
            "Scrape duration",
            "Time the sidecar takes to fetch and parse vLLM's /metrics, p50/p99.",
            "s",
            [
                Query(
                    histogram_quantile(
                        q,
                        rate("vllm_sidecar_scrape_duration_seconds_bucket", SIDECAR_FILTER),
                        ("instance",),
                    ),
                    legend=f"{{{{instance}}}} {QUANTILE_LEGEND[q]}",
                )
                for q in ("0.5", "0.99")
            ],
            width=6,
        ),
        timeseries_panel(
            "Scrape errors by reason",
            "Failed scrapes of vLLM per second by reason (connect, timeout, http_status, ...).",
            "ops",
            [
                Query(
                    agg(
                        "sum", rate("vllm_sidecar_scrape_errors_total", SIDECAR_FILTER), ("reason",)
                    ),
                    legend="{{reason}}",
                )
            ],
            width=6,
        ),
        timeseries_panel(
            "vLLM metrics missing",
            "Metrics every supported vLLM exposes that the last scrape lacked (1 = missing); "
            "a non-zero line means a vLLM upgrade renamed something.",
            "short",
            [
                Query(
                    agg("max", _process("vllm_sidecar_vllm_metrics_missing"), ("metric",)),
                    legend="{{metric}}",
                )
            ],
            width=6,
        ),
        stat_panel(
            "Sidecar alerts firing",
            "Alert instances the sidecar's in-process engine has firing now (it evaluates the "
            "same rules without Prometheus); 0 is good.",
            "none",
            [
                Query(
                    agg("sum", _process("vllm_sidecar_alerts", 'state="firing"')) + " or vector(0)"
                )
            ],
            limits=thresholds((None, "green"), (1, "red")),
            decimals=0,
            width=6,
            height=8,
        ),
    )


def build() -> model.Dashboard:
    """The requests-through-the-sidecar dashboard."""
    board = Board(
        UID,
        "vLLM / Requests through the sidecar",
        "Client-side latency and status codes measured at the sidecar's proxy, the proxy's own "
        "overhead, completion sampling (rate, writes, backlog, drops) and scrape health.",
    )
    for variable in filter_chain("vllm_sidecar_build_info", model_series=REQUESTS):
        board.variable(variable)
    _traffic(board)
    _latency(board)
    _sampling(board)
    _scrape_health(board)
    return board.build()
