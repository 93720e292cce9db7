"""``samples replay`` against a real HTTP backend (the emulator), through a counting front.

The front sees every byte the replay sends, so concurrency, rate, duplicates and hosts are
measured where the candidate would see them, not inside the replay client.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from sidecar.cli import main
from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.samples.replay import ReplayOptions, replay, select_items
from sidecar.samples.replay.journal import ANSWERS
from sidecar.samples.timespec import TimeRange
from tests.samples.replay_support import run_front
from tests.samples.synthetic import Traffic, make_records, write_objects
from tests.support import Processes, wait_until


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    """An OpenAI-compatible base URL (the emulator; a real vLLM can stand in here)."""
    options = EmulatorOptions.for_tests(seed=3, latency_ms=150.0)
    async with run_emulator(options, port=0) as emulator:
        yield emulator.url


def _originals(root: Path, count: int) -> list[dict[str, Any]]:
    records = make_records(5, Traffic(error_share=0.0), count, time.time() - 7200, 3600)
    write_objects(root, records, per_object=20)
    return records


async def test_replay_honours_concurrency_and_rate_and_stores_a_queryable_run(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """40 requests, 3 at a time, at most 10 started per second: measured at the front."""
    root = tmp_path / "samples"
    _originals(root, 40)
    items = select_items(root, TimeRange()).items
    assert len(items) == 40
    async with run_front(backend) as front:
        options = ReplayOptions(target=URL(front.url), concurrency=3, rate=10.0, temperature=0)
        summary = await replay(items, tmp_path / "run", options)
    assert summary.sent == 40
    assert summary.failed == 0
    assert front.most_in_flight == 3
    starts = sorted(item.started for item in front.seen)
    measured_rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert measured_rate <= 10.0 * 1.05
    # no bursts: any 10 consecutive intervals span about a second (arrival jitter allowed)
    spans = [starts[i + 10] - starts[i] for i in range(len(starts) - 10)]
    assert min(spans) >= 0.9, spans
    assert Counter(front.replay_ids()) == Counter(item.request_id for item in items)
    assert {item.path for item in front.seen} == {"/v1/chat/completions"}

    argv = ["samples", "query", "--source", str(tmp_path / "run"), "--format", "jsonl"]
    sql = "SELECT count(*) AS n, count(DISTINCT request_id) AS ids, min(output_chars) AS m, "
    sql += "count(ttft_seconds) AS t, count(completion_tokens) AS u FROM samples"
    capsys.readouterr()
    assert main([*argv, sql]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["n"] == row["ids"] == row["t"] == row["u"] == 40
    assert row["m"] > 0
    print(f"measured: {measured_rate:.2f} req/s, most in flight {front.most_in_flight}")


async def test_replay_never_contacts_another_host(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target that redirects, and proxy variables pointing elsewhere: the decoy sees nothing."""
    root = tmp_path / "samples"
    _originals(root, 6)
    items = select_items(root, TimeRange()).items
    async with run_front(backend) as decoy, run_front(None, redirect_to=decoy.url) as target:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, decoy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        summary = await replay(items, tmp_path / "run", ReplayOptions(target=URL(target.url)))
    assert len(target.seen) == 6
    assert decoy.seen == []
    assert summary.failed == 6  # a redirect is an answer, not an invitation


async def test_resume_after_kill_9_sends_nothing_twice(tmp_path: Path, backend: str) -> None:
    """kill -9 mid-run, run the same command again: every request reaches the target once."""
    root = tmp_path / "samples"
    _originals(root, 30)
    processes = Processes()
    async with run_front(backend) as front:
        argv = ["samples", "replay", "--source", str(root), "--target", front.url]
        argv += ["--concurrency", "2", "--rate", "8", "--no-progress", "--out", str(tmp_path / "r")]
        try:
            child = processes.sidecar(*argv)

            def answered() -> int:
                files = list((tmp_path / "r").glob(f"*/{ANSWERS}"))
                return files[0].read_bytes().count(b"\n") if files else 0

            await wait_until(lambda: answered() >= 8, within=60)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            processes.stop_all()
        first_run = len(front.seen)
        assert 8 <= first_run < 30

        resumed = await _run_cli_in_thread(argv)
        assert resumed.returncode == 0, resumed.stderr
    counts = Counter(front.replay_ids())
    assert max(counts.values()) == 1, "a request was sent twice"
    run_dir = next((tmp_path / "r").iterdir())
    records = _answers(run_dir)
    # at most once: what was in flight at the kill is left out, everything else is answered
    assert set(records) | _in_flight(run_dir, records) == set(counts)
    assert len(records) >= 30 - 2
    assert "not re-sent (at most once)" in resumed.stderr
    print(
        f"kill -9 after {first_run} requests reached the target; resumed: {len(counts)} distinct, "
        f"{len(records)} answered, {len(_in_flight(run_dir, records))} in flight left out"
    )


def _answers(run_dir: Path) -> dict[str, Any]:
    lines = (run_dir / ANSWERS).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return {record["request_id"]: record for record in records}


def _in_flight(run_dir: Path, answered: dict[str, Any]) -> set[str]:
    sent = [json.loads(line)["id"] for line in (run_dir / ".sent.jsonl").read_text().splitlines()]
    return {request_id for request_id in sent if request_id not in answered}


async def _run_cli_in_thread(argv: list[str]) -> Any:
    """The CLI in a child process while this loop keeps serving the front."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)

    class Result:
        returncode = process.returncode
        stdout = out.decode()
        stderr = err.decode()

    return Result()
