"""The sample decision: uniform, deterministic across instances, per-model, keep-rules in budget."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from scipy import stats

from sidecar.config import ConfigError
from sidecar.sampling.decision import (
    GENERATED_KEY_NAME,
    SampleDecider,
    TokenBucket,
    load_sample_key,
    request_fraction,
)
from tests.sampling.helpers import exchange

KEY = bytes(range(32))
"""A fixed sampling key: the decisions below are pinned to it."""


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sampled_share_lies_in_binomial_interval() -> None:
    """Over 20,000 uuid4 ids at rate 0.01 the sampled count is inside the 99.9% interval."""
    decider = SampleDecider(key=KEY, rate=0.01)
    requests = 20_000
    rng = random.Random(20_000)  # fixed seed: uuid4-like ids, but the test cannot flake
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(requests)]
    sampled = sum(decider.head(request_id, "m") for request_id in ids)
    low, high = stats.binom.interval(0.999, requests, 0.01)
    assert low <= sampled <= high, (sampled, low, high)


def test_fraction_is_uniform_over_sequential_ids() -> None:
    """Ids that differ by one character still spread uniformly (KS test, 10,000 ids)."""
    fractions = [request_fraction(f"req-{index}", KEY) for index in range(10_000)]
    assert all(0.0 <= value < 1.0 for value in fractions)
    assert stats.kstest(fractions, "uniform").pvalue > 0.001


def test_same_id_same_decision_on_two_instances() -> None:
    """Two independently built deciders with the same key agree on every id."""
    first = SampleDecider(key=KEY, rate=0.3)
    second = SampleDecider(key=KEY, rate=0.3)
    ids = [f"chatcmpl-{index:08x}" for index in range(5_000)]
    assert [first.head(i, "m") for i in ids] == [second.head(i, "m") for i in ids]
    assert 0 < sum(first.head(i, "m") for i in ids) < len(ids)


def test_fraction_is_pinned_across_releases() -> None:
    """The keyed hash is pinned: changing it would make old and new replicas disagree."""
    assert request_fraction("chatcmpl-abc", KEY) == 0.5457111777332991
    assert request_fraction("req-0", KEY) == 0.6503966602460166
    assert request_fraction("7f3a0c6e2b2d4b9e8a1c5d3e9f0a1b2c", KEY) == 0.43315278478415703


def test_per_model_overrides() -> None:
    """An override replaces the default rate for its model only."""
    decider = SampleDecider(key=KEY, rate=0.0, overrides={"hot-model": 1.0, "quiet": 0.0})
    assert decider.rate_for("hot-model") == 1.0
    assert decider.rate_for("other") == 0.0
    assert decider.rate_for(None) == 0.0
    assert all(decider.head(f"id-{n}", "hot-model") for n in range(200))
    assert not any(decider.head(f"id-{n}", "other") for n in range(200))


def test_keep_rules_match_errors_length_and_slow() -> None:
    """Errors, length cut-offs and slow requests are kept; an ordinary exchange is not."""
    decider = SampleDecider(key=KEY, rate=0.0, keep_slow_seconds=10.0)
    assert decider.keep_rule(exchange("a", status=500)) == "error"
    assert decider.keep_rule(exchange("b", status=429)) == "error"
    assert decider.keep_rule(exchange("c", error="upstream_timeout", status=504)) == "error"
    assert decider.keep_rule(exchange("d", finish_reason="length")) == "length"
    assert decider.keep_rule(exchange("e", e2e_seconds=12.0)) == "slow"
    assert decider.keep_rule(exchange("f", e2e_seconds=2.0)) is None


def test_keep_rules_can_be_switched_off() -> None:
    """With the rules disabled nothing is kept beyond the random sample."""
    decider = SampleDecider(
        key=KEY, rate=0.0, keep_errors=False, keep_length=False, keep_slow_seconds=None
    )
    assert decider.keep_rule(exchange("a", status=500)) is None
    assert decider.keep_rule(exchange("b", finish_reason="length")) is None
    assert decider.keep_rule(exchange("c", e2e_seconds=999.0)) is None


def test_keep_budget_caps_a_flood_and_refills() -> None:
    """The token bucket allows one minute's budget at once, then refills at budget/60 per s."""
    clock = FakeClock()
    bucket = TokenBucket(60, clock)
    assert sum(bucket.take() for _ in range(1000)) == 60
    clock.now += 10.0
    assert sum(bucket.take() for _ in range(1000)) == 10
    clock.now += 3600.0
    assert sum(bucket.take() for _ in range(1000)) == 60


def test_zero_budget_keeps_nothing() -> None:
    """A budget of 0 disables keep-rules entirely."""
    decider = SampleDecider(key=KEY, rate=0.0, keep_budget_per_minute=0)
    assert not decider.take_budget()


def test_two_processes_agree(tmp_path: Path) -> None:
    """A second interpreter with a different hash seed makes the same 2,000 decisions."""
    script = (
        "import json, sys\n"
        "from sidecar.sampling.decision import SampleDecider\n"
        "decider = SampleDecider(key=bytes(range(32)), rate=0.25)\n"
        "print(json.dumps([decider.head(f'id-{n}', 'm') for n in range(2000)]))\n"
    )
    here = SampleDecider(key=KEY, rate=0.25)
    expected = [here.head(f"id-{n}", "m") for n in range(2000)]
    for seed in ("1", "4242"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            check=True,
            cwd=tmp_path,
        )
        assert json.loads(result.stdout) == expected


def _unkeyed_fraction(request_id: str) -> float:
    """The decision of earlier releases: the id's hash with no key, public to any client."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def test_a_client_cannot_choose_ids_that_get_sampled(tmp_path: Path) -> None:
    """200 ids chosen to fall under 0.01 by the public hash are sampled at about 1%, not 100%."""
    chosen = [f"attack-{n}" for n in range(100_000) if _unkeyed_fraction(f"attack-{n}") < 0.01]
    chosen = chosen[:200]
    assert len(chosen) == 200
    decider = SampleDecider(key=load_sample_key(None, tmp_path / "spool"), rate=0.01)
    sampled = sum(decider.head(request_id, "m") for request_id in chosen)
    assert sampled <= stats.binom.ppf(0.9999, 200, 0.01), sampled


def test_a_client_cannot_choose_ids_that_are_never_sampled(tmp_path: Path) -> None:
    """Ids chosen to sit above 0.5 by the public hash are still sampled at about 50%."""
    chosen = [f"hide-{n}" for n in range(4_000) if _unkeyed_fraction(f"hide-{n}") >= 0.5][:1000]
    decider = SampleDecider(key=load_sample_key(None, tmp_path / "spool"), rate=0.5)
    sampled = sum(decider.head(request_id, "m") for request_id in chosen)
    low, high = stats.binom.interval(0.9999, len(chosen), 0.5)
    assert low <= sampled <= high, sampled


def test_generated_key_is_private_and_kept_across_restarts(tmp_path: Path) -> None:
    """Unset key file: one is generated (mode 0600) under the spool dir and reused after."""
    spool = tmp_path / "spool"
    first = load_sample_key(None, spool)
    assert (spool / GENERATED_KEY_NAME).stat().st_mode & 0o777 == 0o600
    assert load_sample_key(None, spool) == first
    assert load_sample_key(None, tmp_path / "other") != first


def test_replicas_sharing_a_key_file_agree(tmp_path: Path) -> None:
    """Two replicas given the same key file decide alike; a different key decides otherwise."""
    shared = tmp_path / "key"
    shared.write_text("a shared secret for every replica\n")
    one = SampleDecider(key=load_sample_key(shared, tmp_path / "a"), rate=0.5)
    two = SampleDecider(key=load_sample_key(shared, tmp_path / "b"), rate=0.5)
    other = SampleDecider(key=load_sample_key(None, tmp_path / "c"), rate=0.5)
    ids = [f"id-{n}" for n in range(500)]
    assert [one.head(i, "m") for i in ids] == [two.head(i, "m") for i in ids]
    assert [one.head(i, "m") for i in ids] != [other.head(i, "m") for i in ids]


def test_a_short_or_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    """A key too short to be a secret, or a file that cannot be read, stops start-up."""
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ConfigError, match="at least 16"):
        load_sample_key(short, tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_sample_key(tmp_path / "missing", tmp_path)
