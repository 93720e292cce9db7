"""One byte budget for everything held in memory for the sampler.

The proxy reserves from it as it keeps response bytes of requests in flight, and the pipeline
reserves the request body when it queues an exchange; both give back what they reserved once
the bytes are dropped or written to the spool. When the budget is spent, responses keep what
they have (the record says ``truncated``) and new exchanges are dropped (``memory_budget``), so
memory for sampling never passes ``sample_memory_max_bytes``, whatever the traffic. Used from
the event loop's thread only.
"""

from __future__ import annotations

from sidecar.sampling import metrics

RESERVE_STEP = 64 * 1024
"""The proxy reserves in steps of this much, so a stream asks about once per 64 KiB."""


class MemoryBudget:
    """A counter of reserved bytes that refuses to pass its limit."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        metrics.MEMORY_LIMIT_BYTES.set(limit)

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit; False (and counted) if not."""
        if self.used + size > self.limit:
            metrics.MEMORY_REFUSED.inc()
            return False
        self.used += size
        metrics.MEMORY_BYTES.set(self.used)
        return True

    def release(self, size: int) -> None:
        """Give back ``size`` bytes reserved earlier."""
        self.used = max(0, self.used - size)
        metrics.MEMORY_BYTES.set(self.used)
