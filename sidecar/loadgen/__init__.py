"""An OpenAI-API load generator with steady, ramp and burst profiles.

``await run_load(LoadOptions(target=url, profile="ramp", concurrency=64, duration=60))`` returns a
:class:`LoadReport` (counts, errors by kind, TTFT / e2e / ITL percentiles); ``vllm-sidecar
loadgen`` is the same with a live progress line and a summary table.
"""

from sidecar.loadgen.profiles import LoadProfile, ProfileName
from sidecar.loadgen.report import LoadReport, Progress, progress_line
from sidecar.loadgen.runner import LoadError, LoadOptions, run_load

__all__ = [
    "LoadError",
    "LoadOptions",
    "LoadProfile",
    "LoadReport",
    "ProfileName",
    "Progress",
    "progress_line",
    "run_load",
]
