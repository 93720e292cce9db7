"""Prometheus series of the sampling pipeline, registered in the sidecar's own registry.

Together they answer "is anything being lost, and where": taken = written + dropped + still in
the spool. Drop reasons are a closed set (:data:`DROP_REASONS`) so dashboards can list them.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from sidecar.metrics import REGISTRY

DROP_REASONS: Final = (
    "keep_budget",  # a keep-rule matched but its per-minute budget was spent
    "queue_full",  # the in-memory hand-over queue was full
    "memory_budget",  # the sampler's byte budget (sample_memory_max_bytes) was spent
    "offer_failed",  # an unexpected error in offer(); the proxy never sees it
    "redaction_failed",  # the redactor raised or its post-check still found a pattern
    "build_failed",  # the record could not be assembled or serialised
    "builder_failed",  # the record-building child died or got stuck over the batch
    "too_large",  # one record is larger than the whole spool
    "spool_full",  # the spool cap was reached (by the configured when_full policy)
    "spool_write_failed",  # disk full / I/O error while appending
    "spool_corrupt",  # a spooled line failed its checksum and was skipped
    "shutdown",  # still queued in memory when the grace period ran out
)

SAMPLES_TAKEN = Counter(
    "vllm_sidecar_samples_taken_total",
    "Exchanges selected for sampling, by why (random, error, length, slow).",
    ["reason"],
    registry=REGISTRY,
)
SAMPLES_WRITTEN = Counter(
    "vllm_sidecar_samples_written_total",
    "Sample records confirmed by the sink (S3 or the local directory).",
    registry=REGISTRY,
)
SAMPLES_DROPPED = Counter(
    "vllm_sidecar_samples_dropped_total",
    "Sample records lost on purpose or by failure, by reason.",
    ["reason"],
    registry=REGISTRY,
)
REDACTIONS = Counter(
    "vllm_sidecar_redactions_total",
    "Spans replaced by the redactor, by pattern kind.",
    ["kind"],
    registry=REGISTRY,
)
BUILDER_RESTARTS = Counter(
    "vllm_sidecar_sample_builder_restarts_total",
    "Record-building child processes replaced, by why (died, timeout).",
    ["why"],
    registry=REGISTRY,
)
MEMORY_BYTES = Gauge(
    "vllm_sidecar_sample_memory_bytes",
    "Bytes reserved for the sampler: response bytes kept by requests in flight and queued "
    "exchanges.",
    registry=REGISTRY,
)
MEMORY_LIMIT_BYTES = Gauge(
    "vllm_sidecar_sample_memory_limit_bytes",
    "The sampler's byte budget (sample_memory_max_bytes).",
    registry=REGISTRY,
)
MEMORY_REFUSED = Counter(
    "vllm_sidecar_sample_memory_refused_total",
    "Reservations refused because the byte budget was spent (a response cut short for the "
    "sampler, or an exchange dropped).",
    registry=REGISTRY,
)
SPOOL_BYTES = Gauge(
    "vllm_sidecar_spool_bytes",
    "Bytes of sample records waiting in the on-disk spool.",
    registry=REGISTRY,
)
SPOOL_CAPACITY_BYTES = Gauge(
    "vllm_sidecar_spool_capacity_bytes",
    "The spool's configured size cap (spool_max_bytes).",
    registry=REGISTRY,
)
SPOOL_RECORDS = Gauge(
    "vllm_sidecar_spool_records",
    "Sample records waiting in the on-disk spool.",
    registry=REGISTRY,
)
SPOOL_OLDEST_AGE = Gauge(
    "vllm_sidecar_spool_oldest_record_age_seconds",
    "Age of the oldest record still in the spool (0 when empty).",
    registry=REGISTRY,
)
UPLOAD_ATTEMPTS = Counter(
    "vllm_sidecar_upload_attempts_total",
    "Object writes attempted against the sink.",
    registry=REGISTRY,
)
UPLOAD_FAILURES = Counter(
    "vllm_sidecar_upload_failures_total",
    "Object writes that failed (they are retried with backoff).",
    registry=REGISTRY,
)
UPLOAD_DURATION = Histogram(
    "vllm_sidecar_upload_duration_seconds",
    "Time to write one object to the sink, successful or not.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
UPLOAD_LAST_SUCCESS = Gauge(
    "vllm_sidecar_upload_last_success_timestamp_seconds",
    "Unix time of the last object the sink confirmed.",
    registry=REGISTRY,
)

for _reason in DROP_REASONS:
    SAMPLES_DROPPED.labels(reason=_reason)
for _reason in ("random", "error", "length", "slow"):
    SAMPLES_TAKEN.labels(reason=_reason)


def dropped(reason: str, count: int = 1) -> None:
    """Count ``count`` lost records under one of :data:`DROP_REASONS`."""
    if count > 0:
        SAMPLES_DROPPED.labels(reason=reason).inc(count)
