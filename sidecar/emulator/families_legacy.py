"""The families of the two legacy pages: vLLM 0.9.2 (old and new names side by side) and 0.6.3.

0.9.2 is the V1 engine in its deprecation window: ``gpu_cache_usage_perc`` and
``gpu_prefix_cache_*`` beside their new names, ``time_per_output_token_seconds`` not yet renamed.
0.6.3 is the V0 engine's page as ``v0.6.3-multiproc.prom`` shows it, in the same order.
"""

from __future__ import annotations

from sidecar.emulator.families import (
    CACHE_INFO,
    GEN_LEN,
    GENERATION,
    HISTOGRAM_OF,
    ITERATION,
    KV,
    PARAMS_N,
    PHASES,
    PREEMPTIONS,
    PREFIX_HITS,
    PREFIX_QUERIES,
    PROMPT,
    PROMPT_LEN,
    RUNNING,
    SUCCESS,
    TPOT_OLD,
    TTFT,
    V1_SHARED_HEAD,
    WAITING,
    Family,
    counter,
)

V09: tuple[Family, ...] = (
    Family(RUNNING.name, "gauge", "Number of requests in model execution batches.", "running"),
    WAITING,
    Family(
        "vllm:gpu_cache_usage_perc",
        "gauge",
        "GPU KV-cache usage. 1 means 100 percent usage.",
        "kv_usage",
    ),
    counter(
        "vllm:gpu_prefix_cache_queries_total",
        "GPU prefix cache queries, in terms of number of queried tokens.",
        "prefix_queries",
    ),
    counter(
        "vllm:gpu_prefix_cache_hits_total",
        "GPU prefix cache hits, in terms of number of cached tokens.",
        "prefix_hits",
    ),
    KV,
    PREFIX_QUERIES,
    PREFIX_HITS,
    PREEMPTIONS,
    PROMPT,
    GENERATION,
    SUCCESS,
    PROMPT_LEN,
    GEN_LEN,
    ITERATION,
    *V1_SHARED_HEAD,
    TPOT_OLD,
    *PHASES,
    CACHE_INFO,
)

V06: tuple[Family, ...] = (
    Family(RUNNING.name, "gauge", "Number of requests currently running on GPU.", "running"),
    WAITING,
    Family("vllm:num_requests_swapped", "gauge", "Number of requests swapped to CPU.", "zero"),
    Family(
        "vllm:gpu_cache_usage_perc",
        "gauge",
        "GPU KV-cache usage. 1 means 100 percent usage.",
        "kv_usage",
    ),
    Family(
        "vllm:cpu_cache_usage_perc",
        "gauge",
        "CPU KV-cache usage. 1 means 100 percent usage.",
        "zero",
    ),
    Family(
        "vllm:cpu_prefix_cache_hit_rate", "gauge", "CPU prefix cache block hit rate.", "disabled"
    ),
    Family(
        "vllm:gpu_prefix_cache_hit_rate", "gauge", "GPU prefix cache block hit rate.", "hit_rate"
    ),
    Family(
        "vllm:avg_prompt_throughput_toks_per_s",
        "gauge",
        "Average prefill throughput in tokens/s.",
        "avg_prompt_throughput",
    ),
    Family(
        "vllm:avg_generation_throughput_toks_per_s",
        "gauge",
        "Average generation throughput in tokens/s.",
        "avg_generation_throughput",
    ),
    TTFT,
    TPOT_OLD,
    Family(
        "vllm:e2e_request_latency_seconds",
        "histogram",
        HISTOGRAM_OF + "end to end request latency in seconds.",
        "e2e",
    ),
    PROMPT_LEN,
    GEN_LEN,
    PARAMS_N,
    SUCCESS,
    PROMPT,
    GENERATION,
    PREEMPTIONS,
    CACHE_INFO,
)
