"""Reading object keys back: which partition an object belongs to, or why it is foreign.

Keys are relative to the prefix (the local sink's directory or ``s3://bucket/prefix``) and follow
:mod:`sidecar.sampling.layout`: ``v1/dt=YYYY-MM-DD/hour=HH/model=<slug>/<name>.jsonl.gz``.
Anything else under the prefix (another layout version, a stray file, a key with a malformed
partition) is *foreign*: reported and skipped, never fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sidecar.samples.timespec import TimeRange
from sidecar.sampling.layout import LAYOUT_VERSION

OBJECT_SUFFIX = ".jsonl.gz"
_KEY = re.compile(
    r"^(?P<version>v\d+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/"
    r"model=(?P<model>[a-z0-9._-]+)/(?P<name>[^/]+)$"
)


class ForeignObject(ValueError):
    """An object under the prefix that is not a v1 sample object."""


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """A parsed sample object key (relative to the prefix)."""

    key: str
    dt: date
    hour: int
    model: str

    def in_scope(self, time_range: TimeRange, model_slug: str | None) -> bool:
        """Whether the object's partition may hold records for this range and model."""
        if model_slug is not None and self.model != model_slug:
            return False
        return time_range.overlaps_hour(self.dt, self.hour)


def parse_key(key: str) -> ObjectKey:
    """Parse a relative key; raises :class:`ForeignObject` saying what is wrong with it."""
    match = _KEY.match(key)
    if not match:
        raise ForeignObject("key does not follow v1/dt=YYYY-MM-DD/hour=HH/model=<slug>/<file>")
    if match.group("version") != LAYOUT_VERSION:
        raise ForeignObject(f"layout {match.group('version')} is not supported (only v1)")
    if not match.group("name").endswith(OBJECT_SUFFIX):
        raise ForeignObject(f"not a {OBJECT_SUFFIX} object")
    try:
        day = date.fromisoformat(match.group("dt"))
    except ValueError:
        raise ForeignObject(f"bad partition dt={match.group('dt')}") from None
    hour = int(match.group("hour"))
    if hour > 23:
        raise ForeignObject(f"bad partition hour={match.group('hour')}")
    return ObjectKey(key, day, hour, match.group("model"))


def is_bookkeeping(key: str) -> bool:
    """Our own cache files and the local sink's temporary files (dot-names): not objects."""
    return any(part.startswith(".") for part in key.split("/"))
