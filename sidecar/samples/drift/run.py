"""One drift comparison from a local sample directory: load both windows, analyse, report."""

from __future__ import annotations

from pathlib import Path

from sidecar.samples.dataset import open_dataset
from sidecar.samples.drift.analyse import DriftResult, analyse
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.drift.observe import load_window
from sidecar.samples.timespec import TimeSpecError
from sidecar.samples.validate import Skipped
from sidecar.samples.windows import Window
from sidecar.sampling.layout import slug

EXIT_NO_DRIFT = 0
EXIT_DRIFT = 3
EXIT_NOT_ENOUGH_DATA = 4


def check_windows(baseline: Window, current: Window) -> None:
    """Refuse comparing a window with itself (same pins, overlapping time)."""
    same_pins = baseline.pins == current.pins
    first, second = baseline.time, current.time
    overlap = first.overlaps(
        second.start if second.start is not None else float("-inf"),
        second.end if second.end is not None else float("inf"),
    )
    if same_pins and overlap:
        raise TimeSpecError(
            "baseline and current overlap in time and pin the same things, so they share "
            "records; give them disjoint ranges or different pins (e.g. @deployment=green)"
        )


def compare(
    root: Path, baseline: Window, current: Window, config: DriftConfig
) -> tuple[DriftResult, list[Skipped]]:
    """Compare two windows of the samples under ``root``; also returns the skipped objects."""
    check_windows(baseline, current)
    models = {baseline.pins.get("model"), current.pins.get("model")}
    only_model = slug(models.pop()) if len(models) == 1 and None not in models else None
    dataset = open_dataset(root, baseline.time.union(current.time), only_model)
    try:
        base, base_summary = load_window(
            dataset.connection, baseline, "baseline", config.refusal_openings
        )
        cur, cur_summary = load_window(
            dataset.connection, current, "current", config.refusal_openings
        )
    finally:
        dataset.close()
    return analyse(base, cur, config, base_summary, cur_summary), dataset.skipped


def exit_code(result: DriftResult, *, fail_on_insufficient: bool) -> int:
    """3 when something drifted; 4 when nothing could be judged and that should fail; else 0."""
    if result.drifted:
        return EXIT_DRIFT
    if not result.judged and fail_on_insufficient:
        return EXIT_NOT_ENOUGH_DATA
    return EXIT_NO_DRIFT
