"""The ``http_*`` families vLLM's API server gets from prometheus-fastapi-instrumentator.

Same names, labels, buckets and exclusions (``/metrics``, ``/health``, ``/version`` ... are not
counted); statuses are grouped as ``2xx``/``4xx``/``5xx``; sizes come from ``Content-Length`` only,
so streamed responses observe 0. A request counts once its response has finished.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from sidecar.emulator.stats import Hist, add_histogram

EXCLUDED_HANDLERS = frozenset({"/metrics", "/health", "/load", "/ping", "/version", "/server_info"})
_HIGHR_HEAD: tuple[float, ...] = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
HIGHR_BUCKETS: tuple[float, ...] = (
    *_HIGHR_HEAD,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)
HANDLER_BUCKETS = (0.1, 0.5, 1.0)

_REQUESTS_HELP = "Total number of requests by method, status and handler."
_REQUEST_SIZE_HELP = (
    "Content length of incoming requests by handler. Only value of header is respected. "
    "Otherwise ignored. No percentile calculated. "
)
_RESPONSE_SIZE_HELP = (
    "Content length of outgoing responses by handler. Only value of header is respected. "
    "Otherwise ignored. No percentile calculated. "
)
_HIGHR_HELP = (
    "Latency with many buckets but no API specific labels. "
    "Made for more accurate percentile calculations. "
)
_DURATION_HELP = (
    "Latency with only few buckets by handler. "
    "Made to be only used if aggregation by handler is important. "
)


@dataclass(slots=True)
class _Summary:
    count: int = 0
    total: float = 0.0
    created: float = field(default_factory=time.time)


class HttpStats:
    """Per-handler request counts, sizes and durations of the emulated API server."""

    def __init__(self) -> None:
        self.created = time.time()
        self.requests: dict[tuple[str, str, str], tuple[int, float]] = {}
        self.request_size: dict[str, _Summary] = {}
        self.response_size: dict[str, _Summary] = {}
        self.highr = Hist(HIGHR_BUCKETS)
        self.duration: dict[tuple[str, str], tuple[Hist, float]] = {}

    def observe(
        self,
        handler: str,
        *,
        method: str,
        status: int,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """Count one finished request (excluded handlers are ignored)."""
        if handler in EXCLUDED_HANDLERS:
            return
        now = time.time()
        key = (handler, method, f"{status // 100}xx")
        count, created = self.requests.get(key, (0, now))
        self.requests[key] = (count + 1, created)
        for table, size in (
            (self.request_size, request_bytes),
            (self.response_size, response_bytes),
        ):
            summary = table.setdefault(handler, _Summary())
            summary.count += 1
            summary.total += size
        self.highr.observe(seconds)
        hist, created = self.duration.get((handler, method), (None, now))
        if hist is None:
            hist = Hist(HANDLER_BUCKETS)
            self.duration[(handler, method)] = (hist, created)
        hist.observe(seconds)

    def collector(self, *, created: bool) -> Collector:
        return _HttpCollector(self, created=created)


class _HttpCollector(Collector):
    def __init__(self, stats: HttpStats, *, created: bool) -> None:
        self.stats = stats
        self.with_created = created

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        requests = Metric("http_requests", _REQUESTS_HELP, "counter")
        for (handler, method, status), (count, created) in stats.requests.items():
            labels = {"handler": handler, "method": method, "status": status}
            requests.add_sample("http_requests_total", labels, float(count))
            if self.with_created:
                requests.add_sample("http_requests_created", labels, created)
        yield requests
        for name, help_text, table in (
            ("http_request_size_bytes", _REQUEST_SIZE_HELP, stats.request_size),
            ("http_response_size_bytes", _RESPONSE_SIZE_HELP, stats.response_size),
        ):
            summary = Metric(name, help_text, "summary")
            for handler, values in table.items():
                labels = {"handler": handler}
                summary.add_sample(name + "_count", labels, float(values.count))
                summary.add_sample(name + "_sum", labels, values.total)
                if self.with_created:
                    summary.add_sample(name + "_created", labels, values.created)
            yield summary
        highr = Metric("http_request_duration_highr_seconds", _HIGHR_HELP, "histogram")
        add_histogram(
            highr,
            highr.name,
            {},
            stats.highr,
            created=stats.created if self.with_created else None,
            sum_first=not self.with_created,
        )
        yield highr
        duration = Metric("http_request_duration_seconds", _DURATION_HELP, "histogram")
        for (handler, method), (hist, created) in stats.duration.items():
            add_histogram(
                duration,
                duration.name,
                {"handler": handler, "method": method},
                hist,
                created=created if self.with_created else None,
                sum_first=not self.with_created,
            )
        yield duration
