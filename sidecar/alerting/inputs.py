"""What one evaluation of the in-process engine reads.

Engine-level alerts read :class:`~sidecar.signals.derive.Signals` (the same numbers the admin
API shows) and the newest :class:`~sidecar.snapshot.Snapshot` (SLO bucket counts). Everything
about the sidecar itself (scrape health, spool, uploads, proxy) is read from the sidecar's own
Prometheus registry, i.e. from exactly the ``vllm_sidecar_*`` series the Prometheus rules query,
so the two paths cannot disagree about what a name means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from sidecar.signals.derive import Signals, TargetSignals
from sidecar.snapshot import Snapshot

if TYPE_CHECKING:
    from sidecar.alerting.history import CounterHistory
    from sidecar.alerting.spec import RuleConfig

LabelSet = tuple[tuple[str, str], ...]
"""Sorted ``(name, value)`` pairs of one sample."""

READ_FAMILIES: frozenset[str] = frozenset(
    {
        "vllm_sidecar_upstream_up",
        "vllm_sidecar_vllm_metrics_missing",
        "vllm_sidecar_samples_dropped",
        "vllm_sidecar_spool_bytes",
        "vllm_sidecar_spool_capacity_bytes",
        "vllm_sidecar_spool_oldest_record_age_seconds",
        "vllm_sidecar_proxy_requests",
        "vllm_sidecar_proxy_overhead_seconds",
    }
)
"""The registry families in-process rules read (prometheus_client names counters without
``_total`` at the family level)."""


@dataclass(frozen=True, slots=True)
class Readings:
    """Samples of the sidecar's own metrics, by sample name (``..._total``, ``..._bucket``)."""

    samples: Mapping[str, tuple[tuple[LabelSet, float], ...]] = field(default_factory=dict)

    def series(self, name: str) -> tuple[tuple[LabelSet, float], ...]:
        """Every ``(labels, value)`` of one sample name (empty when absent)."""
        return self.samples.get(name, ())

    def value(self, name: str) -> float | None:
        """The value of an unlabelled sample, None when absent."""
        for labels, value in self.series(name):
            if not labels:
                return value
        return None


def read_registry(
    registry: CollectorRegistry, families: frozenset[str] = READ_FAMILIES
) -> Readings:
    """Collect the named families from ``registry`` (cheap: a few dozen samples)."""
    samples: dict[str, list[tuple[LabelSet, float]]] = {}
    for family in registry.collect():
        if family.name not in families:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, []).append((labels, float(sample.value)))
    return Readings({name: tuple(values) for name, values in samples.items()})


@dataclass(frozen=True, slots=True)
class EngineInputs:
    """One evaluation's view of the world; every field may be empty early in the sidecar's life.

    ``signals`` is :func:`sidecar.signals.derive.derive` over the scrape history, ``snapshot``
    the newest good scrape (None before the first), ``readings`` the sidecar's own metrics
    (:func:`read_registry`). ``scrape_finished`` is False until the first scrape of vLLM has
    finished, well or badly: before it nothing is known (``vllm_sidecar_upstream_up`` reads 0
    without meaning "down"), so the engine raises nothing, not even a pending alert.
    """

    signals: Signals | None = None
    snapshot: Snapshot | None = None
    readings: Readings = field(default_factory=Readings)
    scrape_finished: bool = False


@dataclass(frozen=True, slots=True)
class EvalContext:
    """What an in-process rule evaluation may look at."""

    inputs: EngineInputs
    config: RuleConfig
    history: CounterHistory
    now: float
    """Monotonic seconds, the clock ``history`` and snapshots were taken on."""
    fresh: bool = True
    """False when the newest scrape is too old: vLLM's series count as gone (as in Prometheus,
    where a failed scrape marks them stale) and only ``VLLMDown`` speaks for vLLM."""

    def models(self) -> Iterable[TargetSignals]:
        """Per-model signals (all engines together), the level every engine alert works at."""
        if self.inputs.signals is None or not self.fresh:
            return ()
        return (target for target in self.inputs.signals.targets if target.engine is None)

    def increase_by(
        self,
        name: str,
        window: float,
        group: Callable[[Mapping[str, str]], str | None],
    ) -> dict[str, float]:
        """Sum of increases over ``window`` of every series of ``name``, grouped by ``group``.

        ``group`` maps a series' labels to its group, or None to leave the series out (a
        ``sum by (...) (increase(...))`` with a filter).
        """
        totals: dict[str, float] = {}
        for labels, _ in self.inputs.readings.series(name):
            key = group(dict(labels))
            if key is None:
                continue
            increase = self.history.increase((name, labels), window, self.now)
            if increase is not None:
                totals[key] = totals.get(key, 0.0) + increase
        return totals
