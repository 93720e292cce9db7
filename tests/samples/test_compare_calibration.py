"""``compare``'s paired tests on synthetic pairs: quiet on no change, loud on a planted one.

A pair is one prompt answered twice; with no change both answers are independent draws from the
same behaviour (a model sampled at temperature > 0), which is the hardest no-change case for a
paired test (at temperature 0 on the same model every difference is exactly zero).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from sidecar.samples.compare.analyse import evaluate_pairs
from sidecar.samples.compare.pairs import Pairs, pair_rows
from sidecar.samples.drift.config import DriftConfig
from sidecar.samples.prompts import DEFAULT_REFUSAL_OPENINGS
from tests.samples.synthetic import Traffic, make_record, row_of

SEEDS = 200
PAIRS = 300


def synthetic_pairs(seed: int, baseline: Traffic, candidate: Traffic, n: int = PAIRS) -> Pairs:
    """``n`` prompts, each answered once by ``baseline`` and once by ``candidate``."""
    rng_b, rng_c = random.Random(f"{seed}:b"), random.Random(f"{seed}:c")
    asks_json = random.Random(f"{seed}:json")
    base: dict[str, Any] = {}
    cand: dict[str, Any] = {}
    for index in range(n):
        json_prompt = asks_json.random() < baseline.json_share
        b = make_record(rng_b, baseline, index, 0.0, tag="p", json_prompt=json_prompt)
        c = make_record(rng_c, candidate, index, 0.0, tag="p", json_prompt=json_prompt)
        c["request"] = b["request"]
        base[b["request_id"]] = row_of(b)
        cand[c["request_id"]] = row_of(c)
    return pair_rows(base, cand, DEFAULT_REFUSAL_OPENINGS)


def _flags(seed: int, baseline: Traffic, candidate: Traffic, n: int = PAIRS) -> set[str]:
    results = evaluate_pairs(synthetic_pairs(seed, baseline, candidate, n), DriftConfig())
    return {result.spec.name for result in results if result.status == "regression"}


def test_no_change_flags_a_regression_in_at_most_5_percent_of_seeds() -> None:
    """200 seeds of unchanged behaviour: the gate stays open in >= 95% of runs."""
    noisy: Counter[str] = Counter()
    runs_with_flags = 0
    for seed in range(SEEDS):
        flagged = _flags(seed, Traffic(), Traffic())
        noisy.update(flagged)
        runs_with_flags += bool(flagged)
    print(f"false-positive rate {runs_with_flags / SEEDS:.3f}; by signal {dict(noisy)}")
    assert runs_with_flags <= SEEDS * 0.05, f"false alarms by signal: {dict(noisy)}"


def test_identical_answers_flag_nothing() -> None:
    """The same answers (temperature 0, same model): every difference is zero, nothing flags."""
    pairs = synthetic_pairs(1, Traffic(), Traffic())
    rows = {
        identifier: {
            "output_chars": chars,
            "completion_tokens": 10,
            "status": 200,
            "finish_reason": "stop",
            "response_text": "x" * int(chars),
            "ttft_seconds": 0.1,
            "e2e_seconds": 0.5,
            "sample_rate": 1.0,
        }
        for identifier, chars in zip(pairs.ids, pairs.baseline.output_chars, strict=True)
    }
    results = evaluate_pairs(pair_rows(rows, rows, DEFAULT_REFUSAL_OPENINGS), DriftConfig())
    statuses = {result.spec.name: result.status for result in results}
    assert statuses.pop("json_invalid") == "insufficient"  # no prompt asked for JSON
    assert set(statuses.values()) == {"ok"}, statuses


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tokens_mean": 35.0}, {"output_chars", "completion_tokens"}),
        ({"tokens_mean": 100.0}, {"output_chars", "completion_tokens", "e2e_latency"}),
        ({"length_share": 0.15}, {"length_cutoff", "finish_reasons"}),
        ({"refusal_share": 0.08}, {"refusals"}),
        ({"empty_share": 0.08}, {"empty_output"}),
        ({"json_valid_share": 0.55}, {"json_invalid"}),
        ({"error_share": 0.08}, {"errors"}),
        ({"ttft_median": 0.2}, {"ttft"}),
    ],
)
def test_each_planted_change_is_flagged(change: dict[str, float], expected: set[str]) -> None:
    """A change in one behaviour flags the paired signals that measure it."""
    for seed in range(3):
        flagged = _flags(seed, Traffic(), Traffic().but(**change), n=500)
        assert expected <= flagged, f"seed {seed}: {flagged}"


def test_an_improvement_is_not_a_regression() -> None:
    """Fewer refusals and fewer errors are reported as improved and do not fail the gate."""
    results = evaluate_pairs(
        synthetic_pairs(4, Traffic(refusal_share=0.1, error_share=0.1), Traffic()), DriftConfig()
    )
    statuses = {result.spec.name: result.status for result in results}
    assert statuses["refusals"] == "improved"
    assert statuses["errors"] == "improved"
    assert "regression" not in statuses.values()
