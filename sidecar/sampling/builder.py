"""Record building in a supervised child process: assembly, redaction and encoding off the
proxy's GIL, redacted before anything touches disk. The spool thread sends it batches of raw
exchanges over a pipe and waits (the event loop never does). A child that dies or takes longer
than ``timeout`` over a batch is replaced, the batch dropped and counted (``builder_failed``).
It ignores SIGINT/SIGTERM: the parent drains through it on shutdown, then stops it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import structlog

from sidecar.sampling import metrics
from sidecar.sampling.exchange import Exchange
from sidecar.sampling.record import RecordContext, build_record
from sidecar.sampling.redact import RedactionError, Redactor
from sidecar.sampling.schema import encode

log = structlog.get_logger(__name__)

STOP_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Job:
    """One queued exchange to turn into a record, with what the record needs from the pipeline."""

    exchange: Exchange
    context: RecordContext


@dataclass(frozen=True, slots=True)
class Built:
    """A record ready for the spool: its model name (for the partition) and its JSON line."""

    model_name: str | None
    payload: bytes
    redactions: dict[str, int]


@dataclass(frozen=True, slots=True)
class Dropped:
    """A record that must not be written: why (a drop reason) and a detail safe to log."""

    reason: str
    detail: str


def build(job: Job, redactor: Redactor) -> Built | Dropped:
    """One record, or why not (runs in the child)."""
    counts: Counter[str] = Counter()
    try:
        record = build_record(job.exchange, job.context, redactor, counts)
        payload = encode(record)
    except RedactionError as exc:
        return Dropped("redaction_failed", str(exc))
    except Exception as exc:  # the type only: an error's text could quote the content
        return Dropped("build_failed", type(exc).__name__)
    return Built(record.model_name, payload, dict(counts))


def _serve(conn: Connection, redactor: Redactor) -> None:
    """The child's loop: a batch of jobs in, their results out, until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn.send("ready")  # imports done: the first batch does not pay for them
    while True:
        try:
            jobs: list[Job] | None = conn.recv()
        except EOFError:  # the parent is gone
            return
        if jobs is None:
            return
        conn.send([build(job, redactor) for job in jobs])


class RecordBuilder:
    """Owns the child; :meth:`build` is called from one thread at a time (the spool thread)."""

    def __init__(self, redactor: Redactor, *, timeout: float) -> None:
        self._redactor = redactor
        self._timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    def start(self) -> None:
        """Start the child and wait (up to the batch timeout) until it is ready."""
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self._redactor), name="sampling-builder", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        with contextlib.suppress(EOFError, OSError):
            if parent.poll(self._timeout):
                parent.recv()

    def build(self, jobs: Sequence[Job]) -> list[Built | Dropped] | None:
        """The results of ``jobs`` in order, or None when the child failed them (it is replaced)."""
        if self._conn is None:
            self.start()
        assert self._conn is not None
        try:
            self._conn.send(list(jobs))
            if self._conn.poll(self._timeout):
                results: list[Built | Dropped] = self._conn.recv()
                return results
            why = "timeout"
        except (EOFError, OSError):
            why = "died"
        log.warning("sample_builder_replaced", why=why, batch=len(jobs))
        metrics.BUILDER_RESTARTS.labels(why=why).inc()
        self._kill()
        self.start()
        return None

    def stop(self) -> None:
        """Ask the child to finish, kill it if it does not within a moment."""
        if self._conn is not None and self._process is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._process.join(STOP_SECONDS)
        self._kill()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()  # a no-op once it has exited
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
