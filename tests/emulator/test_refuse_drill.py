"""The drill the ``refuse`` outage exists for: the sidecar sees vLLM down and says so.

The sidecar's scraper keeps its connections alive; a "dead" emulator must not keep answering
over them, or ``vllm_sidecar_upstream_up`` stays 1, ``/readyz`` ready and VLLMDown silent.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from sidecar import app as sidecar_app
from sidecar.config import load
from sidecar.emulator import EmulatorOptions, run_emulator
from tests.support import free_port, wait_until


def _firing(sidecar: sidecar_app.Sidecar) -> set[str]:
    return {
        alert["labels"]["alertname"]
        for alert in sidecar.engine.alert_list()
        if alert["state"] == "firing"
    }


async def test_refuse_outage_makes_the_sidecar_unready_and_fires_vllm_down(tmp_path: Path) -> None:
    """upstream_up 0, /readyz 503 and VLLMDown firing while the emulator refuses; then healed."""
    async with run_emulator(EmulatorOptions.for_tests(), port=0) as emulator:
        settings = load(
            upstream=emulator.url,
            listen="127.0.0.1:0",
            admin_listen=f"127.0.0.1:{free_port()}",
            scrape_interval=0.2,
            scrape_timeout=0.5,
            alert_evaluation_interval=0.2,
            alert_for={"VLLMDown": 1},
            spool_dir=tmp_path / "spool",
            samples_dir=tmp_path / "samples",
        )
        sidecar = sidecar_app.build(settings)
        await sidecar_app.start(sidecar)
        admin = "http://{}:{}".format(*sidecar.bound["admin"])
        try:
            await wait_until(lambda: sidecar.admin_state.scrape.ready, within=10.0)
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{emulator.url}/_emulator/faults",
                    json={"outage": "refuse", "outage_seconds": 8},
                ) as response:
                    assert response.status == 200
                await wait_until(lambda: "VLLMDown" in _firing(sidecar), within=7.0)
                async with http.get(f"{admin}/readyz") as response:
                    assert response.status == 503
                async with http.get(f"{admin}/metrics") as response:
                    metrics = await response.text()
                assert "vllm_sidecar_upstream_up 0.0" in metrics
                await wait_until(lambda: sidecar.admin_state.scrape.ready, within=15.0)
                async with http.get(f"{admin}/readyz") as response:
                    assert response.status == 200
        finally:
            await sidecar_app.shutdown(sidecar)
