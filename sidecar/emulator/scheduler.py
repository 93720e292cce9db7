"""One engine core: a continuous-batching scheduler stepping on the event loop.

Each step follows vLLM V1's scheduler in miniature: running requests first (one decode token each,
or the next prefill chunk), then waiting requests while the token budget, ``max_num_seqs`` and
free KV blocks allow. A running request that needs a block when none is free preempts the most
recently admitted request (recompute: its blocks are freed and it re-queues at the front), exactly
the behaviour that turns a full KV cache into queueing and ``num_preemptions_total``. The step
then "runs" for a time that grows with prefill tokens, batch size and attended context.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque

import structlog

from sidecar.emulator.controls import Controls
from sidecar.emulator.kv import BlockPool
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.request import EngineRequest, Status
from sidecar.emulator.stats import EngineStats

log = structlog.get_logger()

Scheduled = list[tuple[EngineRequest, int]]
_STALL_POLL_SECONDS = 0.02


class EngineRank:
    """A single engine (one data-parallel rank) with its own KV pool, queues and stats."""

    def __init__(
        self,
        index: int,
        options: EmulatorOptions,
        controls: Controls,
        stats: EngineStats,
        *,
        record_client_aborts: bool,
    ) -> None:
        self.index = index
        self.options = options
        self.controls = controls
        self.stats = stats
        self.pool = BlockPool(
            options.num_gpu_blocks, options.block_size, prefix_caching=options.prefix_caching
        )
        self.waiting: deque[EngineRequest] = deque()
        self.running: list[EngineRequest] = []
        self.steps = 0
        self._record_client_aborts = record_client_aborts
        self._jitter = random.Random(f"steps:{options.seed}:{index}")  # noqa: S311 - not security
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"emulator-engine-{self.index}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for request in [*self.running, *self.waiting]:
            self.finish(request, "abort", time.monotonic(), record=False)

    # --- requests in and out ------------------------------------------------------------------
    def add(self, request: EngineRequest) -> None:
        request.engine_index = self.index
        request.status = Status.WAITING
        request.queued_at = time.monotonic()
        self.waiting.append(request)
        self._work.set()

    def load_score(self) -> int:
        """vLLM's data-parallel balancing score: waiting weighs four times running."""
        return 4 * len(self.waiting) + len(self.running)

    def queued_prefill_tokens(self) -> int:
        """Prompt tokens not yet prefilled (for ``max_num_queued_tokens`` admission)."""
        return sum(r.prompt_len for r in self.waiting if r.output == 0) + sum(
            r.pending_tokens for r in self.running if r.output == 0
        )

    def finish(self, request: EngineRequest, reason: str, now: float, *, record: bool) -> None:
        """Take ``request`` out of the engine, free its blocks, and maybe count it as finished."""
        if request.finished:
            return
        if request.status is Status.RUNNING:
            self.running.remove(request)
        elif request.status is Status.WAITING:
            self.waiting.remove(request)
        self.pool.release(request.holding)
        request.status = Status.FINISHED
        request.finish_reason = reason
        request.finished_at = now
        if record:
            self._record_finished(request, now)
        request.progress.set()

    def client_abort(self, request: EngineRequest) -> None:
        """The client went away: free everything now; counted only if the profile says so."""
        self.finish(request, "abort", time.monotonic(), record=self._record_client_aborts)

    def apply_kv_pressure(self) -> None:
        target = math.ceil(self.controls.faults.kv_pressure * self.pool.usable)
        self.pool.set_phantom(target)

    # --- the loop -----------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if self.controls.faults.stall:
                await asyncio.sleep(_STALL_POLL_SECONDS)
                continue
            self.apply_kv_pressure()
            if not self.running and not self.waiting:
                self._work.clear()
                await self._work.wait()
                continue
            scheduled = self._schedule(time.monotonic())
            delay = self.step_seconds(scheduled)
            await asyncio.sleep(delay)
            self._complete(scheduled, time.monotonic())

    def step_seconds(self, scheduled: Scheduled) -> float:
        """Wall-clock seconds this step takes (0 when nothing ran or in zero-latency mode)."""
        options = self.options
        extra = self.controls.faults.token_latency_ms / 1000.0
        if not scheduled or options.zero_latency:
            return extra if scheduled else _STALL_POLL_SECONDS
        prefill = sum(chunk for request, chunk in scheduled if request.pending_tokens > 1)
        decoding = sum(1 for request, _ in scheduled if request.pending_tokens == 1)
        context = sum(request.computed + chunk for request, chunk in scheduled)
        seconds = (
            options.step_base_seconds
            + options.prefill_token_seconds * prefill
            + options.decode_seq_seconds * decoding
            + options.context_token_seconds * context
        )
        if options.step_jitter:
            factor = 1.0 + options.step_jitter * self._jitter.gauss(0.0, 1.0)
            seconds *= min(max(factor, 1 - 3 * options.step_jitter), 1 + 3 * options.step_jitter)
        return max(seconds, 0.0) / options.speed + extra

    def _schedule(self, now: float) -> Scheduled:
        """Pick this step's work: running requests first, then admit waiting ones."""
        budget = self.options.max_num_batched_tokens
        scheduled: Scheduled = []
        preempted = False
        for request in list(self.running):
            if budget <= 0:
                break
            if request.status is not Status.RUNNING or request.stalled:
                continue
            chunk = min(request.pending_tokens, budget)
            need = self.pool.blocks_for(request.computed + chunk) - request.holding.total
            while not self.pool.allocate(request.holding, need):
                victim = self.running[-1]
                self._preempt(victim)
                preempted = True
                if victim is request:
                    break
            else:
                scheduled.append((request, chunk))
                budget -= chunk
        if not preempted:
            budget = self._admit(now, budget, scheduled)
        return scheduled

    def _admit(self, now: float, budget: int, scheduled: Scheduled) -> int:
        if self.controls.faults.defer:
            return budget
        pool = self.pool
        while self.waiting and budget > 0 and len(self.running) < self.options.max_num_seqs:
            request = self.waiting[0]
            hits = 0
            if request.computed == 0:
                hits = pool.cached_prefix(request.block_hashes, request.prompt_len)
            cached = request.block_hashes[:hits]
            start = hits * pool.block_size
            chunk = min(request.prompt_len + request.output - start, budget)
            need = pool.blocks_for(start + chunk) - hits
            if pool.revived_count(cached) + need > pool.free:
                break
            pool.pin_cached(request.holding, cached)
            pool.allocate(request.holding, need)
            self.waiting.popleft()
            if pool.prefix_caching:
                self.stats.prefix_queries += request.prompt_len
                self.stats.prefix_hits += start
            if request.cached_tokens < 0:
                request.cached_tokens = start
            request.computed = start
            request.status = Status.RUNNING
            if request.scheduled_at is None:
                request.scheduled_at = now
            self.running.append(request)
            scheduled.append((request, chunk))
            budget -= chunk
        return budget

    def _preempt(self, request: EngineRequest) -> None:
        self.running.remove(request)
        self.pool.release(request.holding)
        request.computed = 0
        request.preemptions += 1
        request.status = Status.WAITING
        self.waiting.appendleft(request)
        self.stats.preemptions += 1

    def _complete(self, scheduled: Scheduled, now: float) -> None:
        """Apply a finished step: computed tokens, sampled tokens, finishes, stats.

        Like vLLM, ``iteration_tokens_total`` counts a request's computed prompt tokens in the step
        that produced its first token (not per prefill chunk), plus one per generated token.
        """
        stats = self.stats
        computed = 0
        first_prompts = 0
        generated = 0
        context = 0
        for request, chunk in scheduled:
            if request.status is not Status.RUNNING:
                continue
            before = request.computed
            request.computed += chunk
            computed += chunk
            context += request.computed
            self._register_blocks(request, before)
            if request.pending_tokens == 0:
                if request.first_token_at is None:
                    first_prompts += request.prompt_len - max(request.cached_tokens, 0)
                generated += self._sample(request, now)
            request.progress.set()
        if scheduled:
            self.steps += 1
            if first_prompts + generated:
                stats.hist["iteration_tokens"].observe(first_prompts + generated)
            options = self.options
            stats.flops += 2.0 * options.model_params * computed
            stats.read_bytes += 2.0 * options.model_params + options.kv_bytes_per_token * context
            stats.write_bytes += float(options.kv_bytes_per_token * computed)
        stats.note_throughput(now)

    def _register_blocks(self, request: EngineRequest, before: int) -> None:
        size = self.pool.block_size
        last = min(request.computed // size, len(request.block_hashes))
        for index in range(before // size, last):
            self.pool.register(request.holding, request.block_hashes[index])

    def _sample(self, request: EngineRequest, now: float) -> int:
        """The step produced the next token of ``request`` (or its injected error)."""
        stats = self.stats
        if request.output == 0 and request.first_token_at is None:
            stats.prompt_tokens += request.prompt_len
            cached = max(request.cached_tokens, 0)
            stats.prompt_tokens_cached += cached
            stats.prompt_tokens_computed += request.prompt_len - cached
        if request.fail_after is not None and request.output >= request.fail_after:
            self.finish(request, "error", now, record=True)
            return 0
        request.output += 1
        stats.generation_tokens += 1
        if request.first_token_at is None:
            request.first_token_at = now
            stats.hist["ttft"].observe(now - request.arrival)
        elif request.last_token_at is not None:
            stats.hist["itl"].observe(now - request.last_token_at)
        request.last_token_at = now
        if request.output >= request.planned_tokens:
            self.finish(request, request.planned_reason, now, record=True)
        elif request.stall_after is not None and request.output >= request.stall_after:
            request.stalled = True
        return 1

    def _record_finished(self, request: EngineRequest, now: float) -> None:
        """vLLM's per-request stats, recorded once when a request leaves the engine."""
        stats = self.stats
        hist = stats.hist
        stats.finished[request.finish_reason or "abort"] += 1
        hist["e2e"].observe(now - request.arrival)
        queued = request.queued_at if request.queued_at is not None else request.arrival
        scheduled = request.scheduled_at
        first = request.first_token_at
        last = request.last_token_at
        hist["queue"].observe((scheduled if scheduled is not None else now) - queued)
        prefill = (first - scheduled) if first is not None and scheduled is not None else 0.0
        decode = (last - first) if last is not None and first is not None else 0.0
        inference = (last - scheduled) if last is not None and scheduled is not None else 0.0
        hist["prefill"].observe(prefill)
        hist["decode"].observe(decode)
        hist["inference"].observe(inference)
        hist["tpot"].observe(decode / (request.output - 1) if request.output > 1 else 0.0)
        hist["prompt_len"].observe(request.prompt_len)
        hist["gen_len"].observe(request.output)
        hist["max_gen"].observe(request.output)
        hist["params_n"].observe(request.n_param)
        if request.max_tokens_param is not None:
            hist["params_max_tokens"].observe(request.max_tokens_param)
        hist["req_preemptions"].observe(request.preemptions)
        hist["prefill_computed"].observe(request.prompt_len - max(request.cached_tokens, 0))
