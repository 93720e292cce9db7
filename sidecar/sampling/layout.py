"""Where a record lands: Hive-style partitions and deterministic object keys.

``{prefix}/v1/dt=YYYY-MM-DD/hour=HH/model=<slug>/{pod}-{instance}-{first_ts}-{seq}.jsonl.gz``

``dt`` and ``hour`` come from the request's start time (UTC); ``instance`` is the spool's own id
(host name plus a random part, created once and kept in the spool directory), so two sidecars
that share a bucket and a pod name (``local``, ``vm-1``) never write the same key; ``first_ts``
is the earliest start time in the object (``YYYYMMDDTHHMMSSZ``); ``seq`` is the spool segment's
sequence number, which the spool persists across restarts. A segment always splits into the same
objects under the same keys, so re-uploading it after a crash overwrites rather than duplicates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

LAYOUT_VERSION = "v1"
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
MAX_SLUG = 100


def slug(value: str | None) -> str:
    """A path-safe, lower-case name: ``Meta-Llama/Llama-3 8B`` -> ``meta-llama-llama-3-8b``."""
    text = _UNSAFE.sub("-", (value or "").lower()).strip("-.")
    return text[:MAX_SLUG].rstrip("-.") or "unknown"


def partition(ts_ms: int, model_slug: str) -> str:
    """``dt=YYYY-MM-DD/hour=HH/model=<slug>`` for a start time in Unix milliseconds."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"dt={moment:%Y-%m-%d}/hour={moment:%H}/model={model_slug}"


def object_key(
    prefix: str, part: str, pod: str, first_ts_ms: int, seq: int, *, instance: str = ""
) -> str:
    """The full key of one batch object; ``prefix`` may be empty (the local sink)."""
    writer = f"{slug(pod)}-{instance}" if instance else slug(pod)
    first = datetime.fromtimestamp(first_ts_ms / 1000, tz=UTC)
    name = f"{writer}-{first:%Y%m%dT%H%M%SZ}-{seq:012d}.jsonl.gz"
    head = prefix.strip("/")
    return "/".join(piece for piece in (head, LAYOUT_VERSION, part, name) if piece)
