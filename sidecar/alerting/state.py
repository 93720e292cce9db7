"""Alert lifecycle with Prometheus' semantics: inactive -> pending -> firing -> resolved.

Same rules as Prometheus' alerting rule evaluation, so the two paths agree on timing:

* a condition that becomes true makes the alert *pending*; it turns *firing* at the first
  evaluation where it has been active for at least ``for`` (at once when ``for`` is 0);
* a pending alert whose condition clears is dropped silently (never notified);
* a firing alert whose condition clears is *resolved*: sent once with ``endsAt`` = now and kept
  (and re-sent) for :data:`RESOLVED_RETENTION` so a receiver that was down still learns of it;
* firing alerts are re-sent every ``resend_interval`` with ``endsAt`` a few intervals ahead, so
  Alertmanager keeps them alive only as long as the sidecar does.

Times: ``wall`` (Unix seconds) is what receivers see; ``mono`` drives ``for`` and resends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

RESOLVED_RETENTION = 15 * 60.0
"""How long resolved alerts are re-sent (Prometheus keeps them for 15 minutes too)."""
VALIDITY_INTERVALS = 4
"""A firing alert's ``endsAt`` lies this many resend/evaluation intervals ahead."""

LabelKey = tuple[tuple[str, str], ...]


class State(StrEnum):
    """Where an alert instance is in its life."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(slots=True)
class Instance:
    """One alert instance (one label set) and what the receivers have been told."""

    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    hold: float
    state: State
    active_since_mono: float
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    resolved_mono: float | None = None
    last_sent_mono: float | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One instance found true by this evaluation."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float
    hold: float


class AlertTable:
    """Every pending, firing and recently resolved instance, advanced one evaluation at a time."""

    def __init__(self) -> None:
        self._instances: dict[LabelKey, Instance] = {}

    def update(self, observed: Iterable[Observation], *, mono: float, wall: float) -> None:
        """Apply one evaluation's findings (every rule's, all at once)."""
        seen: set[LabelKey] = set()
        for obs in observed:
            key = tuple(sorted(obs.labels.items()))
            seen.add(key)
            instance = self._instances.get(key)
            if instance is None or instance.state is State.RESOLVED:
                instance = Instance(
                    labels=dict(obs.labels),
                    annotations=dict(obs.annotations),
                    value=obs.value,
                    hold=obs.hold,
                    state=State.PENDING,
                    active_since_mono=mono,
                    active_at=wall,
                )
                self._instances[key] = instance
            instance.value = obs.value
            instance.annotations = dict(obs.annotations)
            instance.hold = obs.hold
            if instance.state is State.PENDING and mono - instance.active_since_mono >= obs.hold:
                instance.state = State.FIRING
                instance.fired_at = wall
        for key, instance in list(self._instances.items()):
            if key in seen:
                continue
            if instance.state is State.PENDING:
                del self._instances[key]
            elif instance.state is State.FIRING:
                instance.state = State.RESOLVED
                instance.resolved_at = wall
                instance.resolved_mono = mono
            elif (
                instance.resolved_mono is not None
                and mono - instance.resolved_mono > RESOLVED_RETENTION
            ):
                del self._instances[key]

    def due(self, *, mono: float, resend_interval: float) -> list[Instance]:
        """Instances to notify now: new firings, new resolutions and resends that fell due."""
        out: list[Instance] = []
        for instance in self._instances.values():
            if instance.state is State.PENDING:
                continue
            last = instance.last_sent_mono
            newly_resolved = instance.resolved_mono is not None and (
                last is None or last < instance.resolved_mono
            )
            if last is None or newly_resolved or mono - last >= resend_interval:
                out.append(instance)
        return out

    def mark_sent(self, instances: Iterable[Instance], mono: float) -> None:
        """Record that ``instances`` were handed to the notifiers at ``mono``."""
        for instance in instances:
            instance.last_sent_mono = mono

    def instances(self) -> list[Instance]:
        """Pending, firing and resolved-but-retained instances, sorted by labels."""
        return [self._instances[key] for key in sorted(self._instances)]
