"""After real load the page stays internally consistent and counters only go up."""

from __future__ import annotations

import aiohttp

from sidecar.emulator import Emulator
from sidecar.loadgen import LoadOptions, run_load
from sidecar.loadgen.client import Endpoint
from tests.emulator.conftest import EmulatorFactory, scrape, value
from tests.emulator.invariants import check_histograms, check_quiet_engine, counter_values
from tests.support import wait_until


async def test_invariants_hold_after_load_and_counters_are_monotonic(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Two load runs: every histogram and identity checks out, every counter grows or stays."""
    _, before = await scrape(http, emulator)
    previous = counter_values(before)
    total_ok = 0
    runs: tuple[tuple[Endpoint, bool], ...] = (("chat", True), ("completions", False))
    for endpoint, stream in runs:
        report = await run_load(
            LoadOptions(
                target=emulator.url,
                concurrency=12,
                requests=40,
                endpoint=endpoint,
                stream=stream,
                prompt_words=120,
                max_tokens=48,
            )
        )
        assert report.tally.ok == 40
        total_ok += report.tally.ok
        await wait_until(lambda: emulator.engine.num_running == 0)
        _, families = await scrape(http, emulator)
        assert check_histograms(families) >= 18
        check_quiet_engine(families, client_aborts_before_first_token=False)
        current = counter_values(families)
        assert all(current[key] >= old for key, old in previous.items())
        previous = current
    assert value(families, "vllm:request_success_total") == total_ok
    assert sum(sum(rank.stats.finished.values()) for rank in emulator.engine.ranks) == total_ok
    assert (
        value(families, "http_requests_total", handler="/v1/chat/completions", status="2xx") == 40
    )
    assert value(families, "vllm:prefix_cache_hits_total") > 0


async def test_data_parallel_spreads_requests_and_stays_consistent(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """With two engines both get work and each engine's series obey the same identities."""
    emulator = await start_emulator(data_parallel=2)
    report = await run_load(
        LoadOptions(target=emulator.url, concurrency=8, requests=24, max_tokens=16)
    )
    assert report.tally.ok == 24
    await wait_until(lambda: emulator.engine.num_running == 0)
    _, families = await scrape(http, emulator)
    check_histograms(families)
    per_engine = [value(families, "vllm:request_success_total", engine=e) for e in ("0", "1")]
    assert sum(per_engine) == 24
    assert min(per_engine) > 0
    for engine in ("0", "1"):
        assert value(families, "vllm:request_success_total", engine=engine) == value(
            families, "vllm:e2e_request_latency_seconds_count", engine=engine
        )
