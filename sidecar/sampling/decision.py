"""Which exchanges become sample records.

The random part hashes the request id with a secret key (keyed blake2b, a MAC) to a number in
[0, 1) and compares it with the model's rate. Replicas that share the key (``sample_key_file``)
agree on every id; a client, which does not know the key, cannot choose ids that are (or are
not) sampled. Without a key file, one is generated on first start under ``spool_dir`` and kept.
Keep-rules add errors, ``length`` cut-offs and slow requests that the random draw missed, but
only within a token-bucket budget per minute, so an incident cannot flood the bucket.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sidecar.config import ConfigError, Settings
from sidecar.sampling.exchange import Exchange

KeepReason = Literal["error", "length", "slow"]

GENERATED_KEY_NAME = "sample-key"
"""The key file written under ``spool_dir`` when ``sample_key_file`` is not set."""
MIN_KEY_CHARS = 16


def request_fraction(request_id: str, key: bytes) -> float:
    """Map a request id to a uniform number in [0, 1); the same wherever ``key`` is the same."""
    digest = hashlib.blake2b(
        request_id.encode("utf-8", "surrogatepass"), key=key, digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2**64


def _key_of(text: str, origin: Path) -> bytes:
    secret = text.strip()
    if len(secret) < MIN_KEY_CHARS:
        raise ConfigError(
            f"sample_key_file: {origin} must hold at least {MIN_KEY_CHARS} characters"
        )
    return hashlib.sha256(secret.encode()).digest()  # any length in, blake2b's 32-byte key out


def load_sample_key(key_file: Path | None, spool_dir: Path) -> bytes:
    """The sampling key: from ``key_file``, else from (or newly generated into) the spool dir.

    A generated key is written once (mode 0600, never logged) and reused on every restart, so a
    pod keeps its decisions; replicas agree only when they are given the same ``key_file``.
    """
    if key_file is not None:
        try:
            return _key_of(key_file.read_text(encoding="utf-8"), key_file)
        except OSError as exc:
            raise ConfigError(f"sample_key_file: cannot read {key_file}: {exc.strerror}") from exc
    path = spool_dir / GENERATED_KEY_NAME
    spool_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return _key_of(path.read_text(encoding="utf-8"), path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_hex(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return _key_of(path.read_text(encoding="utf-8"), path)


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


@dataclass(kw_only=True, slots=True)
class SampleDecider:
    """Head decision (random, per model) and tail keep-rules (error, length, slow)."""

    key: bytes = field(repr=False)
    rate: float
    overrides: Mapping[str, float] = field(default_factory=dict)
    keep_errors: bool = True
    keep_length: bool = True
    keep_slow_seconds: float | None = None
    keep_budget_per_minute: int = 60
    clock: Callable[[], float] = time.monotonic
    _budget: TokenBucket = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._budget = TokenBucket(self.keep_budget_per_minute, self.clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> SampleDecider:
        """Build the decider from the sampling section of the settings."""
        return cls(
            key=load_sample_key(settings.sample_key_file, settings.spool_dir),
            rate=settings.sample_rate,
            overrides=settings.sample_rate_overrides,
            keep_errors=settings.sample_keep_errors,
            keep_length=settings.sample_keep_length,
            keep_slow_seconds=settings.sample_keep_slow_seconds,
            keep_budget_per_minute=settings.sample_keep_budget_per_minute,
        )

    def rate_for(self, model: str | None) -> float:
        """The random sample rate for ``model`` (its override, else the default)."""
        if model is not None and model in self.overrides:
            return self.overrides[model]
        return self.rate

    def head(self, request_id: str, model: str | None) -> bool:
        """Whether ``request_id`` falls in the random sample for ``model``."""
        return request_fraction(request_id, self.key) < self.rate_for(model)

    def keep_rule(self, exchange: Exchange) -> KeepReason | None:
        """The first keep-rule an un-sampled exchange matches (budget not consulted)."""
        if self.keep_errors and (exchange.status >= 400 or exchange.error is not None):
            return "error"
        if self.keep_length and exchange.finish_reason == "length":
            return "length"
        if self.keep_slow_seconds is not None and exchange.e2e_seconds > self.keep_slow_seconds:
            return "slow"
        return None

    def take_budget(self) -> bool:
        """Spend one keep-rule token; False once this minute's budget is gone."""
        return self._budget.take()
