"""Ramp to saturation: the KV cache fills, the queue grows, requests get preempted, then recover."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from sidecar.loadgen import LoadOptions, run_load
from tests.emulator.conftest import EmulatorFactory, scrape, value
from tests.emulator.invariants import check_histograms, check_quiet_engine
from tests.support import wait_until


@pytest.mark.slow
async def test_ramp_fills_kv_queues_preempts_and_recovers(
    start_emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    """Scraped as the sidecar would: KV >= 0.85, waiting grows, preemptions > 0, then clear."""
    emulator = await start_emulator(num_gpu_blocks=256, max_model_len=2048, output_tokens_mean=64)
    seen: list[tuple[float, float, float, float]] = []

    async def watch() -> None:
        while True:
            _, families = await scrape(http, emulator)
            seen.append(
                (
                    time.monotonic(),
                    value(families, "vllm:kv_cache_usage_perc"),
                    value(families, "vllm:num_requests_waiting"),
                    value(families, "vllm:num_preemptions_total"),
                )
            )
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    report = await run_load(
        LoadOptions(
            target=emulator.url,
            profile="ramp",
            concurrency=48,
            duration=3.0,
            ramp_seconds=2.0,
            prompt_words=150,
            max_tokens=128,
        )
    )
    stopped = time.monotonic()
    await wait_until(lambda: emulator.engine.num_running + emulator.engine.num_waiting == 0, 1.0)
    recovered_in = time.monotonic() - stopped
    await asyncio.sleep(0.25)
    watcher.cancel()
    during = [row for row in seen if row[0] < stopped]
    peak_kv = max(row[1] for row in during)
    waiting = [row[2] for row in during]
    assert peak_kv >= 0.85
    assert max(waiting) >= 10
    first_queue = next(i for i, w in enumerate(waiting) if w > 0)
    assert waiting[-1] > waiting[first_queue]
    assert during[-1][3] > 0
    assert next(row[0] for row in during if row[1] >= 0.85) - started < 2.5
    assert report.tally.ok > 20
    assert report.tally.error_count == 0
    assert recovered_in < 0.5
    after = seen[-1]
    assert (after[1], after[2]) == (0.0, 0.0)
    _, families = await scrape(http, emulator)
    check_histograms(families)
    check_quiet_engine(families, client_aborts_before_first_token=True)
    assert value(families, "vllm:request_num_preemptions_sum") > 0
    assert value(families, "vllm:request_success_total", finished_reason="abort") == 0
