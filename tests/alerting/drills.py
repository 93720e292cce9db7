"""Fire drills for the serving alerts, with the vLLM backend as a parameter.

A drill puts a real Prometheus (rules rendered from a settings file) and a real
``vllm-sidecar run`` (the in-process path, same settings) in front of one vLLM backend, injects a
fault, and records how long each path takes from the fault to a *firing* alert.

**What a backend must provide** (:class:`Backend`): the base URL of an OpenAI-compatible vLLM
that serves ``/metrics`` and ``/health``, the served model name, and two coroutines, ``stall()``
(the engine stops making progress while the API server keeps answering: the emulator's ``stall``
fault, or ``kill -STOP`` of the EngineCore process on a real vLLM) and ``resume()`` (``kill
-CONT``). For the admission drill it must have been started with ``--max-num-queued-reqs 2``
(:data:`ADMISSION_LIMIT`). :data:`BACKENDS` names the emulator and real vLLM (the realvllm tier's
session servers: the default one for the stall and abort drills, one with the admission limit);
:func:`open_backend` opens either, and every drill runs against both unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.alerting import generate
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.runner import run_emulator
from sidecar.realvllm.launch import DEFAULT_FLAGS, SERVED_MODEL
from tests.realvllm.servers import RealVllmFactory
from tests.support import Processes, free_port, wait_for_port, wait_until

PROMETHEUS = "/usr/bin/prometheus"
ADMISSION_LIMIT = 2
SETTINGS = """\
scrape_interval: 0.5
alert_evaluation_interval: 0.5
min_requests_for_ratio: 5
alert_thresholds: {VLLMEngineStalled: 3}
alert_for: {VLLMEngineStalled: 2, VLLMAdmissionRejections: 2, VLLMClientAbortsHigh: 2}
"""
"""One settings file for the sidecar and the rules Prometheus loads: a 3 s stall window and 2 s
``for`` so a drill takes seconds (the defaults are 2 minutes and 1-5 minutes)."""


@dataclass
class Backend:
    """One vLLM to drill against (see the module docstring for the contract)."""

    name: str
    url: str
    model: str
    stall: Callable[[], Awaitable[None]]
    resume: Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def emulator_backend(*, admission_limit: int | None = None) -> AsyncIterator[Backend]:
    """The emulator as a backend: ``stall`` freezes its engine loop, /health stays 200."""
    options = EmulatorOptions.for_tests(
        model="drill-model", seed=11, max_num_queued_reqs=admission_limit
    )
    async with run_emulator(options, port=0) as emulator:

        async def stall() -> None:
            emulator.controls.set_faults(stall=True)

        async def resume() -> None:
            emulator.controls.set_faults(stall=False)

        yield Backend("emulator", emulator.url, options.model, stall, resume)


@contextlib.asynccontextmanager
async def real_vllm_backend(
    servers: RealVllmFactory, *, admission_limit: int | None = None
) -> AsyncIterator[Backend]:
    """A real ``vllm serve`` from the session's servers: ``stall`` is ``kill -STOP`` of its
    EngineCore (the API server keeps answering), ``resume`` is ``kill -CONT``; leaving the
    context CONTinues whatever is still stopped, so the shared server is never left frozen."""
    flags = DEFAULT_FLAGS
    if admission_limit is not None:
        flags = (*DEFAULT_FLAGS, "--max-num-queued-reqs", str(admission_limit))
    server = await asyncio.to_thread(servers, *flags)
    stopped: list[int] = []

    async def engine_reports_running() -> bool:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as page:
            text = await page.text()
        return any(
            line.startswith("vllm:num_requests_running{") and float(line.rsplit(" ", 1)[1]) > 0
            for line in text.splitlines()
        )

    async def reports_running(within: float) -> bool:
        with contextlib.suppress(AssertionError):
            await wait_until(engine_reports_running, within=within, every=0.05)
            return True
        return False

    async def stall() -> None:
        # The running gauge is the engine's last report: a STOP that lands between two batches
        # (every request just finished, the next ones not yet scheduled) freezes it at 0 and
        # no stall alert can fire. Freeze until the frozen page shows requests running; else
        # let the engine run until the page shows them and freeze again.
        deadline = time.monotonic() + 30
        while True:
            engine = server.pid_of("EngineCore")
            assert engine is not None, "no EngineCore process in the server's group"
            stopped.append(engine)
            os.kill(engine, signal.SIGSTOP)
            if await reports_running(within=1.0):  # stats sent before the STOP land first
                return
            assert time.monotonic() < deadline, "the engine never froze with requests running"
            await resume()
            await reports_running(within=2.0)

    async def resume() -> None:
        while stopped:
            os.kill(stopped.pop(), signal.SIGCONT)

    try:
        yield Backend("real-vllm", server.url, SERVED_MODEL, stall, resume)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


BACKENDS = ["emulator", pytest.param("real-vllm", marks=pytest.mark.realvllm)]
"""Parametrise ``backend_name`` with this: every drill runs on the emulator and on real vLLM."""


def open_backend(
    name: str, request: pytest.FixtureRequest, *, admission_limit: int | None = None
) -> contextlib.AbstractAsyncContextManager[Backend]:
    """The backend ``name``; real vLLM takes its server from the session's ``real_vllm``."""
    if name == "real-vllm":
        servers: RealVllmFactory = request.getfixturevalue("real_vllm")
        return real_vllm_backend(servers, admission_limit=admission_limit)
    return emulator_backend(admission_limit=admission_limit)


@dataclass
class Timing:
    """Seconds from the fault to the first firing, per path (None: did not fire)."""

    alert: str
    backend: str
    prometheus: float | None = None
    sidecar: float | None = None

    def line(self) -> str:
        def show(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        return (
            f"drill {self.alert} on {self.backend}: fault -> firing "
            f"prometheus {show(self.prometheus)}, sidecar {show(self.sidecar)}"
        )


@dataclass
class DrillStack:
    """Prometheus and a sidecar in front of one backend."""

    backend: Backend
    session: aiohttp.ClientSession
    prometheus: str
    admin: str
    proxy: str
    timings: list[Timing] = field(default_factory=list)

    async def json(self, url: str, **params: str) -> Any:
        async with self.session.get(url, params=params) as response:
            assert response.status == 200, f"{url}: HTTP {response.status}"
            return await response.json()

    async def firing(self, alert: str) -> tuple[bool, bool]:
        """(firing in Prometheus, firing in the sidecar) for the backend's model."""
        found = []
        for url in (f"{self.prometheus}/api/v1/alerts", f"{self.admin}/api/v1/alerts"):
            body = await self.json(url)
            found.append(
                any(
                    a["state"] == "firing"
                    and a["labels"]["alertname"] == alert
                    and a["labels"].get("model_name") == self.backend.model
                    for a in body["data"]["alerts"]
                )
            )
        return found[0], found[1]

    async def ready(self) -> bool:
        up = await self.json(f"{self.prometheus}/api/v1/query", query="up == 1")
        async with self.session.get(f"{self.admin}/readyz") as response:
            sidecar_ready = response.status == 200
        return len(up["data"]["result"]) == 2 and sidecar_ready

    async def time_to_fire(self, alert: str, since: float, within: float = 120.0) -> Timing:
        """Poll both paths until both fire; the seconds each took since ``since``."""
        timing = Timing(alert, self.backend.name)

        async def both_fired() -> bool:
            prometheus, sidecar = await self.firing(alert)
            now = time.monotonic() - since
            if prometheus and timing.prometheus is None:
                timing.prometheus = now
            if sidecar and timing.sidecar is None:
                timing.sidecar = now
            return timing.prometheus is not None and timing.sidecar is not None

        with contextlib.suppress(AssertionError):  # the caller judges what did not fire
            await wait_until(both_fired, within=since + within - time.monotonic(), every=0.2)
        self.timings.append(timing)
        print(timing.line())
        return timing

    async def resolved(self, alert: str) -> bool:
        return await self.firing(alert) == (False, False)


def _prometheus_config(rules: Path, backend: str, admin: str) -> str:
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": "vllm", "static_configs": [{"targets": [backend]}]},
                {"job_name": "vllm-sidecar", "static_configs": [{"targets": [admin]}]},
            ],
        }
    )


@contextlib.asynccontextmanager
async def drill_stack(
    backend: Backend, processes: Processes, workdir: Path
) -> AsyncIterator[DrillStack]:
    """Start the sidecar and Prometheus for ``backend``; wait until both have scraped it."""
    settings = workdir / "sidecar.yaml"
    settings.write_text(SETTINGS)
    assert generate.main(["--config", str(settings), "--out-dir", str(workdir)]) == 0
    proxy, admin, prometheus = free_port(), free_port(), free_port()
    processes.sidecar(
        "run",
        "--config", str(settings),
        "--upstream", backend.url,
        "--listen", f"127.0.0.1:{proxy}",
        "--admin-listen", f"127.0.0.1:{admin}",
        "--samples-dir", str(workdir / "samples"),
        "--spool-dir", str(workdir / "spool"),
        "--log-format", "json",
        log=workdir / "sidecar.log",
    )  # fmt: skip
    config = workdir / "prometheus.yml"
    config.write_text(
        _prometheus_config(
            workdir / generate.RULES_FILE, backend.url.removeprefix("http://"), f"127.0.0.1:{admin}"
        )
    )
    processes.start(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus}",
            "--log.level=warn",
        ],
        log=workdir / "prometheus.log",
    )
    for port in (prometheus, admin, proxy):
        await asyncio.to_thread(wait_for_port, port, 30.0)
    async with aiohttp.ClientSession() as session:
        stack = DrillStack(
            backend,
            session,
            f"http://127.0.0.1:{prometheus}",
            f"http://127.0.0.1:{admin}",
            f"http://127.0.0.1:{proxy}",
        )
        deadline = time.monotonic() + 30
        while not await stack.ready():
            assert time.monotonic() < deadline, "Prometheus and the sidecar never scraped vLLM"
            await asyncio.sleep(0.2)
        yield stack
