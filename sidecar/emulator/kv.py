"""The KV block pool of one engine, with vLLM-style prefix caching.

Usage is what vLLM reports: blocks pinned by live requests over usable blocks (one block is
vLLM's reserved null block). Blocks of finished requests whose prompt prefix was hashed stay
*evictable*: they count as free, yet a later prompt with the same prefix reuses them (a prefix
cache hit) until an allocation needs the room and evicts the least recently released.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class BlockHolding:
    """The blocks one request holds: private ones, and shared cached ones by hash."""

    private: int = 0
    shared: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.private + len(self.shared)


class BlockPool:
    """Counts blocks (no physical layout is needed to model usage, hits and preemption)."""

    def __init__(self, num_gpu_blocks: int, block_size: int, *, prefix_caching: bool) -> None:
        self.num_gpu_blocks = num_gpu_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.usable = num_gpu_blocks - 1
        self.used = 0
        self.phantom = 0
        self._live: dict[int, int] = {}
        self._evictable: OrderedDict[int, None] = OrderedDict()

    @property
    def free(self) -> int:
        """Blocks an allocation may take (truly free plus evictable cached ones)."""
        return self.usable - self.used

    def usage(self) -> float:
        """``vllm:kv_cache_usage_perc``: fraction of usable blocks pinned, 0..1."""
        return self.used / self.usable

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def allocate(self, holding: BlockHolding, count: int) -> bool:
        """Give ``holding`` ``count`` new private blocks; False (and nothing taken) if short."""
        if count <= 0:
            return True
        if count > self.free:
            return False
        self.used += count
        holding.private += count
        self._trim()
        return True

    def release(self, holding: BlockHolding) -> None:
        """Return every block of ``holding``; hashed ones become evictable cache entries."""
        self.used -= holding.private
        holding.private = 0
        for block_hash in holding.shared:
            refs = self._live[block_hash] - 1
            if refs:
                self._live[block_hash] = refs
                continue
            del self._live[block_hash]
            self._evictable[block_hash] = None
            self.used -= 1
        holding.shared.clear()
        self._trim()

    def cached_prefix(self, hashes: Sequence[int], prompt_len: int) -> int:
        """How many leading full blocks of a prompt are cached (never the whole prompt)."""
        if not self.prefix_caching:
            return 0
        limit = min(len(hashes), (prompt_len - 1) // self.block_size)
        hits = 0
        while hits < limit and (hashes[hits] in self._live or hashes[hits] in self._evictable):
            hits += 1
        return hits

    def revived_count(self, hashes: Sequence[int]) -> int:
        """How many of these cached blocks are evictable (pinning them takes free blocks)."""
        return sum(1 for block_hash in hashes if block_hash not in self._live)

    def pin_cached(self, holding: BlockHolding, hashes: Sequence[int]) -> None:
        """Share cached blocks with ``holding`` (caller checked ``revived_count`` fits)."""
        for block_hash in hashes:
            if block_hash in self._live:
                self._live[block_hash] += 1
            else:
                del self._evictable[block_hash]
                self._live[block_hash] = 1
                self.used += 1
            holding.shared.append(block_hash)
        self._trim()

    def register(self, holding: BlockHolding, block_hash: int) -> None:
        """A private block of ``holding`` now holds a full, hashed prompt block: share it."""
        if not self.prefix_caching or holding.private == 0:
            return
        if block_hash in self._live or block_hash in self._evictable:
            return
        holding.private -= 1
        holding.shared.append(block_hash)
        self._live[block_hash] = 1

    def set_phantom(self, target: int) -> None:
        """Move the phantom tenant (KV-pressure fault) toward ``target`` blocks."""
        target = max(0, target)
        if target < self.phantom:
            self.used -= self.phantom - target
            self.phantom = target
        else:
            grab = min(target - self.phantom, self.free)
            self.used += grab
            self.phantom += grab
        self._trim()

    def _trim(self) -> None:
        """Evict the oldest cached blocks that no longer fit in the free room."""
        while len(self._evictable) > self.free:
            self._evictable.popitem(last=False)

    def cached_blocks(self) -> int:
        """Blocks currently reusable by a prefix hit (live shared plus evictable)."""
        return len(self._live) + len(self._evictable)
