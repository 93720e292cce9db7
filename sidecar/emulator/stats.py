"""What one engine has counted: the raw numbers behind every ``vllm:`` family.

Kept as plain counters and cumulative-by-construction histograms, updated synchronously on the
event loop, and read by the /metrics collector on the same loop, so every scrape is a consistent
cut: bucket counts never decrease, ``+Inf`` equals ``_count``, and finished-request counts agree
with the per-request histograms.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

Labels = dict[str, str]
_go_float: Callable[[float], str] = floatToGoString
"""How prometheus_client prints ``le`` values (``1.0``, ``+Inf``, ``1.0e+06``)."""

FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
"""vLLM 0.33's ``finished_reason`` label values (all pre-created at start-up)."""

HISTOGRAM_KEYS = (
    "ttft",
    "itl",
    "tpot",
    "e2e",
    "queue",
    "inference",
    "prefill",
    "decode",
    "prompt_len",
    "gen_len",
    "max_gen",
    "params_n",
    "params_max_tokens",
    "req_preemptions",
    "prefill_computed",
    "iteration_tokens",
)
"""Internal names of the histograms; each profile maps its family names and buckets onto them."""


class Hist:
    """A Prometheus-style histogram: fixed upper bounds, counts, sum."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, cumulative count)`` pairs, the last one ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class EngineStats:
    """Counters and histograms of one engine (one data-parallel rank)."""

    def __init__(self, buckets: Mapping[str, tuple[float, ...]]) -> None:
        self.created = time.time()
        self.hist: dict[str, Hist] = {key: Hist(buckets[key]) for key in HISTOGRAM_KEYS}
        self.finished: dict[str, int] = dict.fromkeys(FINISH_REASONS, 0)
        self.prompt_tokens = 0
        self.prompt_tokens_computed = 0
        self.prompt_tokens_cached = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.flops = 0.0
        self.read_bytes = 0.0
        self.write_bytes = 0.0
        self.admission_rejections: dict[str, int] = {
            "max_num_queued_reqs": 0,
            "max_num_queued_tokens": 0,
        }
        self._throughput: deque[tuple[float, int, int]] = deque(maxlen=64)

    def finished_total(self) -> int:
        return sum(self.finished.values())

    def note_throughput(self, now: float) -> None:
        """Remember cumulative token counts (at most twice a second) for V0's average gauges."""
        if not self._throughput or now - self._throughput[-1][0] >= 0.5:
            self._throughput.append((now, self.prompt_tokens, self.generation_tokens))

    def average_throughput(self, now: float, window: float = 5.0) -> tuple[float, float]:
        """Prompt and generation tokens per second over roughly the last ``window`` seconds."""
        points = [point for point in self._throughput if now - point[0] <= window]
        if not points:
            return 0.0, 0.0
        start_time, start_prompt, start_gen = points[0]
        elapsed = max(now - start_time, 1e-3)
        return (
            (self.prompt_tokens - start_prompt) / elapsed,
            (self.generation_tokens - start_gen) / elapsed,
        )


def add_histogram(
    metric: Metric, name: str, labels: Labels, hist: Hist, *, created: float | None, sum_first: bool
) -> None:
    """Append one histogram child: buckets, count, sum (or sum first), then created."""
    if sum_first:
        metric.add_sample(name + "_sum", labels, hist.sum)
    for bound, count in hist.cumulative():
        le = _go_float(bound)
        metric.add_sample(name + "_bucket", {**labels, "le": le}, float(count))
    metric.add_sample(name + "_count", labels, float(hist.count))
    if not sum_first:
        metric.add_sample(name + "_sum", labels, hist.sum)
    if created is not None:
        metric.add_sample(name + "_created", labels, created)
