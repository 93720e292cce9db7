"""``samples drift``: did the output change between two windows, and how much?

``compare(root, baseline, current, config)`` loads both windows from the local sample directory,
``evaluate_signals`` runs the tests, ``write_report`` renders the HTML, ``print_result`` the table.
"""

from sidecar.samples.drift.analyse import DriftResult, analyse, evaluate_signals
from sidecar.samples.drift.config import DriftConfig, DriftConfigError, load_config_file
from sidecar.samples.drift.observe import Observations, WindowSummary, observations
from sidecar.samples.drift.report import render_html, write_report
from sidecar.samples.drift.run import EXIT_DRIFT, EXIT_NOT_ENOUGH_DATA, compare, exit_code
from sidecar.samples.drift.signals import SIGNAL_NAMES, SignalResult
from sidecar.samples.drift.table import print_result

__all__ = [
    "EXIT_DRIFT",
    "EXIT_NOT_ENOUGH_DATA",
    "SIGNAL_NAMES",
    "DriftConfig",
    "DriftConfigError",
    "DriftResult",
    "Observations",
    "SignalResult",
    "WindowSummary",
    "analyse",
    "compare",
    "evaluate_signals",
    "exit_code",
    "load_config_file",
    "observations",
    "print_result",
    "render_html",
    "write_report",
]
