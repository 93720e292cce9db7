"""``/metrics`` for one emulator: a private registry whose collector reads the engine when scraped.

The single-API-server page (current and v0.9 profiles) carries prometheus_client's own python_ and
process_ families and ``_created`` series, exactly as vLLM's global registry does. The
multiprocess page (v0.6, or several API servers) has neither and prints ``_sum`` before the
buckets, as ``MultiProcessCollector`` does. HTTP families come last, as in vLLM, where the
instrumentator registers after the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from sidecar.emulator.families import CURRENT, FACTS, Family
from sidecar.emulator.families_legacy import V06, V09
from sidecar.emulator.stats import EngineStats, add_histogram

if TYPE_CHECKING:
    from sidecar.emulator.engine import Engine
    from sidecar.emulator.httpstats import HttpStats
    from sidecar.emulator.options import EmulatorOptions, MetricsProfile
    from sidecar.emulator.scheduler import EngineRank

Labels = dict[str, str]

_COUNTER_ATTRS = {
    "prefix_queries",
    "prefix_hits",
    "preemptions",
    "prompt_tokens",
    "prompt_tokens_cached",
    "generation_tokens",
    "flops",
    "read_bytes",
    "write_bytes",
}
FAMILIES: dict[MetricsProfile, tuple[Family, ...]] = {
    "current": CURRENT,
    "v0.32": CURRENT,
    "v0.9": V09,
    "v0.6": V06,
}
PROMPT_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")
CACHE_TIERS = ("device", "host", "disk", "p2p", "external_unspecified")


def cache_config_labels(options: EmulatorOptions, engine: str) -> Labels:
    """``vllm:cache_config_info`` labels; block counts are the engine model's real ones."""
    bs = str(options.block_size)
    blocks = str(options.num_gpu_blocks)
    caching = str(options.prefix_caching)
    gpu_util = str(options.gpu_memory_utilization)
    if options.metrics_profile == "v0.6":
        return {
            "block_size": bs,
            "cache_dtype": "auto",
            "cpu_offload_gb": "0",
            "enable_prefix_caching": caching,
            "gpu_memory_utilization": gpu_util,
            "is_attention_free": "False",
            "num_cpu_blocks": "2048",
            "num_gpu_blocks": blocks,
            "num_gpu_blocks_override": "None",
            "sliding_window": "None",
            "swap_space_bytes": "4294967296",
        }
    if options.metrics_profile == "v0.9":
        return {
            "block_size": bs,
            "cache_dtype": "auto",
            "calculate_kv_scales": "False",
            "cpu_offload_gb": "0",
            "enable_prefix_caching": caching,
            "engine": engine,
            "gpu_memory_utilization": gpu_util,
            "is_attention_free": "False",
            "num_cpu_blocks": "None",
            "num_gpu_blocks": blocks,
            "num_gpu_blocks_override": "None",
            "prefix_caching_hash_algo": "builtin",
            "sliding_window": "None",
            "swap_space": "4",
            "swap_space_bytes": "4294967296",
        }
    size_tokens = options.num_gpu_blocks * options.block_size
    none = "None"
    labels = {
        "_block_size_resolved": "True",
        "block_size": bs,
        "cache_dtype": "auto",
        "cache_hit_alignment_tokens": bs,
        "effective_attention_block_size": bs,
        "enable_mamba_shared_prefix_checkpoint": "False",
        "enable_prefix_caching": caching,
        "engine": engine,
        "gpu_memory_utilization": gpu_util,
        "hash_block_size": bs,
        "is_attention_free": "False",
        "kv_cache_dtype_skip_layers": "[]",
        "kv_cache_layout": none,
        "kv_cache_max_concurrency": f"{size_tokens / options.max_model_len:.2f}",
        "kv_cache_memory_bytes": none,
        "kv_cache_size_tokens": str(size_tokens),
        "kv_offloading_backend": "native",
        "kv_offloading_size": none,
        "kv_sharing_fast_prefill": "False",
        "mamba_block_size": none,
        "mamba_cache_dtype": "auto",
        "mamba_cache_mode": "none",
        "mamba_page_size_padded": none,
        "mamba_ssm_cache_dtype": "auto",
        "num_cpu_blocks": none,
        "num_gpu_blocks": blocks,
        "num_gpu_blocks_override": none,
        "prefix_cache_retention_interval": none,
        "prefix_caching_hash_algo": "sha256",
        "prefix_match_unit": none,
        "replayssm_buffer_len": "16",
        "simple_cpu_offload_num_blocks": none,
        "skip_page_size_padded": none,
        "sliding_window": none,
        "swa_bounded_replay": "False",
        "use_kda_recoverssm": "False",
        "use_replayssm": "False",
        "user_specified_block_size": "False",
    }
    if options.metrics_profile == "v0.32":  # the simple CPU offloader came with 0.33
        del labels["simple_cpu_offload_num_blocks"]
    return labels


class VllmCollector(Collector):
    """Builds every ``vllm:`` family of the profile from the engine's live state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.options = engine.options
        self.facts = FACTS[engine.options.metrics_profile]
        self.families = FAMILIES[engine.options.metrics_profile]

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield self._family(family)

    def _base_labels(self, rank: EngineRank) -> Labels:
        labels = {"model_name": self.options.model}
        if self.facts.engine_label:
            labels["engine"] = str(rank.index)
        return labels

    def _created(self, stats: EngineStats) -> float | None:
        return None if self.options.multiprocess else stats.created

    def _family(self, family: Family) -> Metric:
        base = family.name.removesuffix("_total") if family.type == "counter" else family.name
        metric = Metric(base, family.help, family.type)
        ranks = self.engine.ranks
        if family.source == "cache_config":
            for rank in ranks:
                metric.add_sample(base, cache_config_labels(self.options, str(rank.index)), 1.0)
            return metric
        if family.source == "admission_rejections":
            # Counted by the frontend before any engine sees the request: no engine label.
            for reason in ranks[0].stats.admission_rejections:
                total = sum(rank.stats.admission_rejections[reason] for rank in ranks)
                labels = {"model_name": self.options.model, "reason": reason}
                self._add_counter(metric, base, labels, total, ranks[0].stats)
            return metric
        for rank in ranks:
            labels = self._base_labels(rank)
            if family.type == "histogram":
                add_histogram(
                    metric,
                    base,
                    labels,
                    rank.stats.hist[family.source],
                    created=self._created(rank.stats),
                    sum_first=self.options.multiprocess,
                )
            elif family.type == "counter":
                for extra, value in self._counter_values(family.source, rank):
                    self._add_counter(metric, base, {**labels, **extra}, value, rank.stats)
            else:
                for extra, value in self._gauge_values(family.source, rank):
                    metric.add_sample(base, {**labels, **extra}, value)
        return metric

    def _add_counter(
        self, metric: Metric, base: str, labels: Labels, value: float, stats: EngineStats
    ) -> None:
        metric.add_sample(base + "_total", labels, float(value))
        created = self._created(stats)
        if created is not None:
            metric.add_sample(base + "_created", labels, created)

    def _counter_values(self, source: str, rank: EngineRank) -> Iterable[tuple[Labels, float]]:
        stats = rank.stats
        if source in _COUNTER_ATTRS:
            return [({}, float(getattr(stats, source)))]
        if source == "zero":
            return [({}, 0.0)]
        if source == "finished":
            created = self.facts.finish_reasons
            reasons = created or tuple(r for r, n in stats.finished.items() if n)
            return [({"finished_reason": r}, float(stats.finished[r])) for r in reasons]
        if source == "by_source":
            values = (stats.prompt_tokens_computed, stats.prompt_tokens_cached, 0)
            return [({"source": s}, float(v)) for s, v in zip(PROMPT_SOURCES, values, strict=True)]
        if source == "cached_by_source":
            return [
                ({"source": tier}, float(stats.prompt_tokens_cached if tier == "device" else 0))
                for tier in CACHE_TIERS
            ]
        raise ValueError(f"unknown counter source {source!r}")

    def _gauge_values(self, source: str, rank: EngineRank) -> Iterable[tuple[Labels, float]]:
        constant = _CONSTANT_GAUGES.get(source)
        if constant is not None:
            return constant
        value: float
        if source == "running":
            value = len(rank.running)
        elif source == "waiting":
            value = len(rank.waiting)
        elif source == "waiting_by_reason":
            waiting = float(len(rank.waiting))
            deferred = waiting if rank.controls.faults.defer else 0.0
            return [
                ({"reason": "capacity"}, waiting - deferred),
                ({"reason": "deferred"}, deferred),
            ]
        elif source == "kv_usage":
            value = rank.pool.usage()
        elif source == "hit_rate":
            stats = rank.stats
            queries = stats.prefix_queries
            value = (
                (stats.prefix_hits / queries if queries else 0.0)
                if rank.pool.prefix_caching
                else -1
            )
        elif source.startswith("avg_"):
            prompt, generation = rank.stats.average_throughput(self.engine.clock())
            value = prompt if source == "avg_prompt_throughput" else generation
        else:
            raise ValueError(f"unknown gauge source {source!r}")
        return [({}, float(value))]


_CONSTANT_GAUGES: dict[str, list[tuple[Labels, float]]] = {
    "zero": [({}, 0.0)],
    "disabled": [({}, -1.0)],
    "sleep_state": [
        ({"sleep_state": "awake"}, 1.0),
        ({"sleep_state": "weights_offloaded"}, 0.0),
        ({"sleep_state": "discard_all"}, 0.0),
    ],
}


def build_registry(engine: Engine, http: HttpStats | None) -> CollectorRegistry:
    """A private registry laid out like the emulated release's /metrics page."""
    registry = CollectorRegistry(auto_describe=False)
    if not engine.options.multiprocess:
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)
        ProcessCollector(registry=registry)
    registry.register(VllmCollector(engine))
    if http is not None:
        registry.register(http.collector(created=not engine.options.multiprocess))
    return registry


TEXT_1_0 = "text/plain; version=1.0.0; charset=utf-8"


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """Body and content type, honouring ``Accept`` as vLLM's ``make_asgi_app`` does."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def render_fixed_text(registry: CollectorRegistry) -> tuple[bytes, str]:
    """vLLM >= 0.32's ``/metrics``: the classic text format whatever ``Accept`` asks, labelled
    ``version=1.0.0`` (seen on a real 0.32.0 server; the body is the 0.0.4 text format)."""
    encoder, _ = choose_encoder("text/plain")
    return encoder(registry), TEXT_1_0
