"""Ships sealed spool segments to the sink: at-least-once, idempotent keys, jittered backoff.

A segment becomes one gzip JSON-lines object per (date, hour, model) partition it holds, each
under a key derived only from the segment's content, sequence number and the spool's instance id
(see ``layout``), so a retry or a replay after a crash rewrites the same objects, and another
sidecar writing to the same bucket never does. The segment is deleted only after the
sink confirmed every one of its objects. While the sink fails, the uploader waits a full-jitter
exponential delay (``uniform(0, min(cap, initial * 2**attempt))``) and never gives up: the spool's
size cap and ``when_full`` policy decide what is lost, and both are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import math
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import structlog

from sidecar.config import Settings
from sidecar.sampling import metrics
from sidecar.sampling.framing import SpoolEntry, read_segment
from sidecar.sampling.layout import object_key, partition
from sidecar.sampling.sinks import Sink
from sidecar.sampling.spool import Segment, Spool

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff with a cap."""

    initial: float
    maximum: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        return rng.uniform(0.0, min(self.maximum, self.initial * 2.0 ** min(attempt, 62)))


@dataclass(frozen=True, slots=True)
class BatchObject:
    """One object to write: its key, gzip body and how many records it holds."""

    key: str
    body: bytes
    records: int


def batch_objects(
    entries: Sequence[SpoolEntry], *, prefix: str, pod: str, seq: int, instance: str = ""
) -> list[BatchObject]:
    """Split a segment's records by partition into deterministic gzip JSON-lines objects."""
    groups: dict[str, list[SpoolEntry]] = {}
    for entry in entries:
        groups.setdefault(partition(entry.ts_ms, entry.model_slug), []).append(entry)
    objects = []
    for part, group in sorted(groups.items()):
        first_ts = min(entry.ts_ms for entry in group)
        data = b"".join(entry.payload + b"\n" for entry in group)
        body = gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0: same bytes on replay
        key = object_key(prefix, part, pod, first_ts, seq, instance=instance)
        objects.append(BatchObject(key, body, len(group)))
    return objects


class Uploader:
    """The background task that empties the spool into the sink."""

    def __init__(
        self, spool: Spool, sink: Sink, settings: Settings, *, prefix: str, executor: Executor
    ) -> None:
        self._spool = spool
        self._sink = sink
        self._prefix = prefix
        self._pod = settings.pod_name
        self._backoff = Backoff(
            settings.upload_retry_initial_seconds, settings.upload_retry_max_seconds
        )
        self._executor = executor
        self._tick = min(1.0, settings.upload_batch_max_seconds / 4)
        """Seconds between looks at the spool: at most a quarter of the batch age, so segments
        seal on time."""
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._wake = asyncio.Event()
        self._draining = asyncio.Event()
        self._deadline = math.inf
        """Event-loop time at which uploading gives up: none until :meth:`drain`."""
        self._attempt = 0

    def wake(self) -> None:
        """A segment was sealed: look at the spool now instead of at the next tick."""
        self._wake.set()

    def drain(self, deadline: float) -> None:
        """Upload everything sealed, then return; give up at ``deadline`` (event-loop time)."""
        self._deadline = deadline
        self._draining.set()
        self._wake.set()

    def _remaining(self) -> float:
        return self._deadline - asyncio.get_running_loop().time()

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def run(self) -> None:
        """Loop until drained (after :meth:`drain`) or cancelled; survives its own bugs."""
        while True:
            if self._remaining() <= 0:
                return
            try:
                if await self._pass():
                    return
            except Exception:  # a bug here must not silently stop all uploads
                log.exception("uploader_pass_failed")
                await self._backoff_wait()

    async def _pass(self) -> bool:
        """Seal what is due and ship every sealed segment; True when a drain is complete."""
        self._wake.clear()  # before looking, so a wake-up during the pass is not lost
        await self._call(self._spool.tick)
        segments = await self._call(self._spool.sealed_segments)
        if not segments:
            if self._draining.is_set():
                return True
            await self._wait(self._tick, self._wake)
            return False
        for segment in segments:
            if not await self._ship(segment):
                await self._backoff_wait()
                return False
            self._attempt = 0
        return False

    async def _backoff_wait(self) -> None:
        delay = self._backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        # A drain request cuts a backoff short once; during the drain, plain (bounded) sleeps.
        await self._wait(delay, None if self._draining.is_set() else self._draining)

    async def _wait(self, seconds: float, event: asyncio.Event | None) -> None:
        """Sleep up to ``seconds`` but never past the deadline; ``event`` cuts it short."""
        seconds = min(seconds, max(self._remaining(), 0.0))
        if event is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)

    async def _ship(self, segment: Segment) -> bool:
        """Upload one segment and delete it; False if any object failed."""
        if not await self._call(self._spool.claim, segment.seq):
            return True  # gone already (dropped by the spool's when_full policy)
        try:
            try:
                entries, corrupt = await self._call(read_segment, segment.path)
            except FileNotFoundError:
                await self._call(self._spool.remove, segment.seq)
                return True
            except OSError as exc:
                log.warning("spool_read_failed", segment=segment.seq, error=str(exc))
                return False
            for item in await self._call(self._objects, entries, segment.seq):
                if not await self._put(item):
                    return False
            await self._call(self._spool.remove, segment.seq)
        finally:
            await self._call(self._spool.release, segment.seq)
        metrics.dropped("spool_corrupt", corrupt)
        metrics.SAMPLES_WRITTEN.inc(len(entries))
        if corrupt:
            log.warning("spool_corrupt_records_skipped", segment=segment.seq, records=corrupt)
        return True

    def _objects(self, entries: Sequence[SpoolEntry], seq: int) -> list[BatchObject]:
        instance = self._spool.instance_id
        return batch_objects(
            entries, prefix=self._prefix, pod=self._pod, seq=seq, instance=instance
        )

    async def _put(self, item: BatchObject) -> bool:
        remaining = self._remaining()
        if remaining <= 0:
            return False
        metrics.UPLOAD_ATTEMPTS.inc()
        started = time.perf_counter()
        try:
            put = self._call(self._sink.put, item.key, item.body)
            await asyncio.wait_for(put, None if remaining == math.inf else remaining)
        except Exception as exc:
            metrics.UPLOAD_FAILURES.inc()
            if self._attempt & (self._attempt - 1) == 0:  # 0, 1, 2, 4, 8 ...: no log flood
                log.warning(
                    "upload_failed",
                    key=item.key,
                    attempt=self._attempt,
                    error=type(exc).__name__,
                    detail=str(exc)[:300],
                )
            return False
        finally:
            metrics.UPLOAD_DURATION.observe(time.perf_counter() - started)
        metrics.UPLOAD_LAST_SUCCESS.set(time.time())
        if self._attempt:
            log.info("upload_recovered", failed_attempts=self._attempt)
            self._attempt = 0
        return True
