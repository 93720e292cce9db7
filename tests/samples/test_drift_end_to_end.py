"""The whole story: emulator -> proxy -> sampling -> S3 (moto) -> pull -> drift.

A real sidecar (``vllm-sidecar run``, in its own process) in front of the emulator (another
process) writes samples for two windows, ``blue`` then ``green``; between them the emulator
starts answering longer, running into ``max_tokens`` more often and opening some answers with a
refusal. ``drift`` must flag exactly the signals that change.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar import __version__
from sidecar.cli import main
from sidecar.loadgen import LoadOptions, run_load
from tests.samples.conftest import PREFIX
from tests.sampling.conftest import MotoS3
from tests.support import Processes, free_port, wait_for_port

REQUESTS_PER_WINDOW = 300
CHANGED = {
    "output_chars",
    "completion_tokens",
    "finish_reasons",
    "length_cutoff",
    "refusals",
    "e2e_latency",
}
"""Longer answers take longer to generate, so end-to-end latency moves with them."""
UNCHANGED = {"empty_output", "ttft", "errors"}
EMULATOR_FLAGS = (
    *("--num-gpu-blocks", "512", "--max-model-len", "4096", "--max-num-seqs", "128"),
    *("--max-num-batched-tokens", "2048", "--output-tokens-mean", "24", "--seed", "3"),
    *("--speed", "2", "--latency-ms", "300", "--log-level", "warning"),
)
"""A small, fast engine whose TTFT is dominated by a fixed 300 ms, not by the test host."""


def _start_sidecar(
    processes: Processes, tmp_path: Path, moto: MotoS3, upstream: str, deployment: str
) -> tuple[subprocess.Popen[bytes], int]:
    """``vllm-sidecar run`` in front of the emulator, sampling everything into moto's S3."""
    port = free_port()
    child = processes.sidecar(
        "run",
        *("--upstream", upstream, "--listen", f"127.0.0.1:{port}"),
        *("--admin-listen", f"127.0.0.1:{free_port()}", "--deployment", deployment),
        *("--pod-name", "vllm-0", "--sample-rate", "1.0", "--no-sample-keep-errors"),
        *("--no-sample-keep-length", "--spool-dir", str(tmp_path / f"spool-{deployment}")),
        *("--upload-batch-max-records", "100", "--upload-batch-max-seconds", "0.5"),
        *("--s3-bucket", moto.bucket, "--s3-prefix", PREFIX, "--s3-region", "us-east-1"),
        *("--s3-endpoint-url", moto.url, "--log-level", "warning"),
        log=tmp_path / f"sidecar-{deployment}.log",
    )
    wait_for_port(port)
    return child, port


async def _window(
    processes: Processes, tmp_path: Path, moto: MotoS3, upstream: str, deployment: str
) -> None:
    """One deployment's worth of traffic through a real sidecar; SIGTERM flushes its samples."""
    child, port = _start_sidecar(processes, tmp_path, moto, upstream, deployment)
    report = await run_load(
        LoadOptions(
            target=f"http://127.0.0.1:{port}",
            requests=REQUESTS_PER_WINDOW,
            concurrency=32,
            max_tokens=64,
            prompt_words=40,
            seed=1 if deployment == "blue" else 2,
            drain=True,
        )
    )
    assert report.tally.ok == REQUESTS_PER_WINDOW
    child.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(child.wait, 30) == 0


def _drift(
    source: str, cache: Path, tmp_path: Path, name: str, windows: tuple[str, str], *extra: str
) -> Any:
    report = tmp_path / f"{name}.html"
    result = tmp_path / f"{name}.json"
    code = main(
        [
            "samples", "drift", "--source", source, "--cache", str(cache),
            "--baseline", windows[0], "--current", windows[1],
            "--report", str(report), "--json", str(result), *extra,
        ]
    )  # fmt: skip
    assert report.stat().st_size > 10_000
    return code, json.loads(result.read_text())


def _flagged(result: dict[str, Any]) -> set[str]:
    return {signal["name"] for signal in result["signals"] if signal["status"] == "drift"}


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat()


@pytest.mark.slow
async def test_drift_flags_what_the_emulator_changed_and_nothing_else(
    tmp_path: Path, moto_s3: MotoS3, processes: Processes, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blue vs green (and the same as time ranges): the changed signals, and only those."""
    port = free_port()
    processes.sidecar("emulate", "--listen", f"127.0.0.1:{port}", *EMULATOR_FLAGS)
    wait_for_port(port)
    upstream = f"http://127.0.0.1:{port}"
    start = time.time()
    await _window(processes, tmp_path, moto_s3, upstream, "blue")
    switch = time.time()
    async with aiohttp.ClientSession() as session:
        change = {"output_tokens_mean": 40.0, "length_cutoff_share": 0.25, "refusal_share": 0.12}
        async with session.post(f"{upstream}/_emulator/behaviour", json=change) as response:
            assert response.status == 200
    await _window(processes, tmp_path, moto_s3, upstream, "green")
    end = time.time() + 1

    source = f"s3://{moto_s3.bucket}/{PREFIX}"
    cache = tmp_path / "cache"
    pulled = main(
        ["samples", "pull", "--source", source, "--cache", str(cache),
         "--endpoint-url", moto_s3.url, "--no-progress"]
    )  # fmt: skip
    assert pulled == 0
    assert "fetched" in capsys.readouterr().err
    cached = sorted(cache.rglob("*.jsonl.gz"))
    assert len(cached) == len(moto_s3.keys()) >= 6

    code, by_label = _drift(
        source, cache, tmp_path, "labels", ("all@deployment=blue", "all@deployment=green")
    )
    assert code == 3
    assert by_label["verdict"] == "drift"
    assert by_label["baseline"]["records"] == by_label["current"]["records"] == 300
    flagged = _flagged(by_label)
    assert flagged == CHANGED, by_label["signals"]
    assert not flagged & UNCHANGED
    statuses = {signal["name"]: signal["status"] for signal in by_label["signals"]}
    assert statuses["json_invalid"] == "insufficient"  # nobody asked for JSON

    times = (f"{_iso(start)}..{_iso(switch)}", f"{_iso(switch)}..{_iso(end)}")
    pull_first = ("--pull", "--endpoint-url", moto_s3.url, "--no-progress")
    code, by_time = _drift(source, cache, tmp_path, "times", times, *pull_first)
    assert "fetched 0 objects" in capsys.readouterr().err, "--pull is incremental"
    assert code == 3
    assert _flagged(by_time) == CHANGED

    code, same = _drift(
        source, cache, tmp_path, "same", (f"all@deployment=blue,sidecar={__version__}", times[0])
    )
    assert same["verdict"] == "no drift"
    assert code == 0
