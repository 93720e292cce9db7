"""The optional active probe: latency on success, failures by reason, off by default."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from sidecar import app as sidecar_app
from sidecar.config import ConfigError, load
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.runner import run_emulator
from sidecar.metrics import REGISTRY
from sidecar.probe import Prober
from tests.support import free_port, wait_until


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("interval", ["1e-9", "0.001", "0.5", "-1"])
def test_probe_interval_below_a_second_is_refused(interval: str) -> None:
    """Each probe costs vLLM a prefill: a tiny interval would turn the sidecar into a load
    generator (1e-9 probed back to back), so anything but 0 (off) or a second or more is an error.
    """
    with pytest.raises(ConfigError, match="probe_interval"):
        load(probe_interval=interval)


def test_probe_interval_accepts_off_and_whole_seconds() -> None:
    """0 keeps the probe off; one second is the shortest schedule."""
    assert load(probe_interval="0").probe_interval == 0.0
    assert load(probe_interval="1").probe_interval == 1.0


async def test_probe_measures_answers_and_counts_a_stalled_engine_as_timeouts() -> None:
    """A healthy emulator answers the 1-token probe; a stalled one makes it time out."""
    options = EmulatorOptions.for_tests(model="probe-model", seed=3)
    async with run_emulator(options, port=0) as emulator, aiohttp.ClientSession() as session:
        settings = load(upstream=emulator.url, probe_interval=1.0, probe_timeout=0.3)
        prober = Prober(settings, session)
        answered = _value("vllm_sidecar_probe_duration_seconds_count")
        assert await prober.probe_once()
        assert _value("vllm_sidecar_probe_duration_seconds_count") == answered + 1
        assert _value("vllm_sidecar_probe_last_success_timestamp_seconds") > 0

        emulator.controls.set_faults(stall=True)
        timeouts = _value("vllm_sidecar_probe_failures_total", reason="timeout")
        stop = asyncio.Event()
        task = asyncio.create_task(prober.run(stop))
        await wait_until(
            lambda: _value("vllm_sidecar_probe_failures_total", reason="timeout") >= timeouts + 2
        )
        emulator.controls.set_faults(stall=False)
        stop.set()
        await asyncio.wait_for(task, 5.0)


async def test_probe_counts_an_unreachable_vllm_as_connect_failures() -> None:
    """Nothing listening: the probe fails with reason connect and the loop keeps going."""
    async with aiohttp.ClientSession() as session:
        settings = load(upstream=f"http://127.0.0.1:{free_port()}", probe_timeout=1.0)
        before = _value("vllm_sidecar_probe_failures_total", reason="connect")
        assert not await Prober(settings, session).probe_once()
        assert _value("vllm_sidecar_probe_failures_total", reason="connect") == before + 1


async def test_probe_is_off_by_default_and_runs_as_a_sidecar_task(tmp_path: Path) -> None:
    """No probe task without --probe-interval; with it, the running sidecar probes vLLM."""
    options = EmulatorOptions.for_tests(model="probe-model", seed=3)
    async with run_emulator(options, port=0) as emulator:
        for interval, expected in ((0.0, False), (1.0, True)):
            settings = load(
                upstream=emulator.url,
                admin_listen=f"127.0.0.1:{free_port()}",
                proxy_enabled=False,
                probe_interval=interval,
                spool_dir=tmp_path / str(interval),
            )
            sidecar = sidecar_app.build(settings)
            await sidecar_app.start(sidecar)
            try:
                names = [task.get_name() for task in sidecar.tasks]
                assert ("probe" in names) is expected
                if expected:
                    sent = _value("vllm_sidecar_probes_total")
                    await wait_until(
                        lambda sent=sent: _value("vllm_sidecar_probes_total") >= sent + 2
                    )
            finally:
                await sidecar_app.shutdown(sidecar)
