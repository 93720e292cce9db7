"""Records are built in a supervised child process: dead or stuck, it is replaced and counted,
and the event loop never waits for it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections import Counter
from pathlib import Path

from sidecar.sampling.pipeline import SamplingPipeline
from sidecar.sampling.redact import Redactor
from tests.sampling.helpers import (
    chat_request,
    dropped,
    exchange,
    local_objects,
    metric,
    records_of,
    settings,
)
from tests.support import wait_until


class StallingRedactor(Redactor):
    """Takes 30 s over any text that says ``stall`` (a stand-in for a pathological record)."""

    def clean_text(self, text: str, counts: Counter[str] | None = None) -> str:
        if "stall" in text:
            time.sleep(30)
        return super().clean_text(text, counts)


def builder_pid() -> int | None:
    """The record-building child's process id, as multiprocessing knows it (None: none runs)."""
    children = multiprocessing.active_children()
    return next((child.pid for child in children if child.name == "sampling-builder"), None)


async def _spooled(pipeline: SamplingPipeline, records: int) -> None:
    await wait_until(lambda: pipeline.status()["spool_records"] >= records, within=30)


async def test_records_are_built_in_a_child_process(tmp_path: Path) -> None:
    """The builder is another process; a record still arrives, redacted."""
    pipeline = SamplingPipeline(settings(tmp_path))
    await pipeline.start()
    pid = builder_pid()
    assert pid is not None
    assert pid != os.getpid()
    pipeline.offer(exchange("r1", request_body=chat_request("mail bob@example.com")), sampled=True)
    await pipeline.stop(10.0)
    (record,) = records_of(local_objects(tmp_path / "samples"))
    assert "bob@example.com" not in str(record)
    assert builder_pid() is None


async def test_a_killed_builder_is_replaced_and_its_batch_counted(tmp_path: Path) -> None:
    """kill -9 of the child: the next batch is dropped (builder_failed), then records flow."""
    pipeline = SamplingPipeline(settings(tmp_path))
    await pipeline.start()
    first = builder_pid()
    assert first is not None
    failed = dropped("builder_failed")
    restarts = metric("vllm_sidecar_sample_builder_restarts_total", why="died")
    os.kill(first, signal.SIGKILL)
    pipeline.offer(exchange("lost"), sampled=True)
    await wait_until(lambda: dropped("builder_failed") == failed + 1, within=30)
    assert metric("vllm_sidecar_sample_builder_restarts_total", why="died") == restarts + 1
    assert builder_pid() not in (None, first)
    pipeline.offer(exchange("kept"), sampled=True)
    await _spooled(pipeline, 1)
    await pipeline.stop(10.0)
    assert [r["request_id"] for r in records_of(local_objects(tmp_path / "samples"))] == ["kept"]


async def test_a_stuck_builder_is_replaced_and_the_loop_never_waits(tmp_path: Path) -> None:
    """A batch over the time limit is dropped and the child replaced; meanwhile the event loop
    keeps running (the proxy's side of offer() never blocks)."""
    config = settings(tmp_path, sample_build_timeout_seconds=1.0)
    pipeline = SamplingPipeline(config, redactor=StallingRedactor())
    await pipeline.start()
    stuck = builder_pid()
    failed = dropped("builder_failed")
    pipeline.offer(exchange("stuck", request_body=chat_request("please stall")), sampled=True)
    worst = 0.0
    while dropped("builder_failed") == failed:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - started)
        assert time.perf_counter() - started < 30
    assert worst < 0.5
    assert builder_pid() not in (None, stuck)
    pipeline.offer(exchange("fine"), sampled=True)
    await _spooled(pipeline, 1)
    await pipeline.stop(10.0)
    assert [r["request_id"] for r in records_of(local_objects(tmp_path / "samples"))] == ["fine"]
