"""Concurrency schedules, percentiles and the summary, without any server."""

from __future__ import annotations

import pytest

from sidecar.loadgen import LoadOptions, LoadProfile, LoadReport, Progress, progress_line
from sidecar.loadgen.client import RequestResult
from sidecar.loadgen.report import Tally, percentile
from sidecar.loadgen.runner import make_prompt


def test_steady_ramp_and_burst_targets() -> None:
    """steady is flat; ramp climbs from 1 to the peak then holds; burst alternates peak and 0."""
    assert [LoadProfile("steady", 5).target(t) for t in (0, 10, 99)] == [5, 5, 5]
    ramp = LoadProfile("ramp", 10, ramp_seconds=10)
    assert [ramp.target(t) for t in (0, 1, 5, 9.9, 10, 60)] == [1, 1, 5, 10, 10, 10]
    burst = LoadProfile("burst", 4, burst_seconds=2, idle_seconds=3)
    assert [burst.target(t) for t in (0, 1.9, 2, 4.9, 5, 6.9, 7)] == [4, 4, 0, 0, 4, 4, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "spiky"}, "profile"),
        ({"concurrency": 0}, "concurrency"),
        ({"ramp_seconds": -1}, "ramp_seconds"),
        ({"name": "burst", "burst_seconds": 0}, "burst_seconds"),
    ],
)
def test_bad_profiles_are_refused(kwargs: dict[str, object], message: str) -> None:
    """Every invalid schedule raises ValueError naming the field."""
    with pytest.raises(ValueError, match=message):
        LoadProfile(**kwargs)  # type: ignore[arg-type]


def test_a_run_needs_a_bound_and_a_url() -> None:
    """No requests and no duration, or a non-HTTP target, is refused up front."""
    with pytest.raises(ValueError, match="bound"):
        LoadOptions(target="http://x")
    with pytest.raises(ValueError, match="http"):
        LoadOptions(target="x:8000", requests=1)
    assert LoadOptions(target="http://h:1/v1/", requests=1).base_url == "http://h:1"


def test_percentile_interpolates_like_numpy() -> None:
    """Linear interpolation between ranks; empty input has no percentile."""
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0], 0.99) == pytest.approx(1.99)


def test_prompts_are_deterministic_and_distinct() -> None:
    """Same seed and index give the same prompt; the index makes every prompt different."""
    assert make_prompt(1, 5, 50) == make_prompt(1, 5, 50)
    assert make_prompt(1, 5, 50) != make_prompt(1, 6, 50)
    assert len(make_prompt(1, 5, 50).split()) == 50


def test_tally_report_and_progress_line() -> None:
    """Errors and cancellations are counted apart from successes; the table and line render."""
    tally = Tally(sent=4)
    tally.add(RequestResult(started=0, e2e=1.0, ttft=0.1, output_tokens=10, gaps=[0.01, 0.03]))
    tally.add(RequestResult(started=0, e2e=2.0, ttft=0.3, output_tokens=20))
    tally.add(RequestResult(started=0, error="http_5xx"))
    tally.add(RequestResult(started=0, cancelled=True))
    report = LoadReport("steady", 2, 2.0, tally)
    data = report.to_json()
    assert (data["requests"], data["ok"], data["errors"], data["cancelled"]) == (
        3,
        2,
        {"http_5xx": 1},
        1,
    )
    assert data["ttft_seconds"]["p50"] == pytest.approx(0.2)
    assert data["output_tokens_per_second"] == 15
    assert report.table().row_count >= 10
    line = progress_line(Progress(2.0, "steady", 2, 1, tally))
    assert "ok 2" in line
    assert "err 1" in line
    assert "ttft p50 200ms" in line
