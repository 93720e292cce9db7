"""One request in flight: what the proxy noted while relaying it, and what happens at its end.

:meth:`Flight.decide` runs when vLLM's response starts (after its status line, before its
first body byte is relayed; at the end for requests that never got one): it reads the request's
model and asks the sampler for its head decision, which sets how much of the response is kept.
A sampled request keeps up to ``sample_max_response_bytes``, any other only
:data:`~sidecar.sampling.exchange.CANDIDATE_HEAD_BYTES` (in case a keep-rule wants it), and
every byte kept is reserved from the sampler's :class:`~sidecar.sampling.budget.MemoryBudget`;
past either limit only a rolling tail is kept. :meth:`Flight.finish` runs once per request after
the last byte went out (or the request failed): it observes the histograms, builds the
:class:`~sidecar.sampling.exchange.Exchange` from what the relay kept (no copy of the body
buffer) and offers it to the sampler, handing over the reservation. It never raises, because it
runs in the handler's ``finally`` and must not mask a cancellation.

Timing points (``time.perf_counter()``): ``t0`` when the handler starts (request line and
headers parsed), ``end`` after the last byte was written. ``overhead`` sums the proxy's own
share before the first byte: ``t0`` -> upstream call (auth, body read, header filter),
upstream headers -> client headers written, and the first chunk's arrival -> written. It does
not include the time spent taking a pooled connection and sending the request.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from sidecar.proxy import metrics
from sidecar.proxy.observe import (
    TAIL_WINDOW,
    StreamMeter,
    StreamShape,
    estimated_completion_tokens,
    find_finish_reason,
    find_usage,
    model_of,
    tail_of,
)
from sidecar.proxy.upstream import UpstreamResponse
from sidecar.sampling.budget import RESERVE_STEP, MemoryBudget
from sidecar.sampling.exchange import CANDIDATE_HEAD_BYTES, Exchange, Sampler

EXCHANGE_TAIL_BYTES = 16 * 1024
"""The end of a cut response handed to the sampler: its usage, finish reasons and errors."""
CLIENT_CLOSED = 499
"""Status label (nginx's convention) for requests whose client went away first."""
_GONE = frozenset({"client_disconnect", "shutdown"})
DEFAULT_BODY_LIMIT = 4 * 1024 * 1024
"""``sample_max_response_bytes``'s default, for flights made without settings (tests)."""


class Flight:
    """Mutable per-request state; slots keep it to one small allocation."""

    __slots__ = (
        "body",
        "body_limit",
        "complete",
        "decided",
        "encoded",
        "end",
        "endpoint",
        "error",
        "held",
        "key_name",
        "memory",
        "meter",
        "method",
        "model",
        "overhead",
        "path",
        "request_body",
        "request_id",
        "response_truncated",
        "sampled",
        "sampler",
        "shape",
        "started_at",
        "status",
        "streamed",
        "t0",
        "tail",
        "upstream",
    )

    def __init__(self, t0: float, started_at: float, method: str, path: str) -> None:
        self.t0 = t0
        self.started_at = started_at
        self.method = method
        self.path = path
        self.endpoint = metrics.endpoint_label(path)
        self.request_id = ""
        self.key_name: str | None = None
        self.model: str | None = None
        self.request_body = b""
        self.sampled = False
        self.status = 0
        self.streamed = False
        self.encoded = False
        self.body = bytearray()
        """The response body as relayed, in one growing buffer: thousands of small ``bytes``
        per stream would scatter over the allocator's arenas and keep the peak RSS. Handed to
        the sampler as it is (no copy); only its first ``body_limit`` bytes are kept, and only
        as far as ``held`` bytes were reserved."""
        self.body_limit = DEFAULT_BODY_LIMIT
        """Response bytes kept for the sampler: ``sample_max_response_bytes``, lowered to
        :data:`CANDIDATE_HEAD_BYTES` by :meth:`decide` for a request not in the sample."""
        self.sampler: Sampler | None = None
        self.memory: MemoryBudget | None = None
        self.held = 0
        """Bytes reserved from ``memory`` for ``body``; the body never grows past them."""
        self.decided = False
        self.tail = bytearray()
        """Past ``body_limit``: the last bytes (at least :data:`TAIL_WINDOW`), for usage and
        finish_reason, which vLLM sends last."""
        self.response_truncated = False
        self.meter: StreamMeter | None = None
        self.shape: StreamShape | None = None
        self.upstream: UpstreamResponse | None = None
        self.overhead = 0.0
        self.end: float | None = None
        self.complete = False
        self.error: str | None = None

    def decide(self, sampler: Sampler) -> None:
        """Read the model, take the head decision and set what the response may keep (once)."""
        if self.decided:
            return
        self.decided = True
        self.sampler = sampler
        self.model = model_of(self.request_body)
        self.sampled = self.head_decision(sampler)
        if not self.sampled:
            self.body_limit = min(self.body_limit, CANDIDATE_HEAD_BYTES)
        try:
            self.memory = sampler.memory
        except Exception:  # the sampler must never fail a request: keep nothing then
            metrics.SAMPLER_ERRORS.labels(call="head_decision").inc()
            self.body_limit = 0

    def keep(self, piece: bytes) -> None:
        """Append ``piece`` to the body as far as it may grow, reserving as it goes; the rest
        goes to the tail.

        The body never passes ``body_limit``: the piece that crosses it ends the body with its
        start, and goes to the tail whole. When the budget refuses, the body ends there for good
        (it must never resume after a gap).
        """
        body = self.body
        room = self.body_limit - len(body)
        if room > 0:
            head = piece if len(piece) <= room else piece[:room]
            size = len(body) + len(head)
            if size > self.held and not self._reserve(size):
                self.body_limit = len(body)
            else:
                body += head
                if head is piece:
                    return
        self.keep_tail(piece)

    def _reserve(self, size: int) -> bool:
        """Reserve enough for a body of ``size`` bytes (a step ahead, within ``body_limit``)."""
        memory = self.memory
        step = max(min(RESERVE_STEP, self.body_limit - self.held), size - self.held)
        if memory is None or not memory.reserve(step):
            return False
        self.held += step
        return True

    def keep_tail(self, piece: bytes) -> None:
        """Keep ``piece`` in the rolling tail (the body is at its limit)."""
        self.response_truncated = True
        tail = self.tail
        tail += piece
        if len(tail) > 2 * TAIL_WINDOW:
            del tail[: len(tail) - TAIL_WINDOW]

    def head_decision(self, sampler: Sampler) -> bool:
        """The sampler's head decision; False (and counted) if the sampler raises."""
        try:
            return bool(sampler.head_decision(self.request_id, self.model))
        except Exception:  # the sampler must never fail a request
            metrics.SAMPLER_ERRORS.labels(call="head_decision").inc()
            return False

    def close_upstream(self) -> None:
        """Return the upstream connection to the pool, or close it if the body was not drained.

        Closing (rather than releasing) an unfinished response is what tells vLLM the client
        is gone: it sees the socket close and aborts the request.
        """
        upstream = self.upstream
        if upstream is None:
            return
        if self.complete and self.error is None:
            upstream.release()
        else:
            upstream.close()

    def finish(self, sampler: Sampler, models: metrics.ModelLabels, log: Any) -> None:
        """Record metrics and offer the exchange; swallows (and logs) its own failures."""
        try:
            self._finish(sampler, models)
        except Exception:  # bookkeeping must not fail the request
            log.exception("proxy bookkeeping failed")

    def _finish(self, sampler: Sampler, models: metrics.ModelLabels) -> None:
        end = self.end if self.end is not None else perf_counter()
        self.decide(sampler)
        gone = self.error in _GONE
        status = CLIENT_CLOSED if gone or not self.status else self.status
        served = self.complete and self.error is None and self.status < 400
        model_label = models.label(self.model, served=served)
        key_label = self.key_name or "none"
        metrics.REQUESTS.labels(model_label, key_label, str(status), self.endpoint).inc()
        if self.upstream is not None:
            metrics.OVERHEAD_SECONDS.observe(self.overhead)

        chunks: list[bytes | bytearray] = [self.body] if self.body else []
        scanned = [*chunks, self.tail] if self.tail else chunks
        ttft: float | None = None
        meter = self.meter
        if meter is not None and meter.first_content_at is not None:
            ttft = meter.first_content_at - self.t0
        finish_reason: str | None = None
        if served and self.upstream is not None and not self.encoded:
            finish_reason = self._observe_served(model_label, key_label, end, ttft, scanned)

        exchange = Exchange(
            request_id=self.request_id,
            method=self.method,
            path=self.path,
            model=self.model,
            key_name=self.key_name,
            status=status,
            request_body=self.request_body,
            response_chunks=chunks,
            streamed=self.streamed,
            started_at=self.started_at,
            ttft_seconds=ttft,
            e2e_seconds=end - self.t0,
            finish_reason=finish_reason,
            error=self.error,
            response_truncated=self.response_truncated,
            response_tail=bytes(self.tail[-EXCHANGE_TAIL_BYTES:]),
            held_bytes=self.held,
        )
        try:
            sampler.offer(exchange, sampled=self.sampled)
        except Exception:  # the sampler must never fail a request
            metrics.SAMPLER_ERRORS.labels(call="offer").inc()
            if self.memory is not None:
                self.memory.release(self.held)

    def _observe_served(
        self,
        model_label: str,
        key_label: str,
        end: float,
        ttft: float | None,
        chunks: list[bytes | bytearray],
    ) -> str | None:
        """Latency and token histograms of a fully relayed success; returns the finish reason."""
        metrics.E2E_LATENCY_SECONDS.labels(model_label, key_label).observe(end - self.t0)
        tail = tail_of(chunks)
        usage = find_usage(tail)
        prompt = usage.prompt_tokens if usage else None
        completion = usage.completion_tokens if usage else None
        meter = self.meter
        if meter is not None:
            if ttft is not None:
                metrics.TTFT_SECONDS.labels(model_label, key_label).observe(ttft)
            metrics.INTER_TOKEN_SECONDS.merge((model_label, key_label), meter.gaps)
            if completion is None and self.shape is not None:
                completion = estimated_completion_tokens(meter, self.shape, tail)
        if prompt is not None:
            metrics.PROMPT_TOKENS.labels(model_label, key_label).observe(prompt)
        if completion is not None:
            metrics.COMPLETION_TOKENS.labels(model_label, key_label).observe(completion)
        return find_finish_reason(tail)
