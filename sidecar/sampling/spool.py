"""A bounded on-disk spool of sample records: append-only, checksummed, segment files.

Layout of ``spool_dir``: ``NNNNNNNNNNNN.open`` (the one segment being appended to),
``NNNNNNNNNNNN.seg`` (sealed, waiting for upload), ``next-seq`` (the next segment number, kept
across restarts so object keys never repeat), ``instance-id`` (this spool's id in object keys:
host name plus a random part, made once, so sidecars sharing a bucket never collide and a replay
of a segment writes the same keys) and ``.lock`` (one process per spool). Records are
checksummed lines (see ``framing``); corrupt lines are skipped and counted, never fatal, and an
entry that cannot be read at all is set aside and logged: the spool never keeps the proxy down.

Durability: every append is one ``write(2)`` of a whole line, so once :meth:`Spool.append`
returns the record survives a crash of this process (``kill -9``). The open segment is
``fsync``-ed at most every ``FSYNC_INTERVAL`` seconds and when it is sealed (rename + directory
fsync), so a power loss can cost at most about that interval. A failed write (disk full, file
size limit) is truncated away and counted, never raised. The total size is capped at
``max_bytes``; ``when_full`` decides whether the new record (``drop_newest``) or the oldest
sealed segment (``drop_oldest``) goes, and both are counted as ``spool_full``.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from sidecar.sampling import metrics
from sidecar.sampling.framing import (
    SpoolEntry,
    frame,
    fsync_dir,
    read_segment,
    write_all,
    write_file,
)

log = structlog.get_logger(__name__)

WhenFull = Literal["drop_newest", "drop_oldest"]
OPEN_SUFFIX = ".open"
SEALED_SUFFIX = ".seg"
INSTANCE_FILE = "instance-id"
FSYNC_INTERVAL = 1.0
_INSTANCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{0,80}$")


class SpoolLockedError(RuntimeError):
    """Another process already uses this spool directory."""


class Appended(enum.Enum):
    """What happened to one record handed to :meth:`Spool.append`."""

    STORED = "stored"
    SEALED = "sealed"  # stored, and its segment is now ready for upload
    DROPPED = "dropped"


@dataclass(slots=True)
class Segment:
    """A segment file and what it holds; changed only under the spool's lock, and never once
    sealed (the uploader reads sealed ones without it). All but the open one are sealed."""

    seq: int
    path: Path
    size: int
    records: int
    oldest_ms: int | None


class Spool:
    """Thread-safe: the record worker appends while the uploader reads and removes."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        when_full: WhenFull = "drop_newest",
        segment_max_records: int = 500,
        segment_max_age: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.segment_max_records = segment_max_records
        self.segment_max_age = segment_max_age
        self.segment_max_bytes = min(max(max_bytes // 8, 4096), 64 << 20)
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._segments: dict[int, Segment] = {}
        self._claimed: set[int] = set()
        self._open_fd: int | None = None
        self._open_seq: int | None = None
        self._opened_at = 0.0
        self._dirty = False
        self._last_fsync = 0.0
        self._next_seq = 1
        self._lock_fd: int | None = None
        self.instance_id = ""
        """This spool's id in object keys; set by :meth:`open`."""

    # --- life cycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory, seal segments a previous run left open, and index everything."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise SpoolLockedError(
                f"spool directory {self.directory.resolve()} is in use by another process "
                "(another vllm-sidecar?); give this one its own --spool-dir"
            ) from None
        self._lock_fd = lock_fd
        self.instance_id = self._instance_id()
        highest = 0
        for path in sorted(self.directory.iterdir()):
            if path.suffix not in (OPEN_SUFFIX, SEALED_SUFFIX) or not path.stem.isdigit():
                continue
            seq = int(path.stem)
            highest = max(highest, seq)  # even when unreadable: its number stays used
            try:
                self._recover(seq, path)
            except OSError as exc:  # a directory, no permission, I/O error: skip, never fail
                log.warning("spool_entry_unreadable", path=str(path), error=str(exc))
                metrics.dropped("spool_corrupt")
        self._next_seq = highest + 1
        with contextlib.suppress(OSError, ValueError):  # missing or damaged: the files decide
            kept = int((self.directory / "next-seq").read_text(encoding="ascii").strip())
            self._next_seq = max(kept, highest + 1)
        total = shutil.disk_usage(self.directory).total
        if total < self.max_bytes:
            log.warning("spool_volume_smaller_than_cap", volume_bytes=total, cap=self.max_bytes)
        metrics.SPOOL_CAPACITY_BYTES.set(self.max_bytes)
        with self._lock:
            self._publish()
        log.info(
            "spool_opened",
            path=str(self.directory),
            segments=len(self._segments),
            records=sum(segment.records for segment in self._segments.values()),
        )

    def _recover(self, seq: int, path: Path) -> None:
        entries, _corrupt = read_segment(path)
        if path.suffix == OPEN_SUFFIX:
            if not entries:
                path.unlink(missing_ok=True)
                return
            sealed_path = path.with_suffix(SEALED_SUFFIX)
            os.replace(path, sealed_path)
            path = sealed_path
        self._segments[seq] = Segment(
            seq=seq,
            path=path,
            size=path.stat().st_size,
            records=len(entries),
            oldest_ms=min((entry.ts_ms for entry in entries), default=None),
        )

    def close(self) -> None:
        """Seal the open segment (fsync) and release the directory lock."""
        with self._lock:
            self._seal_locked()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- writing ------------------------------------------------------------------------------

    def append(self, entry: SpoolEntry) -> Appended:
        """Store one record, or drop and count it; never raises for I/O or capacity."""
        line = frame(entry)
        with self._lock:
            if len(line) > self.max_bytes:
                metrics.dropped("too_large")
                return Appended.DROPPED
            if not self._make_room(len(line)):
                metrics.dropped("spool_full")
                return Appended.DROPPED
            try:
                segment = self._current_segment()
            except OSError as exc:
                log.warning("spool_segment_create_failed", error=str(exc))
                metrics.dropped("spool_write_failed")
                return Appended.DROPPED
            assert self._open_fd is not None
            try:
                write_all(self._open_fd, line)
            except OSError as exc:
                log.warning("spool_write_failed", error=exc.strerror or str(exc))
                metrics.dropped("spool_write_failed")
                self._undo_partial_write(segment)
                return Appended.DROPPED
            segment.size += len(line)
            segment.records += 1
            if segment.oldest_ms is None or entry.ts_ms < segment.oldest_ms:
                segment.oldest_ms = entry.ts_ms
            self._dirty = True
            if (
                segment.records >= self.segment_max_records
                or segment.size >= self.segment_max_bytes
            ):
                self._seal_locked()
                self._publish()
                return Appended.SEALED
            self._maybe_fsync()
            self._publish()
            return Appended.STORED

    def _undo_partial_write(self, segment: Segment) -> None:
        """Cut a half-written line away so the next record starts on a clean line."""
        assert self._open_fd is not None
        try:
            os.ftruncate(self._open_fd, segment.size)
        except OSError:
            # Cannot repair in place: seal what is there; readers skip the torn line.
            self._seal_locked()

    def _current_segment(self) -> Segment:
        if self._open_seq is not None:
            return self._segments[self._open_seq]
        seq = self._next_seq
        write_file(self.directory / "next-seq", b"%d\n" % (seq + 1))
        self._next_seq = seq + 1
        path = self.directory / f"{seq:012d}{OPEN_SUFFIX}"
        self._open_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._open_seq = seq
        self._opened_at = self._clock()
        segment = Segment(seq, path, 0, 0, None)
        self._segments[seq] = segment
        return segment

    def _maybe_fsync(self) -> None:
        if self._dirty and self._open_fd is not None:
            now = self._clock()
            if now - self._last_fsync >= FSYNC_INTERVAL:
                with contextlib.suppress(OSError):
                    os.fsync(self._open_fd)
                self._last_fsync = now
                self._dirty = False

    def _make_room(self, needed: int) -> bool:
        while self._total_size() + needed > self.max_bytes:
            if self.when_full == "drop_newest":
                return False
            unclaimed = [seq for seq in self._segments if seq not in self._claimed]
            if not unclaimed:
                return False
            victim = self._segments[min(unclaimed)]
            if victim.seq == self._open_seq:
                self._seal_locked()
            metrics.dropped("spool_full", victim.records)
            log.warning("spool_full_dropped_oldest", segment=victim.seq, records=victim.records)
            self._remove_locked(victim.seq)
        return True

    # --- sealing ------------------------------------------------------------------------------

    def tick(self) -> bool:
        """Seal the open segment if it is old enough; fsync it if due. True if sealed."""
        with self._lock:
            age = self._clock() - self._opened_at
            sealed = self._open_seq is not None and age >= self.segment_max_age
            if sealed:
                self._seal_locked()
            self._maybe_fsync()
            self._publish()
            return sealed

    def seal(self) -> None:
        """Seal the open segment now (shutdown, tests)."""
        with self._lock:
            self._seal_locked()
            self._publish()

    def _seal_locked(self) -> None:
        if self._open_seq is None or self._open_fd is None:
            return
        segment = self._segments[self._open_seq]
        fd = self._open_fd
        self._open_fd = None
        self._open_seq = None
        self._dirty = False
        try:
            os.fsync(fd)
        except OSError as exc:
            log.warning("spool_fsync_failed", segment=segment.seq, error=str(exc))
        finally:
            os.close(fd)
        if segment.records == 0:
            segment.path.unlink(missing_ok=True)
            del self._segments[segment.seq]
            return
        sealed_path = segment.path.with_suffix(SEALED_SUFFIX)
        try:
            os.replace(segment.path, sealed_path)
            fsync_dir(self.directory)
        except OSError as exc:
            log.warning("spool_seal_rename_failed", segment=segment.seq, error=str(exc))
            sealed_path = segment.path
        segment.path = sealed_path

    # --- reading and acknowledging ------------------------------------------------------------

    def sealed_segments(self) -> list[Segment]:
        """Sealed segments (all but the open one), oldest first."""
        with self._lock:
            return [self._segments[seq] for seq in sorted(self._segments) if seq != self._open_seq]

    def claim(self, seq: int) -> bool:
        """Mark a segment as being uploaded, so ``drop_oldest`` leaves it alone."""
        with self._lock:
            if seq not in self._segments:
                return False
            self._claimed.add(seq)
            return True

    def release(self, seq: int) -> None:
        """Undo :meth:`claim` (upload failed; the segment stays)."""
        with self._lock:
            self._claimed.discard(seq)

    def remove(self, seq: int) -> None:
        """Delete a segment whose records the sink has confirmed."""
        with self._lock:
            self._remove_locked(seq)
            self._publish()

    def _remove_locked(self, seq: int) -> None:
        segment = self._segments.pop(seq, None)
        self._claimed.discard(seq)
        if segment is not None:
            segment.path.unlink(missing_ok=True)

    # --- state --------------------------------------------------------------------------------

    def _total_size(self) -> int:
        return sum(segment.size for segment in self._segments.values())

    def stats(self) -> tuple[int, int, int | None]:
        """(bytes, records, oldest start time in ms or None)."""
        with self._lock:
            return self._stats_locked()

    def _stats_locked(self) -> tuple[int, int, int | None]:
        segments = list(self._segments.values())
        oldest = min(
            (segment.oldest_ms for segment in segments if segment.oldest_ms is not None),
            default=None,
        )
        return self._total_size(), sum(segment.records for segment in segments), oldest

    def _publish(self) -> None:
        size, records, oldest = self._stats_locked()
        metrics.SPOOL_BYTES.set(size)
        metrics.SPOOL_RECORDS.set(records)
        metrics.SPOOL_OLDEST_AGE.set(
            0 if oldest is None else max(0.0, self._wall() - oldest / 1000)
        )

    def _instance_id(self) -> str:
        """The id kept in ``instance-id``, made (host name + 48 random bits) on first use."""
        path = self.directory / INSTANCE_FILE
        with contextlib.suppress(OSError, UnicodeDecodeError):
            kept = path.read_text(encoding="ascii").strip()
            if _INSTANCE_PATTERN.match(kept):
                return kept
        host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:40]
        made = f"{host or 'host'}-{secrets.token_hex(6)}"
        write_file(path, made.encode("ascii") + b"\n")
        return made
