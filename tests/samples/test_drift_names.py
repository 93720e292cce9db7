"""The numpy-free lists of signal names match the signals drift and compare evaluate."""

from __future__ import annotations

from sidecar.samples.compare.names import PAIRED_SIGNAL_NAMES
from sidecar.samples.compare.signals import PAIRED_SIGNALS, SEMANTIC
from sidecar.samples.drift.names import SIGNAL_NAMES
from sidecar.samples.drift.signals import SIGNALS


def test_names_match_the_declared_signals() -> None:
    """``--disable-signal`` choices come from the light list; it must match the real one."""
    assert tuple(spec.name for spec, _ in SIGNALS) == SIGNAL_NAMES


def test_paired_names_match_the_declared_paired_signals() -> None:
    """``compare --disable-signal`` choices come from the light list; it must match the real one."""
    assert (*(spec.name for spec, _ in PAIRED_SIGNALS), SEMANTIC.name) == PAIRED_SIGNAL_NAMES
