"""How many requests should be in flight at a given moment of a load run.

The generator is closed-loop: it keeps ``target(elapsed)`` requests in flight and starts a new one
as soon as one finishes. *steady* holds the concurrency from the start; *ramp* climbs linearly from
1 to the concurrency over ``ramp_seconds`` and then holds it (drive a server into saturation and
watch where it bends); *burst* alternates ``burst_seconds`` at full concurrency with
``idle_seconds`` of silence (queues must drain between bursts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["steady", "ramp", "burst"]
PROFILE_NAMES: tuple[ProfileName, ...] = ("steady", "ramp", "burst")


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """A concurrency schedule."""

    name: ProfileName = "steady"
    concurrency: int = 8
    ramp_seconds: float = 30.0
    burst_seconds: float = 5.0
    idle_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.name not in PROFILE_NAMES:
            raise ValueError(f"profile must be one of {PROFILE_NAMES}, got {self.name!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        for field in ("ramp_seconds", "burst_seconds", "idle_seconds"):
            value = getattr(self, field)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field} must be a finite number >= 0, got {value}")
        if self.name == "burst" and self.burst_seconds <= 0:
            raise ValueError("burst_seconds must be > 0 for the burst profile")

    def target(self, elapsed: float) -> int:
        """Requests that should be in flight ``elapsed`` seconds into the run."""
        if self.name == "steady":
            return self.concurrency
        if self.name == "ramp":
            if self.ramp_seconds <= 0 or elapsed >= self.ramp_seconds:
                return self.concurrency
            return max(1, math.ceil(self.concurrency * elapsed / self.ramp_seconds))
        period = self.burst_seconds + self.idle_seconds
        return self.concurrency if elapsed % period < self.burst_seconds else 0
