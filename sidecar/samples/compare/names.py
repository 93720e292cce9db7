"""The names of the paired signals, importable without numpy (for ``--disable-signal`` choices).

:mod:`sidecar.samples.compare.signals` declares each signal with its test; a test checks that the
two lists agree.
"""

from __future__ import annotations

PAIRED_SIGNAL_NAMES: tuple[str, ...] = (
    "output_chars",
    "completion_tokens",
    "finish_reasons",
    "length_cutoff",
    "empty_output",
    "refusals",
    "json_invalid",
    "ttft",
    "e2e_latency",
    "errors",
    "semantic_similarity",
)
