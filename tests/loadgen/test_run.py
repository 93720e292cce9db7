"""The load generator against a real emulator: bounds, profiles, error accounting, the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sidecar.cli import main
from sidecar.emulator import Emulator
from sidecar.loadgen import LoadError, LoadOptions, Progress, run_load
from tests.loadgen.conftest import EmulatorFactory
from tests.support import Processes, free_port, wait_for_port, wait_until


async def test_request_bound_sends_exactly_that_many(emulator: Emulator) -> None:
    """--requests 30 at concurrency 6: 30 requests, all ok, with TTFT/e2e/ITL percentiles."""
    report = await run_load(
        LoadOptions(target=emulator.url, concurrency=6, requests=30, max_tokens=16)
    )
    data = report.to_json()
    assert (data["requests"], data["ok"], data["cancelled"]) == (30, 30, 0)
    assert report.tally.sent == 30
    for key in ("ttft_seconds", "e2e_seconds", "itl_seconds"):
        assert 0 < data[key]["p50"] <= data[key]["p99"]
    assert data["ttft_seconds"]["p50"] < data["e2e_seconds"]["p50"]
    assert report.tally.output_tokens == sum(
        rank.stats.generation_tokens for rank in emulator.engine.ranks
    )


async def test_duration_bound_stops_on_time_and_cancels_in_flight(emulator: Emulator) -> None:
    """--duration ends the run on time; unfinished requests are cancelled and aborted upstream."""
    emulator.controls.set_faults(token_latency_ms=5)
    emulator.controls.set_behaviour(output_tokens_mean=2000.0)  # nobody finishes in 0.6 s
    started = time.monotonic()
    report = await run_load(
        LoadOptions(target=emulator.url, concurrency=4, duration=0.6, max_tokens=500)
    )
    assert 0.6 <= time.monotonic() - started < 2.0
    assert report.tally.cancelled == 4
    await wait_until(lambda: len(emulator.engine.aborted) == 4)
    assert emulator.engine.num_running == 0


async def test_ramp_and_burst_shape_concurrency(emulator: Emulator) -> None:
    """The progress callback sees the ramp climb, and the burst profile drop to 0 between bursts."""
    seen: list[Progress] = []
    await run_load(
        LoadOptions(target=emulator.url, profile="ramp", concurrency=8, duration=1.0),
        on_progress=seen.append,
        progress_interval=0.05,
    )
    targets = [progress.target for progress in seen]
    assert targets[0] == 1
    assert max(targets) == 8
    assert targets == sorted(targets)
    seen.clear()
    await run_load(
        LoadOptions(
            target=emulator.url,
            profile="burst",
            concurrency=5,
            duration=1.0,
            burst_seconds=0.3,
            idle_seconds=0.3,
        ),
        on_progress=seen.append,
        progress_interval=0.05,
    )
    assert {progress.target for progress in seen} == {0, 5}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_server_errors_are_counted_by_kind(emulator: Emulator, stream: bool) -> None:
    """Injected engine errors: in-band stream errors or HTTP 5xx, never counted as successes."""
    emulator.controls.set_faults(error_rate=1.0)
    report = await run_load(
        LoadOptions(target=emulator.url, concurrency=3, requests=6, stream=stream)
    )
    assert report.tally.ok == 0
    assert report.tally.errors == {("stream_error" if stream else "http_5xx"): 6}


async def test_api_key_is_sent_and_unreachable_target_is_a_load_error(
    start_emulator: EmulatorFactory,
) -> None:
    """With the right key requests succeed; a closed port raises LoadError before any load."""
    emulator = await start_emulator(api_keys=("k1",))
    report = await run_load(
        LoadOptions(target=emulator.url + "/v1", requests=2, api_key="k1", endpoint="completions")
    )
    assert report.tally.ok == 2
    with pytest.raises(LoadError, match="HTTP 401"):
        await run_load(LoadOptions(target=emulator.url, requests=1, api_key="bad"))
    with pytest.raises(LoadError, match="cannot reach"):
        await run_load(LoadOptions(target=f"http://127.0.0.1:{free_port()}", requests=1))


@pytest.mark.slow
def test_cli_prints_json_summary_against_a_running_emulator(
    processes: Processes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``vllm-sidecar loadgen --json`` against ``vllm-sidecar emulate``: counts and percentiles."""
    port = free_port()
    processes.sidecar(
        "emulate", f"--listen=127.0.0.1:{port}", "--speed=20", log=tmp_path / "emu.log"
    )
    wait_for_port(port)
    code = main(
        [
            "loadgen",
            f"--target=http://127.0.0.1:{port}",
            "--profile=steady",
            "--concurrency=4",
            "--requests=12",
            "--max-tokens=16",
            "--json",
            "--progress",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert (summary["requests"], summary["ok"]) == (12, 12)
    assert summary["ttft_seconds"]["p99"] > 0
    assert "in-flight" in captured.err


def test_cli_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-URL target or an unreachable one exits 2 with a message."""
    assert main(["loadgen", "--target=localhost:1", "--requests=1"]) == 2
    assert "http(s) URL" in capsys.readouterr().err
    target = f"http://127.0.0.1:{free_port()}"
    assert main(["loadgen", f"--target={target}", "--requests=1", "--no-progress"]) == 2
    assert "cannot reach" in capsys.readouterr().err
