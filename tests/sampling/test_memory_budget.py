"""Memory held for the sampler: O(1) per unsampled request, one global byte budget for all of it.

The real chain (aiohttp client -> proxy -> emulated vLLM) with a real pipeline; the budget's
reservations are read while the streams run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.proxy import ProxyServer
from sidecar.sampling.exchange import CANDIDATE_HEAD_BYTES
from sidecar.sampling.pipeline import SamplingPipeline
from tests.sampling.helpers import dropped, local_objects, metric, records_of, settings

STREAMS = 16
TOKENS = 1500
"""~250 KB of SSE per stream: far past the head an unsampled request keeps."""


async def _run(
    tmp_path: Path, *, max_tokens: int = TOKENS, **overrides: Any
) -> tuple[list[dict[str, Any]], int, list[bytes], SamplingPipeline]:
    """Run STREAMS concurrent streams; return the records, the peak reservation and bodies."""
    config = settings(tmp_path, listen="127.0.0.1:0", sample_keep_slow_seconds=None, **overrides)
    pipeline = SamplingPipeline(config)
    await pipeline.start()
    peak = 0
    bodies: list[bytes] = []
    options = EmulatorOptions.for_tests(output_tokens_mean=50_000.0, output_tokens_sigma=0.0)
    async with run_emulator(options, port=0) as emulator:
        proxy = ProxyServer(config.replace(upstream=emulator.url), pipeline)
        await proxy.start()
        running = True

        async def watch() -> None:
            nonlocal peak
            while running:
                peak = max(peak, pipeline.memory.used)
                await asyncio.sleep(0.001)

        async def stream(http: aiohttp.ClientSession, n: int) -> bytes:
            body = {
                "model": options.model,
                "messages": [{"role": "user", "content": f"tell me a long story {n}"}],
                "max_tokens": max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            url = f"http://127.0.0.1:{proxy.port}/v1/chat/completions"
            async with http.post(url, json=body) as response:
                assert response.status == 200
                return await response.read()

        watcher = asyncio.create_task(watch())
        try:
            async with aiohttp.ClientSession() as http:
                bodies = await asyncio.gather(*(stream(http, n) for n in range(STREAMS)))
        finally:
            running = False
            await watcher
            await proxy.stop()
    await pipeline.stop(10.0)
    return records_of(local_objects(config.samples_dir)), peak, bodies, pipeline


async def test_unsampled_streams_hold_only_a_bounded_head(tmp_path: Path) -> None:
    """At rate 0 each stream holds at most its head; every stream completes; all is released."""
    records, peak, bodies, pipeline = await _run(
        tmp_path, sample_rate=0.0, sample_keep_length=False
    )
    assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
    assert min(len(body) for body in bodies) > 8 * CANDIDATE_HEAD_BYTES
    assert 0 < peak <= STREAMS * CANDIDATE_HEAD_BYTES
    assert records == []
    assert pipeline.memory.used == 0


async def test_sampled_streams_stay_within_the_global_budget(tmp_path: Path) -> None:
    """At rate 1 with a budget below what the streams would need, memory stays within it and
    every stream completes; each is recorded, or dropped and counted when the budget is spent,
    and those cut short say so and still carry the usage from the stream's end."""
    budget = 512 * 1024
    refused = metric("vllm_sidecar_sample_memory_refused_total")
    spent = dropped("memory_budget")
    records, peak, bodies, pipeline = await _run(
        tmp_path, sample_rate=1.0, sample_memory_max_bytes=budget
    )
    assert sum(len(body) for body in bodies) > 4 * budget
    assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
    assert peak <= budget
    assert metric("vllm_sidecar_sample_memory_refused_total") > refused
    assert len(records) + dropped("memory_budget") - spent == STREAMS
    cut = [record for record in records if record["truncated"]]
    assert cut
    for record in cut:
        assert record["finish_reason"] == "length"
        assert record["completion_tokens"] == TOKENS
        assert record["response"]["stream_complete"] is True
    assert pipeline.memory.used == 0


async def test_a_length_cut_off_kept_by_its_rule_has_head_and_tail(tmp_path: Path) -> None:
    """Unsampled but cut off by max_tokens: kept by the length rule from its head and tail."""
    records, _peak, bodies, _pipeline = await _run(
        tmp_path, sample_rate=0.0, sample_keep_length=True, sample_keep_budget_per_minute=1
    )
    assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
    (record,) = records
    assert record["sample_reason"] == "length"
    assert record["truncated"] is True
    assert (record["finish_reason"], record["completion_tokens"]) == ("length", TOKENS)
    text = record["response"]["choices"][0]["text"]
    assert 0 < len(text.encode()) < CANDIDATE_HEAD_BYTES
    assert json.dumps(record).count("[DONE]") == 0
