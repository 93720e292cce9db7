"""Every knob of the emulator, in one frozen object.

Defaults are calibrated to ``meta-llama/Llama-3.1-8B-Instruct`` on one H100 in bf16 (the KV pool
and ``cache_config_info`` values match the reference exposition ``v1-1model.prom``): an idle
1,000-token prompt gets its first token in ~45 ms, decode steps take ~9 ms alone and ~20 ms with
a few hundred sequences in the batch, and the 35,108 x 16-token pool fills at a few hundred
concurrent streams of ~1,300 tokens each.

``speed`` divides every modelled duration, so a saturation test can run the same engine model ten
times faster; injected fault latencies are *not* scaled (they are wall-clock by design).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

MetricsProfile = Literal["current", "v0.32", "v0.9", "v0.6"]
PROFILES: tuple[MetricsProfile, ...] = ("current", "v0.32", "v0.9", "v0.6")
OutageMode = Literal["none", "unhealthy", "refuse"]

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(frozen=True, slots=True)
class EmulatorOptions:
    """Start-up configuration of one emulated ``vllm serve`` (see module docstring)."""

    # --- identity and API ---------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """Served model name: the ``model`` field clients send and the ``model_name`` label."""
    metrics_profile: MetricsProfile = "current"
    """Which vLLM release to imitate: current = 0.33.0, v0.32 = 0.32.0 (calibrated against a
    real server: same families, no ``simple_cpu_offload_num_blocks`` cache label), v0.9 = 0.9.2
    (old + new names side by side), v0.6 = 0.6.3 (V0 engine, multiprocess /metrics page)."""
    data_parallel: int = 1
    """Engines behind the one API server, exposed as ``engine="0".."N-1"``."""
    api_server_count: int | None = None
    """API server processes; None follows vLLM (= data_parallel). More than one means the
    multiprocess /metrics page: no python_/process_ families, no ``_created``."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Accepted bearer tokens for ``/v1`` (and ``/v2``) paths; empty = no auth."""
    enable_request_id_headers: bool = True
    """Echo (or create) ``X-Request-Id`` on every response, like ``--enable-request-id-headers``."""
    admin_enabled: bool = True
    """Serve the fault-injection endpoints under ``/_emulator/``."""
    seed: int = 0
    """Seeds generated text (with the prompt), step jitter and fault dice."""
    vllm_version: str | None = None
    """Reported by ``/version``; None = the profile's release."""

    # --- engine model -------------------------------------------------------------------------
    num_gpu_blocks: int = 35108
    block_size: int = 16
    max_model_len: int = 131072
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 8192
    enable_prefix_caching: bool | None = None
    """None = the profile's default (on for V1 profiles, off for v0.6)."""
    gpu_memory_utilization: float = 0.92
    max_num_queued_reqs: int | None = None
    """Admission cap on waiting + running requests (503 beyond it); None = unbounded."""
    max_num_queued_tokens: int | None = None
    """Admission cap on prompt tokens still in prefill (503 beyond it); None = unbounded."""
    count_client_aborts: bool = False
    """Record client disconnects as finished requests (``finished_reason="abort"``). vLLM 0.33,
    0.9 and 0.6 all record nothing for them (only engine-side aborts count)."""

    # --- latency model (seconds, before ``speed``) ---------------------------------------------
    speed: float = 1.0
    """Time scale: 10 runs the engine model ten times faster than real time."""
    zero_latency: bool = False
    """No modelled time at all: stream tokens as fast as the event loop allows (proxy benches)."""
    step_base_seconds: float = 0.009
    """Fixed cost of one engine step (weights read once per step)."""
    prefill_token_seconds: float = 3.5e-5
    """Per prompt token computed in a step (~28k tokens/s prefill)."""
    decode_seq_seconds: float = 2.5e-5
    """Per sequence decoding in a step."""
    context_token_seconds: float = 1.5e-8
    """Per token of KV context attended to in a step (all scheduled sequences)."""
    step_jitter: float = 0.05
    """Relative standard deviation of step time (clamped to +-3 sigma)."""
    model_params: float = 8.03e9
    """Parameters, for the estimated FLOPs / bytes counters."""
    kv_bytes_per_token: int = 131072
    """KV bytes written per token (32 layers x 8 KV heads x 128 x 2 x bf16)."""

    # --- generated text -----------------------------------------------------------------------
    output_tokens_mean: float = 256.0
    """Mean natural answer length (log-normal), before ``max_tokens`` cuts it."""
    output_tokens_sigma: float = 0.6
    """Spread of the log-normal answer length."""
    length_cutoff_share: float = 0.0
    """Share of requests that would run past ``max_tokens`` (finish ``length``)."""
    refusal_share: float = 0.0
    """Share of prompts answered with a fixed refusal (for drift tests)."""

    # --- faults present from start-up (all changeable at run time) ----------------------------
    latency_ms: float = 0.0
    token_latency_ms: float = 0.0
    error_rate: float = 0.0
    stall: bool = False
    stall_share: float = 0.0
    outage: OutageMode = "none"
    kv_pressure: float = 0.0

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError("invalid emulator options: " + "; ".join(problems))

    @property
    def prefix_caching(self) -> bool:
        """Whether the prefix cache is on, after the profile default."""
        if self.enable_prefix_caching is not None:
            return self.enable_prefix_caching
        return self.metrics_profile != "v0.6"

    @property
    def multiprocess(self) -> bool:
        """True when /metrics is the multiprocess page (v0.6 frontend or several API servers)."""
        servers = self.api_server_count or self.data_parallel
        return self.metrics_profile == "v0.6" or servers > 1

    def replace(self, **changes: Any) -> EmulatorOptions:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_tests(cls, **overrides: Any) -> EmulatorOptions:
        """A small, fast engine: 512 blocks of 16 tokens, short answers, ten times real time."""
        base: dict[str, Any] = {
            "num_gpu_blocks": 512,
            "max_model_len": 4096,
            "max_num_seqs": 128,
            "max_num_batched_tokens": 2048,
            "output_tokens_mean": 24.0,
            "speed": 10.0,
        }
        base.update(overrides)
        return cls(**base)


def _problems(options: EmulatorOptions) -> list[str]:
    """Every invalid field, named, so one error message lists them all."""
    problems: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    need(bool(options.model.strip()), "model must not be empty")
    need(options.metrics_profile in PROFILES, f"metrics_profile must be one of {PROFILES}")
    need(1 <= options.data_parallel <= 64, "data_parallel must be 1..64")
    need(
        options.api_server_count is None or options.api_server_count >= 1,
        "api_server_count must be >= 1",
    )
    need(all(key for key in options.api_keys), "api keys must not be empty strings")
    need(options.num_gpu_blocks >= 2, "num_gpu_blocks must be >= 2")
    need(options.block_size in (1, 2, 4, 8, 16, 32, 64, 128), "block_size must be a power of 2")
    need(options.max_model_len >= 16, "max_model_len must be >= 16")
    need(options.max_num_seqs >= 1, "max_num_seqs must be >= 1")
    kv_tokens = (options.num_gpu_blocks - 1) * options.block_size
    need(
        kv_tokens >= options.max_model_len,
        f"the KV cache holds {kv_tokens} tokens, fewer than max_model_len {options.max_model_len}"
        " (vLLM refuses to start like this)",
    )
    need(options.max_num_batched_tokens >= 1, "max_num_batched_tokens must be >= 1")
    need(0 < options.gpu_memory_utilization <= 1, "gpu_memory_utilization must be in (0, 1]")
    for name in ("max_num_queued_reqs", "max_num_queued_tokens"):
        value = getattr(options, name)
        need(value is None or value >= 1, f"{name} must be >= 1")
    need(math.isfinite(options.speed) and options.speed > 0, "speed must be > 0")
    for name in (
        "step_base_seconds",
        "prefill_token_seconds",
        "decode_seq_seconds",
        "context_token_seconds",
        "step_jitter",
        "latency_ms",
        "token_latency_ms",
    ):
        value = getattr(options, name)
        need(math.isfinite(value) and value >= 0, f"{name} must be >= 0")
    need(options.model_params > 0, "model_params must be > 0")
    need(options.kv_bytes_per_token > 0, "kv_bytes_per_token must be > 0")
    need(options.output_tokens_mean >= 1, "output_tokens_mean must be >= 1")
    need(0 <= options.output_tokens_sigma <= 3, "output_tokens_sigma must be 0..3")
    for name in ("length_cutoff_share", "refusal_share", "error_rate", "stall_share"):
        value = getattr(options, name)
        need(0 <= value <= 1, f"{name} must be between 0 and 1")
    need(0 <= options.kv_pressure < 1, "kv_pressure must be in [0, 1)")
    need(
        options.outage in ("none", "unhealthy"),
        "outage at start-up must be none|unhealthy ('refuse' is a timed run-time fault)",
    )
    return problems
