"""A comparison window: a time range plus optional pins on model and deployment version.

Syntax: ``<range>[@pin=value[,pin=value]...]``, where ``<range>`` is anything
:func:`~sidecar.samples.timespec.parse_range` accepts and the pins are

- ``deployment=green``: the sidecar's configured ``deployment`` label,
- ``vllm=0.33.0``: vLLM's version as the sidecar saw it,
- ``sidecar=0.1.0``: the sidecar's own version,
- ``model=meta-llama/Llama-3.1-8B-Instruct``: the model name (or its partition slug),
- ``pod=vllm-0``: one replica.

So ``last:7d@deployment=blue`` and ``last:7d@deployment=green`` compare the blue and the green
deployment of a model update over the same week, and ``-14d..-7d`` against ``-7d..now`` compares
two consecutive weeks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidecar.samples.timespec import TimeRange, TimeSpecError, parse_range
from sidecar.sampling.layout import slug

PIN_COLUMNS = {
    "deployment": "deployment",
    "vllm": "vllm_version",
    "sidecar": "sidecar_version",
    "pod": "pod",
}
"""Pin name -> record column (``model`` is special: it matches the name or the slug)."""
PIN_NAMES = (*PIN_COLUMNS, "model")


@dataclass(frozen=True, slots=True)
class Window:
    """What one side of a comparison selects."""

    text: str
    time: TimeRange
    pins: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The time range and the pins, for tables and the report."""
        pins = ", ".join(f"{name}={value}" for name, value in sorted(self.pins.items()))
        return self.time.describe() + (f" [{pins}]" if pins else "")

    def with_model(self, model: str | None) -> Window:
        """This window pinned to ``model`` too (a pin already in the window wins)."""
        if not model or "model" in self.pins:
            return self
        return Window(self.text, self.time, {**self.pins, "model": model})

    def sql_filter(self) -> tuple[str, list[Any]]:
        """A WHERE fragment over the ``samples`` view and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.time.start is not None:
            clauses.append("started_at_unix >= ?")
            params.append(self.time.start)
        if self.time.end is not None:
            clauses.append("started_at_unix < ?")
            params.append(self.time.end)
        for name, value in sorted(self.pins.items()):
            if name == "model":
                clauses.append("(model_name = ? OR model = ?)")
                params.extend([value, slug(value)])
            else:
                clauses.append(f"{PIN_COLUMNS[name]} = ?")
                params.append(value)
        return (" AND ".join(clauses) or "TRUE"), params


def parse_window(text: str, now: float) -> Window:
    """Parse ``<range>[@pin=value,...]``; raises :class:`TimeSpecError` naming the problem."""
    range_text, *pin_groups = text.split("@")
    pins: dict[str, str] = {}
    for group in pin_groups:
        for item in group.split(","):
            name, sep, value = item.partition("=")
            name, value = name.strip().lower(), value.strip()
            if not sep or not value:
                raise TimeSpecError(f"expected @name=value after the range, got {item!r}")
            if name not in PIN_NAMES:
                raise TimeSpecError(f"unknown pin {name!r}; known: {', '.join(PIN_NAMES)}")
            if name in pins and pins[name] != value:
                raise TimeSpecError(f"pin {name!r} given twice")
            pins[name] = value
    return Window(text, parse_range(range_text, now), pins)
