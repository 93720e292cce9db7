"""Aggregates of a load run: the live progress line and the final summary table."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.loadgen.client import RequestResult

QUANTILES = (0.5, 0.9, 0.99)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(slots=True)
class Tally:
    """Running totals, cheap to update per request (feeds the progress line and the report)."""

    sent: int = 0
    ok: int = 0
    cancelled: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    output_tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)

    def add(self, result: RequestResult) -> None:
        if result.cancelled:
            self.cancelled += 1
            return
        if result.error is not None:
            self.errors[result.error] += 1
            return
        self.ok += 1
        self.output_tokens += result.output_tokens
        self.e2e.append(result.e2e)
        if result.ttft is not None:
            self.ttft.append(result.ttft)
        self.gaps.extend(result.gaps)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True)
class Progress:
    """A moment of a running load test, for the live line."""

    elapsed: float
    profile: str
    target: int
    in_flight: int
    tally: Tally


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}ms"


def progress_line(progress: Progress) -> str:
    """One line, fit for ``\\r`` redrawing on a terminal."""
    tally = progress.tally
    elapsed = max(progress.elapsed, 1e-9)
    recent = tally.ttft[-500:]
    return (
        f"[{progress.elapsed:6.1f}s] {progress.profile} in-flight {progress.in_flight}/"
        f"{progress.target}  sent {tally.sent}  ok {tally.ok}  err {tally.error_count}  "
        f"rps {tally.ok / elapsed:.1f}  tok/s {tally.output_tokens / elapsed:.0f}  "
        f"ttft p50 {_ms(percentile(recent, 0.5))} p99 {_ms(percentile(recent, 0.99))}"
    )


@dataclass(frozen=True, slots=True)
class LoadReport:
    """The outcome of a run."""

    profile: str
    concurrency: int
    elapsed: float
    tally: Tally

    @property
    def requests(self) -> int:
        return self.tally.ok + self.tally.error_count

    def quantiles(self, values: Sequence[float]) -> dict[str, float | None]:
        return {f"p{round(q * 100)}": percentile(values, q) for q in QUANTILES}

    def to_json(self) -> dict[str, Any]:
        tally = self.tally
        elapsed = max(self.elapsed, 1e-9)
        return {
            "profile": self.profile,
            "concurrency": self.concurrency,
            "elapsed_seconds": self.elapsed,
            "requests": self.requests,
            "ok": tally.ok,
            "errors": dict(tally.errors),
            "cancelled": tally.cancelled,
            "requests_per_second": tally.ok / elapsed,
            "output_tokens": tally.output_tokens,
            "output_tokens_per_second": tally.output_tokens / elapsed,
            "ttft_seconds": self.quantiles(tally.ttft),
            "e2e_seconds": self.quantiles(tally.e2e),
            "itl_seconds": self.quantiles(tally.gaps),
        }

    def table(self) -> Any:
        """A rich Table of the summary."""
        from rich.table import Table

        data = self.to_json()
        table = Table(title=f"load: {self.profile}, concurrency {self.concurrency}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("duration", f"{self.elapsed:.1f}s")
        table.add_row("requests", str(data["requests"]))
        table.add_row("ok", str(data["ok"]))
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(data["errors"].items()))
        table.add_row("errors", f"{self.tally.error_count}" + (f" ({errors})" if errors else ""))
        table.add_row("cancelled at the end", str(data["cancelled"]))
        table.add_row("requests/s", f"{data['requests_per_second']:.2f}")
        table.add_row("output tokens/s", f"{data['output_tokens_per_second']:.0f}")
        for label, key in (
            ("TTFT", "ttft_seconds"),
            ("e2e", "e2e_seconds"),
            ("ITL", "itl_seconds"),
        ):
            for name, value in data[key].items():
                table.add_row(f"{label} {name}", _ms(value))
        return table
