"""The engine behind the API: one or more data-parallel ranks, admission and aborts.

``Engine`` is what tests and the HTTP handlers talk to. It places each request on the least
loaded rank (vLLM's ``4 x waiting + running`` score), applies the admission caps, and aborts
requests whose client went away, freeing their KV blocks synchronously and recording
``(request_id, monotonic time)`` in :attr:`Engine.aborted` so a proxy test can check how fast an
abort reached the engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sidecar.emulator.controls import Controls, Faults
from sidecar.emulator.families import histogram_buckets
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.request import EngineRequest
from sidecar.emulator.scheduler import EngineRank
from sidecar.emulator.stats import EngineStats


class AdmissionRejected(Exception):
    """A queue cap refused the request (HTTP 503); ``reason`` names the cap."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Engine:
    """All engine ranks of one emulated server."""

    def __init__(self, options: EmulatorOptions, controls: Controls) -> None:
        self.options = options
        self.controls = controls
        buckets = histogram_buckets(options.metrics_profile, options.max_model_len)
        self.ranks = [
            EngineRank(
                index,
                options,
                controls,
                EngineStats(buckets),
                record_client_aborts=options.count_client_aborts,
            )
            for index in range(options.data_parallel)
        ]
        self.aborted: list[tuple[str, float]] = []
        """``(external request id, time.monotonic())`` of every client abort, in order."""
        self.stopped = False
        controls.on_faults_changed(self._faults_changed)

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    def start(self) -> None:
        for rank in self.ranks:
            rank.start()
        self._faults_changed(self.controls.faults)

    async def stop(self) -> None:
        self.stopped = True
        for rank in self.ranks:
            await rank.stop()

    def _faults_changed(self, faults: Faults) -> None:
        del faults
        for rank in self.ranks:
            rank.apply_kv_pressure()

    # --- admission ----------------------------------------------------------------------------
    def check_admission(self, sequences: int, prompt_tokens: int) -> None:
        """Raise :class:`AdmissionRejected` if a cap would be exceeded (and count it)."""
        options = self.options
        stats = self.ranks[0].stats
        if options.max_num_queued_reqs is not None:
            in_flight = self.num_running + self.num_waiting
            if in_flight + sequences > options.max_num_queued_reqs:
                stats.admission_rejections["max_num_queued_reqs"] += 1
                raise AdmissionRejected(
                    "max_num_queued_reqs",
                    f"Request rejected: {in_flight} requests in flight and the limit is "
                    f"{options.max_num_queued_reqs} (--max-num-queued-reqs).",
                )
        if options.max_num_queued_tokens is not None:
            queued = sum(rank.queued_prefill_tokens() for rank in self.ranks)
            if queued + prompt_tokens > options.max_num_queued_tokens:
                stats.admission_rejections["max_num_queued_tokens"] += 1
                raise AdmissionRejected(
                    "max_num_queued_tokens",
                    f"Request rejected: {queued} prompt tokens awaiting prefill and the limit is "
                    f"{options.max_num_queued_tokens} (--max-num-queued-tokens).",
                )

    def submit(self, requests: Sequence[EngineRequest]) -> None:
        """Queue the sequences of one API request on the least loaded rank."""
        rank = min(self.ranks, key=EngineRank.load_score)
        for request in requests:
            rank.add(request)
            if self.stopped:  # shutting down: answer at once instead of waiting forever
                rank.finish(request, "abort", time.monotonic(), record=False)

    # --- aborts -------------------------------------------------------------------------------
    def abort(self, requests: Sequence[EngineRequest], external_id: str) -> None:
        """The client disconnected: abort unfinished sequences now and note when."""
        live = [request for request in requests if not request.finished]
        if not live:
            return
        for request in live:
            self.ranks[request.engine_index].client_abort(request)
        self.aborted.append((external_id, time.monotonic()))

    def engine_abort(self, external_id: str | None = None) -> int:
        """Abort from the engine side (counted as ``finished_reason="abort"``); returns how many."""
        now = time.monotonic()
        count = 0
        for rank in self.ranks:
            for request in [*rank.running, *rank.waiting]:
                if external_id is None or request.external_id == external_id:
                    rank.finish(request, "abort", now, record=True)
                    count += 1
        return count

    # --- state --------------------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return sum(len(rank.running) for rank in self.ranks)

    @property
    def num_waiting(self) -> int:
        return sum(len(rank.waiting) for rank in self.ranks)

    @property
    def kv_cache_usage(self) -> float:
        """The highest KV usage of any rank (what the OOM-canary alert looks at)."""
        return max(rank.pool.usage() for rank in self.ranks)

    @property
    def preemptions(self) -> int:
        return sum(rank.stats.preemptions for rank in self.ranks)

    def free_blocks(self) -> int:
        return sum(rank.pool.free for rank in self.ranks)

    def state(self) -> dict[str, Any]:
        """A JSON-able picture of every rank, for ``GET /_emulator/state`` and tests."""
        return {
            "ranks": [
                {
                    "engine": str(rank.index),
                    "running": len(rank.running),
                    "waiting": len(rank.waiting),
                    "kv_cache_usage": rank.pool.usage(),
                    "num_gpu_blocks": rank.pool.num_gpu_blocks,
                    "free_blocks": rank.pool.free,
                    "phantom_blocks": rank.pool.phantom,
                    "cached_blocks": rank.pool.cached_blocks(),
                    "steps": rank.steps,
                    "preemptions": rank.stats.preemptions,
                    "finished": dict(rank.stats.finished),
                    "prompt_tokens": rank.stats.prompt_tokens,
                    "generation_tokens": rank.stats.generation_tokens,
                }
                for rank in self.ranks
            ],
            "aborted": len(self.aborted),
        }
