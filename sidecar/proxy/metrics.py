"""Per-request measurements of the pass-through, exported on the admin ``/metrics``.

Names start with ``vllm_sidecar_proxy_`` so they never collide with vLLM's own series or the
sidecar's derived engine gauges. Latency buckets are vLLM's own (0.33.0) so an SLO threshold
means the same on both sides. Label values are bounded: ``model_name`` through
:class:`ModelLabels`, ``endpoint`` through :func:`endpoint_label`, ``key`` by the key file,
``status`` by HTTP.

Latency and token histograms are observed only for requests vLLM answered successfully and the
proxy relayed in full; failures, rejections and disconnects show up in
``vllm_sidecar_proxy_requests_total`` by ``status`` instead, so they cannot drag a percentile.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from sidecar.metrics import REGISTRY
from sidecar.proxy.bulk_histogram import BulkHistogram

TTFT_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""``vllm:time_to_first_token_seconds``."""
E2E_BUCKETS: Final = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""``vllm:e2e_request_latency_seconds``."""
ITL_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
"""``vllm:inter_token_latency_seconds``."""
OVERHEAD_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
"""The proxy's own share: tens of microseconds when healthy, so finer than any vLLM bucket."""
TOKEN_BUCKETS: Final = tuple(
    float(mantissa * 10**exponent) for exponent in range(7) for mantissa in (1, 2, 5)
)
"""vLLM's 1-2-5 series; vLLM stops at ``max_model_len``, which the proxy does not know."""

PER_MODEL = ("model_name", "key")

TTFT_SECONDS = Histogram(
    "vllm_sidecar_proxy_ttft_seconds",
    "Time to first generated token as the client sees it (proxy receipt of the request to the "
    "first content event relayed), streamed responses only.",
    PER_MODEL,
    buckets=TTFT_BUCKETS,
    registry=REGISTRY,
)
E2E_LATENCY_SECONDS = Histogram(
    "vllm_sidecar_proxy_e2e_latency_seconds",
    "Time from the proxy receiving a request to the last response byte relayed.",
    PER_MODEL,
    buckets=E2E_BUCKETS,
    registry=REGISTRY,
)
INTER_TOKEN_SECONDS = BulkHistogram(
    "vllm_sidecar_proxy_inter_token_seconds",
    "Gaps between upstream reads that carried stream events after the first token (one "
    "observation per read, not per token).",
    PER_MODEL,
    ITL_BUCKETS,
    REGISTRY,
)
"""Tallied per stream and merged once at its end (see :mod:`sidecar.proxy.bulk_histogram`)."""
OVERHEAD_SECONDS = Histogram(
    "vllm_sidecar_proxy_overhead_seconds",
    "Latency the proxy adds before the first byte: request receipt to upstream call, upstream "
    "headers to client headers, and relaying the first chunk.",
    buckets=OVERHEAD_BUCKETS,
    registry=REGISTRY,
)
PROMPT_TOKENS = Histogram(
    "vllm_sidecar_proxy_prompt_tokens",
    "Prompt tokens per request, from vLLM's usage object.",
    PER_MODEL,
    buckets=TOKEN_BUCKETS,
    registry=REGISTRY,
)
COMPLETION_TOKENS = Histogram(
    "vllm_sidecar_proxy_completion_tokens",
    "Completion tokens per request, from vLLM's usage object or, for streams without usage, "
    "the number of content events.",
    PER_MODEL,
    buckets=TOKEN_BUCKETS,
    registry=REGISTRY,
)
REQUESTS = Counter(
    "vllm_sidecar_proxy_requests",
    "Requests handled by the proxy, by outcome; status 499 means the client went away first.",
    ("model_name", "key", "status", "endpoint"),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "vllm_sidecar_proxy_in_flight_requests",
    "Requests the proxy is handling right now.",
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "vllm_sidecar_proxy_upstream_errors",
    "Failures talking to vLLM, by kind: connect, timeout, disconnect (before a response), "
    "mid_response (after the status line was relayed).",
    ("kind",),
    registry=REGISTRY,
)
UPSTREAM_RETRIES = Counter(
    "vllm_sidecar_proxy_upstream_retries",
    "Requests sent again on a fresh connection because vLLM closed a reused keep-alive "
    "connection before answering (its idle timeout raced the request); never counted as errors.",
    registry=REGISTRY,
)
SAMPLER_ERRORS = Counter(
    "vllm_sidecar_proxy_sampler_errors",
    "Exceptions raised by the sampler and swallowed by the proxy, by call.",
    ("call",),
    registry=REGISTRY,
)
for _kind in ("connect", "timeout", "disconnect", "mid_response"):
    UPSTREAM_ERRORS.labels(kind=_kind)
for _call in ("head_decision", "offer"):
    SAMPLER_ERRORS.labels(call=_call)

NO_MODEL: Final = "none"
OTHER: Final = "other"
_MAX_MODEL_NAME = 128


class ModelLabels:
    """Bounded ``model_name`` label values.

    A model name becomes a label value once vLLM has served it successfully (so typos and
    probes that vLLM answers 404 never mint a series), up to ``limit`` names; everything else
    is ``other``, and requests without a model (``/v1/models``, ``/health``) are ``none``.
    """

    __slots__ = ("_known", "_limit")

    def __init__(self, limit: int = 64) -> None:
        self._known: set[str] = set()
        self._limit = limit

    def label(self, model: str | None, *, served: bool) -> str:
        """The label for ``model``; ``served`` says vLLM answered it successfully."""
        if model is None:
            return NO_MODEL
        if model in self._known:
            return model
        if served and len(self._known) < self._limit and 0 < len(model) <= _MAX_MODEL_NAME:
            self._known.add(model)
            return model
        return OTHER


_EXACT_ENDPOINTS: Final = frozenset(
    {
        "/v1/chat/completions",
        "/v1/chat/completions/batch",
        "/v1/completions",
        "/v1/models",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/embeddings",
        "/v1/score",
        "/v1/rerank",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/load_lora_adapter",
        "/v1/unload_lora_adapter",
        "/v2/embed",
        "/v2/rerank",
        "/pooling",
        "/classify",
        "/score",
        "/rerank",
        "/tokenize",
        "/detokenize",
        "/tokenizer_info",
        "/health",
        "/ping",
        "/invocations",
        "/version",
        "/load",
        "/metrics",
    }
)


def endpoint_label(path: str) -> str:
    """The route template of a vLLM path, or ``other`` (keeps the label bounded)."""
    if path in _EXACT_ENDPOINTS:
        return path
    if path.startswith("/v1/responses/"):
        return "/v1/responses/{id}"
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return OTHER
