"""The engine model on its own: calibrated timings and where the default H100 pool saturates."""

from __future__ import annotations

import itertools
import statistics
import time

from sidecar.emulator import EmulatorOptions
from sidecar.emulator.controls import Controls
from sidecar.emulator.engine import Engine
from sidecar.emulator.request import EngineRequest
from tests.support import wait_until


def _requests(count: int, prompt_len: int, tokens: int) -> list[EngineRequest]:
    now = time.monotonic()
    return [
        EngineRequest(
            request_id=f"r{i}",
            external_id=f"r{i}",
            prompt_len=prompt_len,
            block_hashes=(),
            planned_tokens=tokens,
            planned_reason="stop",
            arrival=now,
        )
        for i in range(count)
    ]


def test_step_times_are_calibrated_to_an_8b_model_on_an_h100() -> None:
    """Modelled steps: a 1k-token prefill takes tens of ms; decode ~10 ms alone, ~20 ms at 256."""
    options = EmulatorOptions(step_jitter=0.0)
    rank = Engine(options, Controls(options)).ranks[0]
    (prefill,) = _requests(1, prompt_len=1000, tokens=10)
    assert 0.02 <= rank.step_seconds([(prefill, 1000)]) <= 0.09
    decoding = _requests(256, prompt_len=1000, tokens=600)
    for request in decoding:
        request.output = 300
        request.computed = 1299
    assert 0.008 <= rank.step_seconds([(decoding[0], 1)]) <= 0.012
    assert 0.015 <= rank.step_seconds([(request, 1) for request in decoding]) <= 0.025


async def test_idle_engine_streams_at_the_modelled_pace() -> None:
    """Real time, defaults: measured TTFT and inter-token gaps follow the modelled step times."""
    options = EmulatorOptions(step_jitter=0.0)
    engine = Engine(options, Controls(options))
    engine.start()
    try:
        (request,) = _requests(1, prompt_len=1000, tokens=12)
        token_times: list[float] = []

        def note() -> bool:
            if request.last_token_at is not None and request.last_token_at not in token_times:
                token_times.append(request.last_token_at)
            return request.finished

        engine.submit([request])
        await wait_until(note, within=2.0)
    finally:
        await engine.stop()
    assert request.first_token_at is not None
    ttft = request.first_token_at - request.arrival
    gaps = [b - a for a, b in itertools.pairwise(token_times)]
    assert 0.04 <= ttft <= 0.2
    assert 0.009 <= statistics.median(gaps) <= 0.05


async def test_default_pool_saturates_at_hundreds_of_streams() -> None:
    """35,108 blocks of 16: ~1.3k-token requests fill it at several hundred, then preempt."""
    options = EmulatorOptions(speed=500.0, step_jitter=0.0)
    engine = Engine(options, Controls(options))
    engine.start()
    peak = 0

    def saturated() -> bool:
        nonlocal peak
        peak = max(peak, engine.num_running)
        return engine.preemptions > 0

    try:
        engine.submit(_requests(900, prompt_len=1000, tokens=300))
        await wait_until(saturated, within=20.0)
        assert engine.kv_cache_usage > 0.95
        assert engine.num_waiting > 0
    finally:
        await engine.stop()
    assert 300 <= peak <= 700
