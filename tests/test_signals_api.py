"""``/api/v1/signals``: keys named like the gauges, units in the names, each model once, a schema.

The committed ``docs/signals.schema.json`` is regenerated from the same tables and compared, and
documents from a real sidecar in front of the emulator (one engine, then two) validate against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from sidecar import app as sidecar_app
from sidecar.config import load
from sidecar.emulator import EmulatorOptions, run_emulator
from sidecar.exporter import INSTANT_GAUGES, LATENCY_GAUGES, WINDOWED_GAUGES
from sidecar.loadgen import LoadOptions, run_load
from sidecar.signals_api import SCHEMA_FILE, key, render_schema
from tests.support import free_port, wait_until


def test_committed_schema_is_current() -> None:
    """Regenerating the schema changes nothing (python -m sidecar.signals_api)."""
    assert SCHEMA_FILE.read_text("utf-8") == render_schema()


def test_keys_are_the_gauge_names_with_their_units() -> None:
    """Every key is an exported gauge without its prefix; none is an internal short name."""
    names = {
        key(n)
        for table in (LATENCY_GAUGES, WINDOWED_GAUGES, INSTANT_GAUGES)
        for n, _ in table.values()
    }
    schema = json.loads(SCHEMA_FILE.read_text("utf-8"))
    target = schema["properties"]["signals"]["properties"]["targets"]["items"]["properties"]
    assert names <= set(target)
    assert {"ttft_seconds", "kv_cache_usage_ratio", "queue_growth_per_second"} <= names
    assert not {"itl", "queue_slope", "kv_cache_usage", "latency"} & set(target)


async def _document(data_parallel: int, tmp_path: Path) -> dict[str, Any]:
    options = EmulatorOptions.for_tests(data_parallel=data_parallel)
    async with run_emulator(options, port=0) as emulator:
        settings = load(
            upstream=emulator.url,
            listen="127.0.0.1:0",
            admin_listen=f"127.0.0.1:{free_port()}",
            scrape_interval=0.2,
            spool_dir=tmp_path / f"spool-{data_parallel}",
            samples_dir=tmp_path / "samples",
        )
        sidecar = sidecar_app.build(settings)
        await sidecar_app.start(sidecar)
        try:
            await run_load(LoadOptions(target=emulator.url, requests=8, concurrency=2))
            await wait_until(lambda: sidecar.admin_state.signals is not None, within=10.0)
            admin = "http://{}:{}".format(*sidecar.bound["admin"])
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{admin}/api/v1/signals") as response:
                    body: dict[str, Any] = await response.json()
        finally:
            await sidecar_app.shutdown(sidecar)
    return body


@pytest.mark.parametrize("data_parallel", [1, 2])
async def test_documents_validate_and_list_a_single_engine_model_once(
    data_parallel: int, tmp_path: Path
) -> None:
    """One engine: one entry (engines ["0"]); two: the model, then each engine."""
    body = await _document(data_parallel, tmp_path)
    jsonschema.validate(body, json.loads(SCHEMA_FILE.read_text("utf-8")))
    targets = body["signals"]["targets"]
    engines = [str(n) for n in range(data_parallel)]
    assert targets[0]["engine"] is None
    assert targets[0]["engines"] == engines
    expected = [None] if data_parallel == 1 else [None, *engines]
    assert [t["engine"] for t in targets] == expected
    assert body["scrape"]["vllm_version"]
