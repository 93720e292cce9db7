"""One sequence inside the engine: its plan, its progress, its timestamps.

The HTTP side creates one :class:`EngineRequest` per choice (``n`` x prompts) and watches
``progress`` (an event set after every engine step that touched it) to stream new tokens.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

from sidecar.emulator.kv import BlockHolding


class Status(enum.Enum):
    NEW = "new"
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False, slots=True)
class EngineRequest:
    """A sequence to generate; the engine mutates the state fields, the handler reads them."""

    request_id: str
    """Unique inside the engine (external id plus a suffix, like vLLM's)."""
    external_id: str
    """The caller's request id (``X-Request-Id`` or the generated one)."""
    prompt_len: int
    block_hashes: tuple[int, ...]
    planned_tokens: int
    """How many tokens the model will produce before ``planned_reason`` ends it."""
    planned_reason: str
    arrival: float
    """Monotonic time the API server received the HTTP request (TTFT and e2e start here)."""
    max_tokens_param: int | None = None
    n_param: int = 1
    fail_after: int | None = None
    """Injected error: finish with ``error`` once this many tokens were produced."""
    stall_after: int | None = None
    """Injected stall: stop making progress after this many tokens (blocks stay held)."""

    status: Status = Status.NEW
    computed: int = 0
    """Tokens whose KV is computed (prompt, then generated ones; reset by preemption)."""
    output: int = 0
    """Tokens generated so far (never reset: a preempted request recomputes, it does not redo)."""
    holding: BlockHolding = field(default_factory=BlockHolding)
    preemptions: int = 0
    cached_tokens: int = -1
    """Prompt tokens served from the prefix cache at first scheduling (-1 before)."""
    stalled: bool = False
    queued_at: float | None = None
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None
    engine_index: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED

    @property
    def pending_tokens(self) -> int:
        """Tokens to compute before the next token can be sampled."""
        return self.prompt_len + self.output - self.computed

    @property
    def prefilling(self) -> bool:
        """True until the first token exists (a recompute after preemption is not prefill)."""
        return self.output == 0
