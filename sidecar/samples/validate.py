"""Is this object really a batch of v1 sample records? Checked before anything reads it.

DuckDB stops a whole query at the first unreadable file, so every object is checked once, whole:
it must gunzip completely, and every line must be a JSON object with ``schema_version == 1``,
a string ``request_id`` and a numeric ``started_at_unix``. A failure makes the object *corrupt*
(truncated upload, bit rot, a text file renamed ``.gz``) or *foreign* (another schema version);
either way it is reported and skipped, and the rest of the data stays usable.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sidecar.sampling.schema import SCHEMA_VERSION

Problem = Literal["corrupt", "foreign"]
SkipKind = Literal["corrupt", "foreign", "failed"]
_READ_CHUNK = 1 << 20


class InvalidObject(ValueError):
    """The object cannot be used; ``kind`` says whether it is corrupt or foreign."""

    def __init__(self, kind: Problem, reason: str) -> None:
        super().__init__(reason)
        self.kind: Problem = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object left out (of the cache or of a query), and why."""

    key: str
    kind: SkipKind
    reason: str


@dataclass(frozen=True, slots=True)
class ObjectSummary:
    """What a valid object holds."""

    records: int


def _check_line(line: bytes, number: int) -> None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidObject("corrupt", f"line {number} is not valid JSON") from None
    if not isinstance(record, dict):
        raise InvalidObject("corrupt", f"line {number} is not a JSON object")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InvalidObject("foreign", f"line {number} has schema_version {version!r}, not 1")
    if not isinstance(record.get("request_id"), str):
        raise InvalidObject("corrupt", f"line {number} has no request_id")
    started = record.get("started_at_unix")
    if isinstance(started, bool) or not isinstance(started, int | float):
        raise InvalidObject("corrupt", f"line {number} has no numeric started_at_unix")


def check_file(path: Path) -> ObjectSummary:
    """Check a gzip JSON-lines file; raises :class:`InvalidObject`."""
    records = 0
    pending = b""
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_READ_CHUNK):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.strip():
                        records += 1
                        _check_line(line, records)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidObject("corrupt", f"not a complete gzip stream ({exc})") from None
    if pending.strip():
        records += 1
        _check_line(pending, records)
    if records == 0:
        raise InvalidObject("corrupt", "holds no records")
    return ObjectSummary(records)
