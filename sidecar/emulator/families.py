"""The metric families each emulated vLLM release exposes: names, types, HELP, labels, buckets.

Facts come from ``tests/data/vllm/families-0.33.0.md`` (current), the reference's rename table
(0.9.2 exposes old and new names side by side) and ``tests/data/vllm/v0.6.3-multiproc.prom`` (V0).
Each family names a *source*: a counter or gauge read off the engine, or a histogram key of
:class:`~sidecar.emulator.stats.EngineStats`, so the three releases share one engine model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sidecar.emulator.options import MetricsProfile

FamilyType = Literal["gauge", "counter", "histogram"]

Bounds = tuple[float, ...]

_TTFT_HEAD: Bounds = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5)
TTFT_BUCKETS_V1: Bounds = (*_TTFT_HEAD, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TTFT_BUCKETS_V0: Bounds = (*_TTFT_HEAD, 5.0, 7.5, 10.0)
ITL_BUCKETS_V0: Bounds = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
ITL_BUCKETS_V1: Bounds = (*ITL_BUCKETS_V0, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_LATENCY_HEAD: Bounds = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0)
LATENCY_BUCKETS_V1: Bounds = (*_LATENCY_HEAD, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
E2E_BUCKETS_V0: Bounds = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
_ITERATION_HEAD: Bounds = (1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0)
ITERATION_BUCKETS_V09: Bounds = (*_ITERATION_HEAD, 4096.0, 8192.0)
ITERATION_BUCKETS_V1: Bounds = (*ITERATION_BUCKETS_V09, 16384.0)
N_BUCKETS: Bounds = (1.0, 2.0, 5.0, 10.0, 20.0)
PREEMPTION_BUCKETS: Bounds = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)


def buckets_1_2_5(max_value: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 series up to ``max_value`` (e.g. 8192 -> 1, 2, 5, ... 5000)."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(out)
            out.append(float(value))
        exponent += 1


def histogram_buckets(profile: MetricsProfile, max_model_len: int) -> dict[str, tuple[float, ...]]:
    """Upper bounds of every internal histogram for one profile."""
    tokens = buckets_1_2_5(max_model_len)
    v0 = profile == "v0.6"
    latency = E2E_BUCKETS_V0 if v0 else LATENCY_BUCKETS_V1
    return {
        "ttft": TTFT_BUCKETS_V0 if v0 else TTFT_BUCKETS_V1,
        "itl": ITL_BUCKETS_V0 if v0 else ITL_BUCKETS_V1,
        "tpot": ITL_BUCKETS_V1,
        "e2e": latency,
        "queue": latency,
        "inference": latency,
        "prefill": latency,
        "decode": latency,
        "prompt_len": tokens,
        "gen_len": tokens,
        "max_gen": tokens,
        "params_n": N_BUCKETS,
        "params_max_tokens": tokens,
        "req_preemptions": PREEMPTION_BUCKETS,
        "prefill_computed": tokens,
        "iteration_tokens": (
            ITERATION_BUCKETS_V1 if profile in ("current", "v0.32") else ITERATION_BUCKETS_V09
        ),
    }


@dataclass(frozen=True, slots=True)
class Family:
    """One exposed family. ``name`` is as printed (counters with ``_total``)."""

    name: str
    type: FamilyType
    help: str
    source: str
    """A gauge/counter source understood by the collector, or a histogram key."""


@dataclass(frozen=True, slots=True)
class ProfileFacts:
    """Release-specific behaviour beyond /metrics."""

    version: str
    engine_label: bool
    guarded_prefixes: tuple[str, ...]
    flat_errors: bool
    """Errors as ``{"object":"error",...}`` (before vLLM #22099) instead of ``{"error":{...}}``."""
    finish_reasons: tuple[str, ...]
    """``finished_reason`` children created at start-up (V0 creates them when first seen)."""
    metrics_text_1_0: bool = False
    """``GET /metrics`` ignores ``Accept`` and answers ``text/plain; version=1.0.0`` (vLLM >= 0.32
    mounts prometheus_client's app twice: ``/metrics`` fixed, ``/metrics/`` negotiating)."""
    system_fingerprint: bool = False
    """Responses carry ``system_fingerprint`` (the usage chunk, else the finishing event)."""


FACTS: dict[MetricsProfile, ProfileFacts] = {
    "current": ProfileFacts(
        "0.33.0",
        True,
        ("/v1", "/v2"),
        False,
        ("stop", "length", "abort", "error", "repetition"),
        metrics_text_1_0=True,
        system_fingerprint=True,
    ),
    "v0.32": ProfileFacts(
        "0.32.0",
        True,
        ("/v1", "/v2"),
        False,
        ("stop", "length", "abort", "error", "repetition"),
        metrics_text_1_0=True,
        system_fingerprint=True,
    ),
    "v0.9": ProfileFacts("0.9.2", True, ("/v1",), True, ("stop", "length", "abort")),
    "v0.6": ProfileFacts("0.6.3", False, ("/v1",), True, ()),
}

HISTOGRAM_OF = "Histogram of "
RUNNING = Family("vllm:num_requests_running", "gauge", "", "running")
WAITING = Family(
    "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", "waiting"
)
KV = Family(
    "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", "kv_usage"
)
PREFIX_QUERIES = Family(
    "vllm:prefix_cache_queries_total",
    "counter",
    "Prefix cache queries, in terms of number of queried tokens.",
    "prefix_queries",
)
PREFIX_HITS = Family(
    "vllm:prefix_cache_hits_total",
    "counter",
    "Prefix cache hits, in terms of number of cached tokens.",
    "prefix_hits",
)
PREEMPTIONS = Family(
    "vllm:num_preemptions_total",
    "counter",
    "Cumulative number of preemption from the engine.",
    "preemptions",
)
PROMPT = Family(
    "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", "prompt_tokens"
)
GENERATION = Family(
    "vllm:generation_tokens_total",
    "counter",
    "Number of generation tokens processed.",
    "generation_tokens",
)
SUCCESS = Family(
    "vllm:request_success_total", "counter", "Count of successfully processed requests.", "finished"
)
PROMPT_LEN = Family(
    "vllm:request_prompt_tokens", "histogram", "Number of prefill tokens processed.", "prompt_len"
)
GEN_LEN = Family(
    "vllm:request_generation_tokens",
    "histogram",
    "Number of generation tokens processed.",
    "gen_len",
)
TTFT = Family(
    "vllm:time_to_first_token_seconds",
    "histogram",
    HISTOGRAM_OF + "time to first token in seconds.",
    "ttft",
)
TPOT_OLD = Family(
    "vllm:time_per_output_token_seconds",
    "histogram",
    HISTOGRAM_OF + "time per output token in seconds.",
    "itl",
)
PARAMS_N = Family(
    "vllm:request_params_n", "histogram", HISTOGRAM_OF + "the n request parameter.", "params_n"
)
CACHE_INFO = Family(
    "vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig", "cache_config"
)
V1_SHARED_HEAD = (
    Family(
        "vllm:request_max_num_generation_tokens",
        "histogram",
        HISTOGRAM_OF + "maximum number of requested generation tokens.",
        "max_gen",
    ),
    PARAMS_N,
    Family(
        "vllm:request_params_max_tokens",
        "histogram",
        HISTOGRAM_OF + "the max_tokens request parameter.",
        "params_max_tokens",
    ),
    TTFT,
)
PHASES = (
    Family(
        "vllm:e2e_request_latency_seconds",
        "histogram",
        HISTOGRAM_OF + "e2e request latency in seconds.",
        "e2e",
    ),
    Family(
        "vllm:request_queue_time_seconds",
        "histogram",
        HISTOGRAM_OF + "time spent in WAITING phase for request.",
        "queue",
    ),
    Family(
        "vllm:request_inference_time_seconds",
        "histogram",
        HISTOGRAM_OF + "time spent in RUNNING phase for request.",
        "inference",
    ),
    Family(
        "vllm:request_prefill_time_seconds",
        "histogram",
        HISTOGRAM_OF + "time spent in PREFILL phase for request.",
        "prefill",
    ),
    Family(
        "vllm:request_decode_time_seconds",
        "histogram",
        HISTOGRAM_OF + "time spent in DECODE phase for request.",
        "decode",
    ),
)
ITERATION = Family(
    "vllm:iteration_tokens_total",
    "histogram",
    HISTOGRAM_OF + "number of tokens per engine_step.",
    "iteration_tokens",
)


def counter(name: str, help_text: str, source: str) -> Family:
    return Family(name, "counter", help_text, source)


CURRENT: tuple[Family, ...] = (
    Family(RUNNING.name, "gauge", "Number of requests in model execution batches.", "running"),
    WAITING,
    Family(
        "vllm:num_requests_waiting_by_reason",
        "gauge",
        "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling"
        " capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer,"
        " blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
        "waiting_by_reason",
    ),
    Family(
        "vllm:engine_sleep_state",
        "gauge",
        "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake;"
        " weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
        "sleep_state",
    ),
    KV,
    PREFIX_QUERIES,
    PREFIX_HITS,
    counter(
        "vllm:external_prefix_cache_queries_total",
        "External prefix cache queries from KV connector cross-instance cache sharing, in terms"
        " of number of queried tokens.",
        "zero",
    ),
    counter(
        "vllm:external_prefix_cache_hits_total",
        "External prefix cache hits from KV connector cross-instance cache sharing, in terms of"
        " number of cached tokens.",
        "zero",
    ),
    counter(
        "vllm:mm_cache_queries_total",
        "Multi-modal cache queries, in terms of number of queried items.",
        "zero",
    ),
    counter(
        "vllm:mm_cache_hits_total",
        "Multi-modal cache hits, in terms of number of cached items.",
        "zero",
    ),
    PREEMPTIONS,
    PROMPT,
    counter(
        "vllm:prompt_tokens_by_source_total", "Number of prompt tokens by source.", "by_source"
    ),
    counter(
        "vllm:prompt_tokens_cached_total",
        "Number of cached prompt tokens (local + external).",
        "prompt_tokens_cached",
    ),
    counter(
        "vllm:prompt_tokens_cached_by_source_total",
        "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host"
        " (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or"
        " external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits +"
        " vllm:external_prefix_cache_hits.",
        "cached_by_source",
    ),
    GENERATION,
    SUCCESS,
    PROMPT_LEN,
    GEN_LEN,
    ITERATION,
    *V1_SHARED_HEAD,
    Family(
        "vllm:inter_token_latency_seconds",
        "histogram",
        HISTOGRAM_OF + "inter-token latency in seconds.",
        "itl",
    ),
    Family(
        "vllm:request_time_per_output_token_seconds",
        "histogram",
        HISTOGRAM_OF + "time_per_output_token_seconds per request.",
        "tpot",
    ),
    *PHASES,
    Family(
        "vllm:request_num_preemptions",
        "histogram",
        HISTOGRAM_OF + "the number of times a request was preempted.",
        "req_preemptions",
    ),
    Family(
        "vllm:request_prefill_kv_computed_tokens",
        "histogram",
        HISTOGRAM_OF + "new KV tokens computed during prefill (excluding cached tokens).",
        "prefill_computed",
    ),
    counter(
        "vllm:estimated_flops_per_gpu_total",
        "Estimated number of floating point operations per GPU (for Model Flops Utilization"
        " calculations).",
        "flops",
    ),
    counter(
        "vllm:estimated_read_bytes_per_gpu_total",
        "Estimated number of bytes read from memory per GPU (for Model Flops Utilization"
        " calculations).",
        "read_bytes",
    ),
    counter(
        "vllm:estimated_write_bytes_per_gpu_total",
        "Estimated number of bytes written to memory per GPU (for Model Flops Utilization"
        " calculations).",
        "write_bytes",
    ),
    counter(
        "vllm:admission_rejections_total",
        "Number of admission attempts rejected by a queue limit, by reason.",
        "admission_rejections",
    ),
    CACHE_INFO,
)
