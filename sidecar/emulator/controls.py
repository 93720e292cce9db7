"""Run-time switches: injected faults and the behaviour of the generated text.

Both start from :class:`~sidecar.emulator.options.EmulatorOptions` and change while the emulator
runs (``POST /_emulator/faults``, ``POST /_emulator/behaviour`` or ``emu.controls`` in-process), so
a fire drill can push the KV cache up or make the model start refusing without a restart.
Updates are validated as a whole: a bad field rejects the update and changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from sidecar.emulator.options import EmulatorOptions, OutageMode


class ControlError(ValueError):
    """An update to faults or behaviour that names the bad field."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Injected faults. Every field is independent; all zero/false = a healthy server."""

    latency_ms: float = 0.0
    """Added before the engine sees a request: shows in TTFT and e2e, not in queue time."""
    token_latency_ms: float = 0.0
    """Added to every engine step: shows in inter-token latency for every running request."""
    error_rate: float = 0.0
    """Share of requests that fail inside the engine (``finished_reason="error"``): HTTP 500
    when not streaming, an in-band error event when streaming."""
    stall: bool = False
    """The engine stops stepping (a hung GPU): streams freeze, the queue grows, /health is 200."""
    stall_share: float = 0.0
    """Share of new requests whose stream freezes after the first token, holding its KV blocks
    until the client gives up."""
    outage: OutageMode = "none"
    """``unhealthy``: /health and the API answer 503 (metrics still served). ``refuse``: the
    listening sockets close, so connections are refused, for ``outage_seconds``."""
    outage_seconds: float | None = None
    """How long an outage lasts before the emulator heals itself; required for ``refuse``."""
    kv_pressure: float = 0.0
    """Fraction of the KV pool held by a phantom tenant: usage rises, real requests queue and get
    preempted."""
    defer: bool = False
    """Waiting requests are deferred (a LoRA budget or KV transfer holds them): none is admitted,
    and ``num_requests_waiting_by_reason`` counts them as ``deferred`` instead of ``capacity``."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the deterministic model answers (see ``sidecar.emulator.text``)."""

    output_tokens_mean: float = 256.0
    output_tokens_sigma: float = 0.6
    length_cutoff_share: float = 0.0
    refusal_share: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SHARES = frozenset({"error_rate", "stall_share", "length_cutoff_share", "refusal_share"})


def _check_field(name: str, value: Any, annotation: str) -> Any:
    """Validate one JSON value against a field's annotation; return it normalised."""
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ControlError(f"{name}: expected true or false, got {value!r}")
        return value
    if annotation == "OutageMode":
        if value not in get_args(OutageMode):
            raise ControlError(f"{name}: expected one of {get_args(OutageMode)}, got {value!r}")
        return value
    optional = annotation.endswith("| None")
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ControlError(f"{name}: expected a finite number, got {value!r}")
    number = float(value)
    if number < 0:
        raise ControlError(f"{name}: must be >= 0, got {number}")
    if name in _SHARES and number > 1:
        raise ControlError(f"{name}: must be between 0 and 1, got {number}")
    if name == "kv_pressure" and number >= 1:
        raise ControlError(f"{name}: must be below 1, got {number}")
    if name == "output_tokens_mean" and number < 1:
        raise ControlError(f"{name}: must be >= 1, got {number}")
    return number


def _apply(current: Any, changes: Mapping[str, Any]) -> Any:
    if not isinstance(changes, Mapping):
        raise ControlError("expected a JSON object of field names to values")
    fields = {item.name: str(item.type) for item in dataclasses.fields(current)}
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ControlError(f"unknown field(s) {unknown}; known: {sorted(fields)}")
    checked = {name: _check_field(name, value, fields[name]) for name, value in changes.items()}
    return dataclasses.replace(current, **checked)


class Controls:
    """The live faults and behaviour, plus the seeded dice that decide per-request faults."""

    def __init__(self, options: EmulatorOptions) -> None:
        self._initial_faults = Faults(
            latency_ms=options.latency_ms,
            token_latency_ms=options.token_latency_ms,
            error_rate=options.error_rate,
            stall=options.stall,
            stall_share=options.stall_share,
            outage=options.outage,
            kv_pressure=options.kv_pressure,
        )
        self.faults = self._initial_faults
        self.behaviour = Behaviour(
            output_tokens_mean=options.output_tokens_mean,
            output_tokens_sigma=options.output_tokens_sigma,
            length_cutoff_share=options.length_cutoff_share,
            refusal_share=options.refusal_share,
        )
        self.dice = random.Random(f"faults:{options.seed}")  # noqa: S311 - simulation dice
        self._listeners: list[Callable[[Faults], None]] = []

    def on_faults_changed(self, listener: Callable[[Faults], None]) -> None:
        """Call ``listener(new_faults)`` after every accepted change."""
        self._listeners.append(listener)

    def set_faults(self, **changes: Any) -> Faults:
        """Change some faults (validated as one update); returns the new faults."""
        updated: Faults = _apply(self.faults, changes)
        if updated.outage == "refuse" and not updated.outage_seconds:
            raise ControlError("outage 'refuse' needs outage_seconds > 0 (or nobody can undo it)")
        self.faults = updated
        for listener in self._listeners:
            listener(updated)
        return updated

    def reset_faults(self) -> Faults:
        """Back to no faults at all (not to the start-up flags)."""
        return self.set_faults(**Faults().to_json())

    def set_behaviour(self, **changes: Any) -> Behaviour:
        """Change how the model answers; applies to requests that arrive afterwards."""
        updated: Behaviour = _apply(self.behaviour, changes)
        self.behaviour = updated
        return updated
