"""A faithful vLLM stand-in for demos, tests and alert fire drills.

``run_emulator`` serves vLLM's OpenAI-compatible API and ``/metrics`` (0.33.0, 0.9.2 or 0.6.3
flavour) from an engine model with continuous batching, a KV block pool, preemption and aborts;
``EmulatorOptions`` holds every knob. ``vllm-sidecar emulate`` runs the same thing standalone.
"""

from sidecar.emulator.controls import Behaviour, ControlError, Faults
from sidecar.emulator.options import EmulatorOptions, MetricsProfile
from sidecar.emulator.runner import Emulator, run_emulator

__all__ = [
    "Behaviour",
    "ControlError",
    "Emulator",
    "EmulatorOptions",
    "Faults",
    "MetricsProfile",
    "run_emulator",
]
