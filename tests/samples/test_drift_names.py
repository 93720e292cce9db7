"""The numpy-free list of drift signal names matches the signals drift evaluates."""

from __future__ import annotations

from sidecar.samples.drift.names import SIGNAL_NAMES
from sidecar.samples.drift.signals import SIGNALS


def test_names_match_the_declared_signals() -> None:
    """``--disable-signal`` choices come from the light list; it must match the real one."""
    assert tuple(spec.name for spec, _ in SIGNALS) == SIGNAL_NAMES
