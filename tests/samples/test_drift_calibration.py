"""``drift`` on synthetic windows: quiet when nothing changed, loud when something did.

Records are generated directly (no servers) with the same shape the sidecar writes, and go
through the same row -> observation path as records read from DuckDB.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import main
from sidecar.samples.drift.analyse import evaluate_signals
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.drift.observe import Observations, observations
from sidecar.samples.prompts import DEFAULT_REFUSAL_OPENINGS
from tests.samples.synthetic import Traffic, make_records, row_of, write_objects

SEEDS = 200
PER_WINDOW = 400


def _observe(records: list[dict[str, Any]]) -> Observations:
    return observations([row_of(record) for record in records], DEFAULT_REFUSAL_OPENINGS)


def _flags(seed: int, baseline: Traffic, current: Traffic, n: int = PER_WINDOW) -> set[str]:
    base = _observe(make_records(seed, baseline, n, 0.0, tag="b"))
    cur = _observe(make_records(seed, current, n, 0.0, tag="c"))
    return {r.spec.name for r in evaluate_signals(base, cur, DriftConfig()) if r.status == "drift"}


def test_no_change_flags_nothing_in_at_least_95_percent_of_seeds() -> None:
    """200 seeds of unchanged traffic: drift stays quiet in >= 95% of runs (Holm at 5%)."""
    noisy: Counter[str] = Counter()
    runs_with_flags = 0
    for seed in range(SEEDS):
        flagged = _flags(seed, Traffic(), Traffic())
        noisy.update(flagged)
        runs_with_flags += bool(flagged)
    assert runs_with_flags <= SEEDS * 0.05, f"false alarms by signal: {dict(noisy)}"


def test_no_change_with_mixed_sample_rates_stays_quiet() -> None:
    """Unchanged traffic sampled at 1% in one window and 5% in the other: still quiet."""
    runs_with_flags = 0
    for seed in range(60):
        base = make_records(seed, Traffic(sample_rate=0.01), PER_WINDOW, 0.0, tag="b")
        cur = make_records(seed, Traffic(sample_rate=0.05), PER_WINDOW, 0.0, tag="c")
        results = evaluate_signals(_observe(base), _observe(cur), DriftConfig())
        runs_with_flags += any(result.status == "drift" for result in results)
    assert runs_with_flags <= 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tokens_mean": 100.0}, {"output_chars", "completion_tokens", "e2e_latency"}),
        ({"length_share": 0.15}, {"length_cutoff", "finish_reasons"}),
        ({"refusal_share": 0.08}, {"refusals"}),
        ({"empty_share": 0.07}, {"empty_output"}),
        ({"json_valid_share": 0.55}, {"json_invalid"}),
        ({"error_share": 0.08}, {"errors"}),
        ({"ttft_median": 0.2}, {"ttft"}),
    ],
)
def test_each_planted_change_is_flagged(change: dict[str, float], expected: set[str]) -> None:
    """A change in one behaviour flags the signals that measure it."""
    for seed in range(3):
        flagged = _flags(seed, Traffic(), Traffic().but(**change))
        assert expected <= flagged, f"seed {seed}: {flagged}"


def test_weighting_by_sample_rate_removes_a_sampler_artefact() -> None:
    """Same traffic, but the long-answer model sampled 4x more often: weighted = no drift."""
    short, long = Traffic(model="short", tokens_mean=30.0), Traffic(model="long", tokens_mean=150)
    base = make_records(1, short.but(sample_rate=0.1), 300, 0.0, tag="bs")
    base += make_records(1, long.but(sample_rate=0.1), 300, 0.0, tag="bl")
    cur = make_records(2, short.but(sample_rate=0.1), 300, 0.0, tag="cs")
    cur += make_records(2, long.but(sample_rate=0.4), 1200, 0.0, tag="cl")
    weighted = evaluate_signals(_observe(base), _observe(cur), DriftConfig())
    assert not [r.spec.name for r in weighted if r.status == "drift"]

    unweighted = [{**record, "sample_rate": 1.0} for record in base + cur]
    naive = evaluate_signals(
        _observe(unweighted[: len(base)]), _observe(unweighted[len(base) :]), DriftConfig()
    )
    assert "output_chars" in {r.spec.name for r in naive if r.status == "drift"}


def test_small_windows_say_not_enough_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """30 records a window: every signal says so; exit 0, or 4 with --fail-on-insufficient."""
    start = time.time() - 7200
    records = make_records(1, Traffic(), 30, start, 600, tag="b")
    records += make_records(1, Traffic(deployment="green", refusal_share=0.5), 30, start, 600)
    write_objects(tmp_path, records)
    argv = ["samples", "drift", "--source", str(tmp_path), "--report", "none"]
    argv += ["--baseline", "all@deployment=blue", "--current", "all@deployment=green"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NOT ENOUGH DATA" in out
    assert out.count("not enough data") >= 10
    assert main([*argv, "--fail-on-insufficient"]) == 4
