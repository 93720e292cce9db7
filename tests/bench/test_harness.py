"""The benchmark harness in a tiny configuration: it runs end to end and prints every row.

Timings are not asserted (they belong to the full run on a quiet machine); the shape of the
output and the evidence that each sidecar feature ran are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("direct", "nginx", "sidecar", "sidecar-sample-all", "sidecar-s3-outage")


@pytest.mark.slow
def test_tiny_run_prints_every_target_and_goal(tmp_path: Path) -> None:
    """One short round against all five targets: a table row each, no errors, features on."""
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "bench.run",
            "--rounds", "1", "--idle-requests", "4", "--tokens", "16",
            "--concurrency", "4", "--saturation-streams", "8",
            "--window", "0.5", "--warmup", "0.3", "--scrape-interval", "1",
            "--no-scrape-cost", "--json", str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    table = run.stdout.split("## Relay cost", 1)[1].split("## Ratios", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert rows == ["target", *TARGETS]
    assert "## Goals (issue 9)" in run.stdout
    assert "added TTFT p50 idle <= 1.0 ms" in run.stdout

    report = json.loads(out.read_text())
    by_target = {row["target"]: row for row in report["rows"]}
    assert set(by_target) == set(TARGETS)
    assert all(row["errors"] == 0 for row in by_target.values()), report["rows"]
    assert by_target["direct"]["saturation_events_per_s"] > 0
    assert by_target["nginx"]["cpu_per_m_saturation"] > 0
    features = report["features"]
    assert set(features) == {"sidecar", "sidecar-sample-all", "sidecar-s3-outage"}
    for counters in features.values():
        assert counters["requests relayed"] > 0
        assert counters["scrapes"] >= 1
        # A scrape may time out while the box is saturated on purpose; most must succeed.
        assert counters["scrape errors"] < counters["scrapes"]
        assert counters["alert evaluations"] >= 1
    every = features["sidecar-sample-all"]
    assert every["samples taken"] == every["requests relayed"]
