"""The sampling pipeline the proxy talks to: decide, hand over, then everything off the hot path.

``head_decision`` is a hash and a compare. ``offer`` checks the keep-rules and puts the exchange
on a bounded in-memory queue (full: drop and count ``queue_full``); it never blocks or raises.
Every byte held for the sampler, by the proxy for requests in flight and here for queued
exchanges, is reserved from one :class:`~sidecar.sampling.budget.MemoryBudget`
(``sample_memory_max_bytes``; spent: drop and count ``memory_budget``).
A worker task takes batches off the queue; in its own thread it has a supervised child process
(:mod:`~sidecar.sampling.builder`) assemble, redact and encode them, off the proxy's GIL, and
appends the records to the disk spool. The uploader task ships sealed
spool segments to S3 (or the local directory). ``stop(grace)`` drains the queue into the spool,
uploads what it can before the grace runs out and leaves the rest in the spool for the next
start, which replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import structlog

from sidecar import __version__
from sidecar.config import Settings
from sidecar.sampling import metrics
from sidecar.sampling.budget import MemoryBudget
from sidecar.sampling.builder import Built, Job, RecordBuilder
from sidecar.sampling.decision import SampleDecider
from sidecar.sampling.exchange import Exchange
from sidecar.sampling.framing import SpoolEntry
from sidecar.sampling.layout import slug
from sidecar.sampling.record import RecordContext
from sidecar.sampling.redact import Redactor
from sidecar.sampling.schema import SampleReason
from sidecar.sampling.sinks import sink_from_settings
from sidecar.sampling.spool import Appended, Spool
from sidecar.sampling.uploader import Uploader

log = structlog.get_logger(__name__)

WORKER_BATCH = 64
"""Exchanges spooled per hop to the worker thread."""

State = Literal["new", "running", "stopping", "stopped"]


class SamplingPipeline:
    """Implements :class:`~sidecar.sampling.exchange.Sampler`; one per process."""

    def __init__(self, settings: Settings, *, redactor: Redactor | None = None) -> None:
        self._settings = settings
        self._decider = SampleDecider.from_settings(settings)
        self._builder = RecordBuilder(
            redactor or Redactor.from_settings(settings),
            timeout=settings.sample_build_timeout_seconds,
        )
        self._sink, prefix = sink_from_settings(settings)
        self._spool = Spool(
            settings.spool_dir,
            max_bytes=settings.spool_max_bytes,
            when_full=settings.spool_when_full,
            segment_max_records=settings.upload_batch_max_records,
            segment_max_age=settings.upload_batch_max_seconds,
        )
        self._spool_executor = ThreadPoolExecutor(1, thread_name_prefix="sampling-spool")
        self._upload_executor = ThreadPoolExecutor(1, thread_name_prefix="sampling-upload")
        self._uploader = Uploader(
            self._spool, self._sink, settings, prefix=prefix, executor=self._upload_executor
        )
        self._queue: asyncio.Queue[Job] = asyncio.Queue(settings.sample_queue_max_records)
        self.memory = MemoryBudget(settings.sample_memory_max_bytes)
        """The byte budget shared with the proxy (``sample_memory_max_bytes``)."""
        self._queued_records = 0
        """Offered and not yet spooled (or dropped): the queue plus the batch being written."""
        self.upstream_version: str | None = None
        """vLLM's version (from its ``/version``), written into every record built from now on."""
        self._state: State = "new"
        self._tasks: list[asyncio.Task[None]] = []

    # --- the proxy's side (Sampler protocol) ----------------------------------------------------

    def head_decision(self, request_id: str, model: str | None) -> bool:
        """Whether the request is in the random sample; deterministic from the request id."""
        try:
            return self._decider.head(request_id, model)
        except Exception:  # never let sampling fail a request
            log.exception("sample_head_decision_failed")
            return False

    def offer(self, exchange: Exchange, *, sampled: bool) -> None:
        """Keep the exchange if sampled or a keep-rule matches; O(1), never blocks or raises.

        Owns ``exchange.held_bytes`` from now on: released here unless the exchange is queued.
        """
        queued = False
        try:
            queued = self._offer(exchange, sampled=sampled)
        except Exception:
            metrics.dropped("offer_failed")
            log.exception("sample_offer_failed")
        finally:
            if not queued:
                self.memory.release(exchange.held_bytes)

    def _offer(self, exchange: Exchange, *, sampled: bool) -> bool:
        """Queue the exchange if it is to be kept; False if it was not (its bytes to release)."""
        reason = self._reason(exchange, sampled=sampled)
        if reason is None:
            return False
        metrics.SAMPLES_TAKEN.labels(reason=reason).inc()
        worker_done = not self._tasks or self._tasks[0].done()
        if self._state in ("stopping", "stopped") and worker_done:
            metrics.dropped("shutdown")
            return False
        if self._queue.full():
            metrics.dropped("queue_full")
            return False
        extra = len(exchange.request_body) + len(exchange.response_tail)
        if not self.memory.reserve(extra):
            metrics.dropped("memory_budget")
            return False
        exchange.held_bytes += extra
        context = RecordContext(
            reason=reason,
            rate=self._decider.rate_for(exchange.model),
            deployment=self._settings.deployment,
            pod=self._settings.pod_name,
            sidecar_version=__version__,
            vllm_version=self.upstream_version,
        )
        self._queue.put_nowait(Job(exchange, context))
        self._queued_records += 1
        return True

    def _reason(self, exchange: Exchange, *, sampled: bool) -> SampleReason | None:
        """Why the exchange is kept (random sample, then keep-rules in budget), or None."""
        if exchange.method != "POST":  # /v1/models, /health ...: no prompt, nothing to review
            return None
        if sampled:
            return "random"
        rule = self._decider.keep_rule(exchange)
        if rule is None:
            return None
        if not self._decider.take_budget():
            metrics.dropped("keep_budget")
            return None
        return rule

    # --- runtime facts ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A summary for the admin API: where records go and what waits in the spool."""
        size, records, oldest_ms = self._spool.stats()
        return {
            "state": self._state,
            "sink": self._sink.describe(),
            "queue_records": self._queued_records,
            "memory_bytes": self.memory.used,
            "spool_bytes": size,
            "spool_records": records,
            "spool_oldest_ms": oldest_ms,
        }

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool (replaying what a previous run left) and start the background tasks.

        Raises :class:`~sidecar.sampling.spool.SpoolLockedError` or ``OSError`` when the spool
        directory cannot be used.
        """
        if self._state != "new":
            raise RuntimeError(f"cannot start a pipeline that is {self._state}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._spool_executor, self._spool.open)
        await loop.run_in_executor(self._spool_executor, self._builder.start)
        self._tasks = [
            asyncio.create_task(self._work(), name="sampling-worker"),
            asyncio.create_task(self._uploader.run(), name="sampling-uploader"),
        ]
        self._state = "running"
        log.info("sampling_started", sink=self._sink.describe(), rate=self._settings.sample_rate)

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The background tasks (worker, uploader), for the composer to supervise."""
        return tuple(self._tasks)

    async def stop(self, grace: float) -> None:
        """Spool what is queued, upload what fits in ``grace`` seconds, keep the rest on disk."""
        if self._state != "running":  # never started, already stopping or stopped
            if self._state == "new":
                self._state = "stopped"
            return
        self._state = "stopping"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        worker, uploader = self._tasks
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=max(0.0, deadline - loop.time()))
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        self._discard_queue()
        await loop.run_in_executor(self._spool_executor, self._spool.seal)
        self._uploader.drain(deadline)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(uploader), max(0.0, deadline - loop.time()) + 1)
        uploader.cancel()
        await asyncio.gather(uploader, return_exceptions=True)
        await loop.run_in_executor(self._spool_executor, self._spool.close)
        await loop.run_in_executor(self._spool_executor, self._builder.stop)
        self._spool_executor.shutdown(wait=False)
        self._upload_executor.shutdown(wait=False, cancel_futures=True)
        _size, left, _oldest = self._spool.stats()
        self._state = "stopped"
        log.info("sampling_stopped", records_left_in_spool=left)

    def _discard_queue(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            self._queue.task_done()
            metrics.dropped("shutdown")
            self.memory.release(item.exchange.held_bytes)
        self._queued_records = 0

    # --- the worker -----------------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < WORKER_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                sealed = await loop.run_in_executor(self._spool_executor, self._spool_batch, batch)
            finally:
                for item in batch:
                    self.memory.release(item.exchange.held_bytes)
                    self._queued_records -= 1
                    self._queue.task_done()
            if sealed:
                self._uploader.wake()

    def _spool_batch(self, batch: Sequence[Job]) -> bool:
        """Runs in the spool thread: have the child build the records, append them. True if a
        segment sealed."""
        results = self._builder.build(batch)
        if results is None:
            metrics.dropped("builder_failed", len(batch))
            return False
        sealed = False
        for item, result in zip(batch, results, strict=True):
            request_id = item.exchange.request_id
            if not isinstance(result, Built):
                metrics.dropped(result.reason)
                log.warning("sample_dropped", request_id=request_id, why=result.detail)
                continue
            for kind, count in result.redactions.items():
                metrics.REDACTIONS.labels(kind=kind).inc(count)
            entry = SpoolEntry(
                int(item.exchange.started_at * 1000), slug(result.model_name), result.payload
            )
            try:
                sealed |= self._spool.append(entry) is Appended.SEALED
            except Exception:  # append() counts I/O errors itself; this is for the unexpected
                metrics.dropped("spool_write_failed")
                log.exception("spool_append_failed", request_id=request_id)
        return sealed
