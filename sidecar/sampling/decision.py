"""Which exchanges become sample records.

The random part hashes the request id (blake2b, no key, no per-process salt) to a number in
[0, 1) and compares it with the model's rate, so every replica that sees the same id agrees.
Keep-rules add errors, ``length`` cut-offs and slow requests that the random draw missed, but
only within a token-bucket budget per minute, so an incident cannot flood the bucket.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Literal

from sidecar.config import Settings
from sidecar.sampling.exchange import Exchange

SampleReason = Literal["random", "error", "length", "slow"]
KeepReason = Literal["error", "length", "slow"]

_TWO_TO_64 = float(1 << 64)


def request_fraction(request_id: str) -> float:
    """Map a request id to a uniform number in [0, 1); the same on every machine and run."""
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_TO_64


class TokenBucket:
    """``per_minute`` tokens per minute with a burst of one minute's worth; starts full."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = float(per_minute)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class SampleDecider:
    """Head decision (random, per model) and tail keep-rules (error, length, slow)."""

    def __init__(
        self,
        *,
        rate: float,
        overrides: Mapping[str, float] | None = None,
        keep_errors: bool = True,
        keep_length: bool = True,
        keep_slow_seconds: float | None = None,
        keep_budget_per_minute: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._overrides = dict(overrides or {})
        self._keep_errors = keep_errors
        self._keep_length = keep_length
        self._keep_slow_seconds = keep_slow_seconds
        self._budget = TokenBucket(keep_budget_per_minute, clock)

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> SampleDecider:
        """Build the decider from the sampling section of the settings."""
        return cls(
            rate=settings.sample_rate,
            overrides=settings.sample_rate_overrides,
            keep_errors=settings.sample_keep_errors,
            keep_length=settings.sample_keep_length,
            keep_slow_seconds=settings.sample_keep_slow_seconds,
            keep_budget_per_minute=settings.sample_keep_budget_per_minute,
            clock=clock,
        )

    def rate_for(self, model: str | None) -> float:
        """The random sample rate for ``model`` (its override, else the default)."""
        if model is not None and model in self._overrides:
            return self._overrides[model]
        return self._rate

    def head(self, request_id: str, model: str | None) -> bool:
        """Whether ``request_id`` falls in the random sample for ``model``."""
        return request_fraction(request_id) < self.rate_for(model)

    def keep_rule(self, exchange: Exchange) -> KeepReason | None:
        """The first keep-rule an un-sampled exchange matches (budget not consulted)."""
        if self._keep_errors and (exchange.status >= 400 or exchange.error is not None):
            return "error"
        if self._keep_length and exchange.finish_reason == "length":
            return "length"
        if self._keep_slow_seconds is not None and exchange.e2e_seconds > self._keep_slow_seconds:
            return "slow"
        return None

    def take_budget(self) -> bool:
        """Spend one keep-rule token; False once this minute's budget is gone."""
        return self._budget.take()
