"""The pure parts of the emulator: deterministic answers, the KV block pool, option checks."""

from __future__ import annotations

import pytest

from sidecar.emulator import EmulatorOptions
from sidecar.emulator.controls import Behaviour, ControlError, Controls
from sidecar.emulator.families import buckets_1_2_5
from sidecar.emulator.kv import BlockHolding, BlockPool
from sidecar.emulator.text import REFUSAL, block_hashes, plan_output, token_ids


def test_same_prompt_and_seed_give_the_same_answer() -> None:
    """The answer depends on the prompt and seed only, and a different seed changes it."""
    behaviour = Behaviour(output_tokens_mean=40)
    first = plan_output("prompt", seed=1, behaviour=behaviour, limit=500)
    again = plan_output("prompt", seed=1, behaviour=behaviour, limit=500)
    other = plan_output("prompt", seed=2, behaviour=behaviour, limit=500)
    assert first == again
    assert first.text != other.text
    assert first.finish_reason == "stop"


def test_limit_cuts_with_length_and_keeps_the_prefix() -> None:
    """max_tokens truncates the same answer (finish 'length') rather than changing it."""
    behaviour = Behaviour(output_tokens_mean=200, output_tokens_sigma=0)
    full = plan_output("p", seed=0, behaviour=behaviour, limit=1000)
    cut = plan_output("p", seed=0, behaviour=behaviour, limit=10)
    assert len(cut.deltas) == 10
    assert cut.finish_reason == "length"
    assert full.deltas[:10] == cut.deltas


def test_stop_string_ends_the_answer_before_the_match() -> None:
    """A stop string ends the text just before it, with stop_reason naming it."""
    behaviour = Behaviour(output_tokens_mean=300, output_tokens_sigma=0)
    full = plan_output("q", seed=0, behaviour=behaviour, limit=1000).text
    needle = full.split()[5]
    plan = plan_output("q", seed=0, behaviour=behaviour, limit=1000, stop=[needle])
    assert plan.finish_reason == "stop"
    assert plan.stop_reason == needle
    assert plan.text == full[: full.index(needle)]
    kept = plan_output(
        "q", seed=0, behaviour=behaviour, limit=1000, stop=[needle], include_stop=True
    )
    assert kept.text == full[: full.index(needle) + len(needle)]


def test_refusal_and_length_shares_switch_behaviour() -> None:
    """refusal_share=1 answers with the fixed refusal; length_cutoff_share=1 runs to the limit."""
    refuse = plan_output("x", seed=0, behaviour=Behaviour(refusal_share=1.0), limit=100)
    assert refuse.deltas == REFUSAL
    runs_long = plan_output("x", seed=0, behaviour=Behaviour(length_cutoff_share=1.0), limit=77)
    assert (len(runs_long.deltas), runs_long.finish_reason) == (77, "length")


def test_equal_prefixes_share_leading_block_hashes() -> None:
    """Prompts with a common prefix share the hashes of the full blocks they have in common."""
    common = " ".join(f"w{i}" for i in range(40))
    left = block_hashes(token_ids(common + " alpha beta"), 16)
    right = block_hashes(token_ids(common + " gamma delta"), 16)
    assert left[:2] == right[:2]
    assert len(left) == len(token_ids(common + " alpha beta")) // 16


def test_block_pool_usage_preemption_room_and_prefix_reuse() -> None:
    """Usage is pinned/usable; released hashed blocks stay reusable until evicted."""
    pool = BlockPool(11, 16, prefix_caching=True)
    first = BlockHolding()
    assert pool.allocate(first, 4)
    pool.register(first, 111)
    pool.register(first, 222)
    assert pool.usage() == pytest.approx(0.4)
    second = BlockHolding()
    assert not pool.allocate(second, 7)
    pool.release(first)
    assert pool.usage() == 0
    assert pool.cached_prefix((111, 222, 333), prompt_len=100) == 2
    pool.pin_cached(second, (111, 222))
    assert pool.usage() == pytest.approx(0.2)
    assert pool.allocate(second, 8)
    assert pool.cached_prefix((111, 222), prompt_len=100) == 2
    pool.release(second)
    hog = BlockHolding()
    assert pool.allocate(hog, 10)
    assert pool.cached_prefix((111, 222), prompt_len=100) == 0


def test_kv_pressure_phantom_takes_only_free_blocks() -> None:
    """The phantom tenant grows into free room and gives it back when lowered."""
    pool = BlockPool(101, 16, prefix_caching=False)
    holder = BlockHolding()
    pool.allocate(holder, 50)
    pool.set_phantom(90)
    assert pool.phantom == 50
    assert pool.usage() == 1.0
    pool.set_phantom(10)
    assert pool.usage() == pytest.approx(0.6)


def test_one_two_five_buckets_follow_max_model_len() -> None:
    """vLLM's 1-2-5 token buckets stop at max_model_len (8192 -> 5000, 131072 -> 100000)."""
    assert buckets_1_2_5(8192)[-1] == 5000
    assert buckets_1_2_5(131072)[-3:] == (20000.0, 50000.0, 100000.0)


def test_options_reject_bad_values_naming_every_field() -> None:
    """One ValueError lists every invalid option; the defaults are valid."""
    EmulatorOptions()
    with pytest.raises(ValueError, match="speed must be > 0") as caught:
        EmulatorOptions(speed=0, data_parallel=0, error_rate=2)
    assert "data_parallel" in str(caught.value)
    assert "error_rate" in str(caught.value)
    with pytest.raises(ValueError, match="refuse"):
        EmulatorOptions(outage="refuse")


def test_fault_updates_are_validated_as_a_whole() -> None:
    """A bad field rejects the whole update; refuse needs a duration."""
    controls = Controls(EmulatorOptions())
    with pytest.raises(ControlError, match="error_rate"):
        controls.set_faults(latency_ms=5, error_rate=3)
    assert controls.faults.latency_ms == 0
    with pytest.raises(ControlError, match="unknown"):
        controls.set_faults(colour="red")
    with pytest.raises(ControlError, match="outage_seconds"):
        controls.set_faults(outage="refuse")
    assert controls.set_faults(kv_pressure=0.5).kv_pressure == 0.5
    assert controls.set_behaviour(refusal_share=0.25).refusal_share == 0.25
