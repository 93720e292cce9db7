"""Capacity and cost: tokens per GPU, how busy the engines are, and where self-hosting breaks even.

Prices and GPU counts are dashboard variables the team types in (the defaults are placeholders,
not a quote). Per model, with N servers, g GPUs per server, prompt rate P and generation rate G
tokens/s:

* self-hosted $/hour            = N * g * gpu_hourly_usd
* self-hosted $ per 1M tokens   = $/hour * 1e6 / (3600 * (P + G))
* API $ per 1M tokens (blended) = (P * api_input + G * api_output) / (P + G), the API's input and
  output prices weighted by the token mix actually served
* break-even tokens/s per GPU   = gpu_hourly_usd * 1e6 / (3600 * blended API price)

Above the break-even line every GPU-hour is cheaper than the API would have been for the same
tokens; below it the GPUs are too idle to pay for themselves.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from dashboards import promql
from dashboards.board import Board, filter_chain, number_variable
from dashboards.panels import KV_THRESHOLDS, Query, stat_panel, thresholds, timeseries_panel
from dashboards.promql import agg, engine

UID = "vllm-sidecar-capacity"
BY_MODEL = ("model_name",)

PROMPT = promql.tokens_per_second(BY_MODEL, "prompt")
GENERATION = promql.tokens_per_second(BY_MODEL, "generation")
TOKENS = promql.tokens_per_second(BY_MODEL)
GPUS = f"({promql.instances_by_model()} * $gpus_per_instance)"
API_SPEND_PER_SECOND = (
    f"({PROMPT} * $api_input_usd_per_mtok + {GENERATION} * $api_output_usd_per_mtok) / 1e6"
)
"""What the API would charge per second for the tokens served (prices are per 1M tokens)."""
SELF_HOSTED_PER_HOUR = f"({GPUS} * $gpu_hourly_usd)"
API_PER_HOUR = f"(({API_SPEND_PER_SECOND}) * 3600)"
SELF_HOSTED_PER_MTOK = f"({SELF_HOSTED_PER_HOUR} * 1e6 / (3600 * ({TOKENS} > 0)))"
API_PER_MTOK = f"(({API_SPEND_PER_SECOND}) * 1e6 / ({TOKENS} > 0))"
TOKENS_PER_GPU = f"({TOKENS} / {GPUS})"
BREAK_EVEN_PER_GPU = f"($gpu_hourly_usd * 1e6 / (3600 * ({API_PER_MTOK} > 0)))"

CHEAPER_WHEN_BELOW_1 = thresholds((None, "green"), (1, "red"))


def _variables(board: Board) -> None:
    for variable in filter_chain(promql.engine_series("vllm:num_requests_running")):
        board.variable(variable)
    board.variable(
        number_variable(
            "gpus_per_instance",
            "GPUs per server",
            "1",
            "GPUs behind one vLLM server (tensor x pipeline x data parallel size).",
        )
    ).variable(
        number_variable(
            "gpu_hourly_usd",
            "GPU $/hour",
            "2.5",
            "What one GPU costs per hour, all-in (placeholder: set your own).",
        )
    ).variable(
        number_variable(
            "api_input_usd_per_mtok",
            "API $/1M input tokens",
            "0.5",
            "The hosted API's price per million input (prompt) tokens you compare against.",
        )
    ).variable(
        number_variable(
            "api_output_usd_per_mtok",
            "API $/1M output tokens",
            "1.5",
            "The hosted API's price per million output (generated) tokens you compare against.",
        )
    )


def _headline(board: Board) -> None:
    board.row("Break-even at a glance").add(
        stat_panel(
            "Self-hosted $ / 1M tokens",
            "GPU cost of the selection divided by the tokens it served (prompt + generated).",
            "currencyUSD",
            [Query(f"sum({SELF_HOSTED_PER_HOUR}) * 1e6 / (3600 * (sum({TOKENS}) > 0))")],
            width=6,
        ),
        stat_panel(
            "API $ / 1M tokens",
            "What the same token mix would cost at the API prices typed in above.",
            "currencyUSD",
            [Query(f"sum({API_SPEND_PER_SECOND}) * 1e6 / (sum({TOKENS}) > 0)")],
            width=6,
        ),
        stat_panel(
            "Self-hosted cost vs API",
            "Self-hosted $/hour over what the API would charge for the same tokens: below 100% "
            "self-hosting is cheaper.",
            "percentunit",
            [Query(f"sum({SELF_HOSTED_PER_HOUR}) / (sum({API_PER_HOUR}) > 0)")],
            limits=CHEAPER_WHEN_BELOW_1,
            width=6,
        ),
        stat_panel(
            "GPUs in use",
            "vLLM servers in the selection times GPUs per server.",
            "none",
            [Query(f"sum({GPUS})")],
            decimals=0,
            width=6,
        ),
    )


def _throughput(board: Board) -> None:
    board.row("Throughput per GPU").add(
        timeseries_panel(
            "Tokens / s per GPU vs break-even",
            "Prompt + generated tokens per second per GPU, per model, next to the throughput "
            "at which a GPU-hour costs the same as the API: above the dashed line is cheaper.",
            "suffix: tok/s",
            [
                Query(TOKENS_PER_GPU, legend="{{model_name}} actual"),
                Query(BREAK_EVEN_PER_GPU, legend="{{model_name}} break-even"),
            ],
        ),
        timeseries_panel(
            "Output tokens / s per GPU",
            "Generated tokens per second per GPU, per model (decode is what GPUs spend on).",
            "suffix: tok/s",
            [Query(f"({GENERATION} / {GPUS})", legend="{{model_name}}")],
        ),
        timeseries_panel(
            "Servers per model",
            "vLLM servers (job, instance) serving each model; data-parallel engines of one "
            "server count once.",
            "none",
            [Query(promql.instances_by_model(), legend="{{model_name}}")],
        ),
    )


def _utilization(board: Board) -> None:
    busy = (
        f"avg_over_time(clamp_max({engine('vllm:num_requests_running')}, 1)"
        f"[{promql.RATE_INTERVAL}:])"
    )
    board.row("Utilization").add(
        timeseries_panel(
            "Busy share",
            "Share of time engines had at least one request running, averaged per model.",
            "percentunit",
            [Query(agg("avg", busy, BY_MODEL), legend="{{model_name}}")],
            max_value=1,
        ),
        timeseries_panel(
            "KV-cache usage",
            "Average and fullest engine per model: headroom left before preemptions; dashed "
            "line at the 85% canary.",
            "percentunit",
            [
                Query(agg("avg", promql.kv_cache_usage(), BY_MODEL), legend="{{model_name}} avg"),
                Query(agg("max", promql.kv_cache_usage(), BY_MODEL), legend="{{model_name}} max"),
            ],
            max_value=1,
            limits=KV_THRESHOLDS,
        ),
        timeseries_panel(
            "Batch size per engine",
            "Requests in the running batch per engine, averaged per model.",
            "short",
            [
                Query(
                    agg("avg", engine("vllm:num_requests_running"), BY_MODEL),
                    legend="{{model_name}}",
                )
            ],
        ),
    )


def _cache_and_sleep(board: Board) -> None:
    per_server = ("model_name", "instance")
    board.row("Prompt cache and sleep").add(
        timeseries_panel(
            "Cached share of prompt tokens",
            "Prompt tokens served from a cache instead of computed, per model: the share of "
            "prefill the GPUs did not pay for (vLLM 0.32+; the prefix-cache hit ratio before).",
            "percentunit",
            [Query(promql.cached_prompt_share(BY_MODEL), legend="{{model_name}}")],
            min_value=None,
            max_value=1,
        ),
        timeseries_panel(
            "Prompt tokens by source",
            "Prompt tokens per second computed locally, hit in the local cache or transferred "
            "from another instance (vLLM 0.32+; one 'all' series before).",
            "suffix: tok/s",
            [
                Query(
                    promql.prompt_tokens_by_source(BY_MODEL),
                    legend="{{model_name}} {{source}}",
                )
            ],
        ),
        timeseries_panel(
            "Engines awake and asleep",
            "Engines awake and in sleep mode (weights offloaded or discarded) per server: a "
            "sleeping engine holds its GPU but serves nothing (vLLM before the sleep gauge: "
            "every engine counts as awake).",
            "short",
            [
                Query(promql.engines_awake(per_server), legend="{{instance}} {{model_name}} awake"),
                Query(
                    promql.engines_asleep(per_server),
                    legend="{{instance}} {{model_name}} asleep",
                ),
            ],
        ),
    )


def _cost(board: Board) -> None:
    board.row("Cost").add(
        timeseries_panel(
            "$ per 1M tokens: self-hosted vs API",
            "Self-hosted GPU cost per million tokens next to the API's blended price for the "
            "same prompt/output mix, per model.",
            "currencyUSD",
            [
                Query(SELF_HOSTED_PER_MTOK, legend="{{model_name}} self-hosted"),
                Query(API_PER_MTOK, legend="{{model_name}} API"),
            ],
        ),
        timeseries_panel(
            "$ per hour: self-hosted vs API",
            "GPU cost per hour next to what the API would charge per hour for the tokens "
            "served, per model.",
            "currencyUSD",
            [
                Query(SELF_HOSTED_PER_HOUR, legend="{{model_name}} self-hosted"),
                Query(API_PER_HOUR, legend="{{model_name}} API"),
            ],
        ),
        timeseries_panel(
            "Savings per hour vs API",
            "API-equivalent cost minus GPU cost per hour, per model; negative means the API "
            "would have been cheaper.",
            "currencyUSD",
            [Query(f"{API_PER_HOUR} - {SELF_HOSTED_PER_HOUR}", legend="{{model_name}}")],
            min_value=None,
        ),
    )


def build() -> model.Dashboard:
    """The capacity and cost dashboard."""
    board = Board(
        UID,
        "vLLM / Capacity and cost",
        "Tokens per second per GPU, engine utilization, and cost per million tokens from a "
        "GPU $/hour next to an API's price, to see where self-hosting breaks even.",
    )
    _variables(board)
    _headline(board)
    _throughput(board)
    _utilization(board)
    _cache_and_sleep(board)
    _cost(board)
    return board.build()
