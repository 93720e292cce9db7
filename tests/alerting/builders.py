"""A tiny simulated vLLM (cumulative counters advanced step by step) and an engine harness.

The harness drives the real :class:`~sidecar.alerting.engine.AlertEngine` with the real signal
derivation (:func:`sidecar.signals.derive.derive` over a :class:`History`) on a fake clock, so a
test can play an hour of traffic in a fraction of a second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.alerting.engine import AlertEngine
from sidecar.alerting.inputs import EngineInputs, read_registry
from sidecar.alerting.notify import Receiver
from sidecar.config import Settings
from sidecar.signals.derive import derive
from sidecar.signals.history import History
from sidecar.snapshot import Histogram as ScrapedHistogram
from sidecar.snapshot import SeriesKey, Snapshot

INF = math.inf
TTFT_EDGES = (0.1, 0.25, 0.5, 1.0, INF)
E2E_EDGES = (1.0, 5.0, 20.0, 40.0, INF)
QUEUE_EDGES = (1.0, 5.0, 10.0, INF)
WALL_OFFSET = 1.7e9


@dataclass
class Model:
    """One served model; rates are per second, shares are of finished requests."""

    name: str = "llama"
    engines: tuple[str | None, ...] = ("0",)
    kv: float = 0.3
    kv_slope: float = 0.0
    waiting: float = 0.0
    waiting_slope: float = 0.0
    running: float = 4.0
    requests: float = 0.0
    error_share: float = 0.0
    slow_ttft_share: float = 0.0
    slow_e2e_share: float = 0.0
    slow_queue_share: float = 0.0
    preemptions: float = 0.0
    generation: float = 50.0
    """Generated tokens per second (the engine also steps 10 times a second) unless stalled."""
    stalled: bool = False
    rejections: float = 0.0
    """Admission rejections per second (vLLM 0.32+, no engine label)."""
    deferred: float = 0.0
    engine_kv: tuple[float, ...] | None = None
    """Per-engine KV usage, overriding ``kv`` (data-parallel imbalance)."""
    engine_waiting: tuple[float, ...] | None = None
    totals: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, amount: float) -> float:
        self.totals[name] = self.totals.get(name, 0.0) + amount
        return self.totals[name]


def _cumulative(
    edges: tuple[float, ...], fast: float, slow: float, slow_edge: int
) -> ScrapedHistogram:
    """Fast observations in the first bucket, slow ones in bucket ``slow_edge``."""
    buckets = []
    for index, edge in enumerate(edges):
        count = fast + (slow if index >= slow_edge else 0.0)
        buckets.append((edge, count))
    return ScrapedHistogram(buckets=tuple(buckets), count=fast + slow, sum=0.0)


class World:
    """Cumulative vLLM series for some models, advanced by :meth:`snapshot`."""

    def __init__(self, *models: Model) -> None:
        self.models = list(models)
        self._last = 0.0

    def rebase(self, now: float) -> None:
        """Count time from ``now`` (a running engine uses the real monotonic clock)."""
        self._last = now

    def model(self, name: str = "llama") -> Model:
        return next(model for model in self.models if model.name == name)

    def snapshot(self, now: float) -> Snapshot:
        elapsed = now - self._last
        self._last = now
        gauges: dict[str, dict[SeriesKey, float]] = {}
        counters: dict[str, dict[SeriesKey, float]] = {}
        histograms: dict[str, dict[SeriesKey, ScrapedHistogram]] = {}
        for model in self.models:
            model.kv = min(1.0, max(0.0, model.kv + model.kv_slope * elapsed))
            model.waiting = max(0.0, model.waiting + model.waiting_slope * elapsed)
            share = 1.0 / len(model.engines)
            finished = model.requests * elapsed
            errors = model.add("errors", finished * model.error_share)
            done = model.add("done", finished * (1 - model.error_share))
            slow_ttft = model.add("slow_ttft", finished * model.slow_ttft_share)
            fast_ttft = model.add("fast_ttft", finished * (1 - model.slow_ttft_share))
            slow_e2e = model.add("slow_e2e", finished * model.slow_e2e_share)
            fast_e2e = model.add("fast_e2e", finished * (1 - model.slow_e2e_share))
            slow_queue = model.add("slow_queue", finished * model.slow_queue_share)
            fast_queue = model.add("fast_queue", finished * (1 - model.slow_queue_share))
            preempted = model.add("preempted", model.preemptions * elapsed)
            moving = 0.0 if model.stalled else elapsed
            generated = model.add("generated", model.generation * moving)
            steps = model.add("steps", 10 * moving)
            rejected = model.add("rejected", model.rejections * elapsed)
            reason = (("reason", "max_num_queued_reqs"),)
            counters.setdefault("admission_rejections", {})[SeriesKey(model.name, None, reason)] = (
                rejected
            )
            for index, engine in enumerate(model.engines):
                key = SeriesKey(model.name, engine)
                kv = model.engine_kv[index] if model.engine_kv else model.kv
                waiting = (
                    model.engine_waiting[index] if model.engine_waiting else model.waiting * share
                )
                gauges.setdefault("kv_cache_usage", {})[key] = kv
                gauges.setdefault("requests_waiting", {})[key] = waiting
                deferred = SeriesKey(model.name, engine, (("reason", "deferred"),))
                gauges.setdefault("requests_waiting_by_reason", {})[deferred] = (
                    model.deferred * share
                )
                counters.setdefault("generation_tokens", {})[key] = generated * share
                histograms.setdefault("iteration_tokens", {})[key] = ScrapedHistogram(
                    buckets=((INF, steps * share),), count=steps * share, sum=0.0
                )
                gauges.setdefault("requests_running", {})[key] = model.running * share
                counters.setdefault("preemptions", {})[key] = preempted * share
                for reason, value in (("stop", done), ("error", errors)):
                    extra = SeriesKey(model.name, engine, (("finished_reason", reason),))
                    counters.setdefault("request_success", {})[extra] = value * share
                histograms.setdefault("ttft", {})[key] = _cumulative(
                    TTFT_EDGES, fast_ttft * share, slow_ttft * share, 3
                )
                histograms.setdefault("e2e_latency", {})[key] = _cumulative(
                    E2E_EDGES, fast_e2e * share, slow_e2e * share, 3
                )
                histograms.setdefault("queue_time", {})[key] = _cumulative(
                    QUEUE_EDGES, fast_queue * share, slow_queue * share, 2
                )
        return Snapshot(
            timestamp=WALL_OFFSET + now,
            monotonic=now,
            gauges=gauges,
            counters=counters,
            histograms=histograms,
        )


class SidecarMetrics:
    """The sidecar's own series, in a registry of the test's own (same names as production)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.upstream_up = Gauge("vllm_sidecar_upstream_up", "", registry=r)
        self.upstream_up.set(1)
        self.missing = Gauge("vllm_sidecar_vllm_metrics_missing", "", ["metric"], registry=r)
        self.dropped = Counter("vllm_sidecar_samples_dropped_total", "", ["reason"], registry=r)
        for reason in ("spool_full", "keep_budget"):  # pre-created at 0, as sampling does
            self.dropped.labels(reason)
        self.spool_bytes = Gauge("vllm_sidecar_spool_bytes", "", registry=r)
        self.spool_capacity = Gauge("vllm_sidecar_spool_capacity_bytes", "", registry=r)
        self.oldest = Gauge("vllm_sidecar_spool_oldest_record_age_seconds", "", registry=r)
        self.requests = Counter(
            "vllm_sidecar_proxy_requests",
            "",
            ["model_name", "key", "status", "endpoint"],
            registry=r,
        )
        self.overhead = Histogram(
            "vllm_sidecar_proxy_overhead_seconds",
            "",
            buckets=(0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )


class Harness:
    """The real engine over the real derivation, on a fake clock."""

    def __init__(
        self,
        world: World,
        *,
        sidecar: SidecarMetrics | None = None,
        receivers: list[Receiver] | None = None,
        **settings: Any,
    ) -> None:
        self.now = 0.0
        self.world = world
        self.sidecar = sidecar or SidecarMetrics()
        self.settings = Settings(**settings)
        self.history = History(self.settings.history_seconds)
        self.engine = AlertEngine(
            self.settings,
            receivers=receivers or [],
            external_url="http://sidecar.test:9400",
            clock=lambda: self.now,
            wall_clock=lambda: WALL_OFFSET + self.now,
        )

    def inputs(self) -> EngineInputs:
        snapshot = self.world.snapshot(self.now)
        self.history.append(snapshot)
        signals = derive(self.history, min_requests_for_ratio=self.settings.min_requests_for_ratio)
        return EngineInputs(
            signals, snapshot, read_registry(self.sidecar.registry), scrape_finished=True
        )

    def live_source(self) -> Callable[[], EngineInputs]:
        """Inputs on the real monotonic clock, for an engine started with ``start()``."""
        self.world.rebase(time.monotonic())

        def source() -> EngineInputs:
            self.now = time.monotonic()
            return self.inputs()

        return source

    def run(
        self, seconds: float, step: float = 30.0, each: Callable[[float], None] | None = None
    ) -> None:
        """Evaluate every ``step`` seconds for ``seconds`` (the first evaluation at +step).

        ``each(step)`` runs before every evaluation (to move the sidecar's own counters).
        """
        end = self.now + seconds
        while self.now + step <= end + 1e-9:
            self.now += step
            if each is not None:
                each(step)
            self.engine.evaluate(self.inputs())

    def firing(self, name: str | None = None) -> list[dict[str, str]]:
        """Label sets of firing instances (optionally of one alert name)."""
        return [
            instance.labels
            for instance in self.engine.alerts()
            if instance.state.value == "firing"
            and (name is None or instance.labels["alertname"] == name)
        ]

    def state(self, name: str) -> list[str]:
        """States of the instances of one alert name."""
        return [
            instance.state.value
            for instance in self.engine.alerts()
            if instance.labels["alertname"] == name
        ]
