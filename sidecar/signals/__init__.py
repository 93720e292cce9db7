"""Pure functions from a history of snapshots to the numbers people act on.

``History`` holds the snapshots; ``derive`` turns them into ``Signals`` (latency quantiles, rates,
ratios and trends per model and engine); ``quantile`` holds the Prometheus-exact building blocks.
Nothing here does I/O or reads a clock: time comes from the snapshots or a ``now`` argument.
"""

from sidecar.signals.derive import (
    LATENCY_SIGNALS,
    QUANTILES,
    WINDOWS,
    Signals,
    TargetSignals,
    derive,
)
from sidecar.signals.history import History
from sidecar.signals.quantile import counter_increase, histogram_increase, histogram_quantile

__all__ = [
    "LATENCY_SIGNALS",
    "QUANTILES",
    "WINDOWS",
    "History",
    "Signals",
    "TargetSignals",
    "counter_increase",
    "derive",
    "histogram_increase",
    "histogram_quantile",
]
