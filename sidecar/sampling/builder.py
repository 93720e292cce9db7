"""Record building in a child process: assembly, redaction and encoding off the proxy's GIL.

The pipeline's spool thread sends a batch of raw exchanges to one supervised child over a pipe
and waits for the encoded records (the event loop never waits: the bounded queue in front of it
drops and counts when the child falls behind). The child redacts before anything touches disk.
A child that dies, or takes longer than ``timeout`` over a batch, is killed and started afresh;
that batch is dropped and counted (``builder_failed``). The child ignores SIGINT and SIGTERM: the
parent drains through it during shutdown, then stops it.
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
from sidecar.sampling.record import build_payload
from sidecar.sampling.redact import RedactionError, Redactor
from sidecar.sampling.schema import SampleReason

log = structlog.get_logger(__name__)

BATCH_TIMEOUT_SECONDS = 30.0
"""Longest a batch may take before the child is taken for stuck and replaced."""
STOP_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Job:
    """One exchange to turn into a record, with what the record needs from the pipeline."""

    exchange: Exchange
    reason: SampleReason
    rate: float
    vllm_version: str | None


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


def build(job: Job, redactor: Redactor, deployment: str, pod: str, version: str) -> Built | Dropped:
    """One record, or why not (runs in the child)."""
    counts: Counter[str] = Counter()
    try:
        model_name, payload = build_payload(
            job.exchange,
            reason=job.reason,
            rate=job.rate,
            redactor=redactor,
            deployment=deployment,
            pod=pod,
            sidecar_version=version,
            vllm_version=job.vllm_version,
            counts=counts,
        )
    except RedactionError as exc:
        return Dropped("redaction_failed", str(exc))
    except Exception as exc:  # the type only: an error's text could quote the content
        return Dropped("build_failed", type(exc).__name__)
    return Built(model_name, payload, dict(counts))


def _serve(conn: Connection, redactor: Redactor, deployment: str, pod: str, version: str) -> None:
    """The child's loop: a batch of jobs in, their results out, until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            jobs: list[Job] | None = conn.recv()
        except EOFError:  # the parent is gone
            return
        if jobs is None:
            return
        conn.send([build(job, redactor, deployment, pod, version) for job in jobs])


class RecordBuilder:
    """Owns the child; :meth:`build` is called from one thread at a time (the spool thread)."""

    def __init__(
        self,
        redactor: Redactor,
        *,
        deployment: str,
        pod: str,
        version: str,
        timeout: float = BATCH_TIMEOUT_SECONDS,
    ) -> None:
        self._args = (redactor, deployment, pod, version)
        self._timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start or after stop)."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child (blocks for its start-up, ~0.5 s)."""
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, *self._args), name="sampling-builder", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent

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
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            if self._process is not None:
                self._process.join(STOP_SECONDS)
        self._kill()

    def _kill(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is not None and process.is_alive():
            process.kill()
        if process is not None:
            process.join()
        if conn is not None:
            conn.close()
