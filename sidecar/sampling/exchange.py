"""What the proxy hands to the sampler once a request is over: the contract between the two.

The proxy fills an :class:`Exchange` for every request with what it already has (references to the
bytes it relayed, the times it measured) and never parses or copies anything for it. Everything
expensive (assembling a streamed answer, redaction, serialisation) happens later, off the request
path, and only for the exchanges the sampler keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sidecar.sampling.budget import MemoryBudget


@dataclass(slots=True)
class Exchange:
    """One request/response pair as seen by the proxy."""

    request_id: str
    method: str
    path: str
    model: str | None
    key_name: str | None
    status: int
    request_body: bytes
    response_chunks: Sequence[bytes | bytearray]
    """The response body exactly as relayed: SSE bytes when ``streamed``, else the JSON body
    (only its first ``sample_max_response_bytes`` when ``response_truncated``). Never mutated
    once offered."""
    streamed: bool
    started_at: float
    """Wall-clock seconds when the proxy received the request."""
    ttft_seconds: float | None
    e2e_seconds: float
    finish_reason: str | None = None
    """Cheaply extracted by the proxy when it could (last event / body tail); None otherwise."""
    error: str | None = None
    """Proxy-side failure: ``upstream_connect``, ``upstream_timeout``, ``client_disconnect``..."""
    response_truncated: bool = False
    """The proxy kept only the start of the response (``sample_max_response_bytes`` for a
    sampled request, :data:`CANDIDATE_HEAD_BYTES` for others, less when the budget ran out)."""
    response_tail: bytes | bytearray = b""
    """When truncated: the response's last bytes (16 KiB), where usage, finish reasons and
    in-band errors are."""
    held_bytes: int = 0
    """Bytes of the sampler's :class:`MemoryBudget` this exchange holds; whoever drops it or is
    done with its bytes releases them."""


CANDIDATE_HEAD_BYTES = 32 * 1024
"""Response bytes kept for a request that is not in the random sample: enough for an error body
and the start of an answer, should a keep-rule (error, length, slow) keep it after all."""


class Sampler(Protocol):
    """The proxy's view of the sampling pipeline. Both calls are cheap and never raise."""

    @property
    def memory(self) -> MemoryBudget | None:
        """The byte budget the proxy reserves from for the response bytes it keeps (None: the
        sampler keeps nothing, so neither does the proxy)."""
        ...

    def head_decision(self, request_id: str, model: str | None) -> bool:
        """Whether this request is in the random sample (deterministic from the request id)."""
        ...

    def offer(self, exchange: Exchange, *, sampled: bool) -> None:
        """Hand over a finished exchange; keep-rules may keep it even when not ``sampled``.

        Takes over ``exchange.held_bytes``: releases them when it drops the exchange or once its
        record is built."""
        ...


class NoSampling:
    """A :class:`~sidecar.sampling.exchange.Sampler` that keeps nothing (sampling disabled)."""

    memory = None
    """Nothing is kept, so the proxy keeps no response bytes for it."""

    def head_decision(self, request_id: str, model: str | None) -> bool:
        """Never in the sample."""
        del request_id, model
        return False

    def offer(self, exchange: Exchange, *, sampled: bool) -> None:
        """Drop the exchange."""
        del exchange, sampled
