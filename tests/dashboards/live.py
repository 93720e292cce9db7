"""A small fleet for the live dashboard test: emulators, sidecars, load, and a real Prometheus.

Each :class:`Stack` is one ``vllm-sidecar emulate`` (a vLLM stand-in with a given metrics
profile) with ``vllm-sidecar run`` in front of it; one Prometheus (the Debian binary) scrapes every
emulator as job ``vllm-<stack>`` and every sidecar's admin port as job ``vllm-sidecar-<stack>``
once a second. :class:`Load` drives chat completions (streamed and not) through each sidecar's
proxy with the official ``openai`` client from a background thread until it is stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import random
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import yaml

from tests.support import Processes, free_port, wait_for_port

SYSTEM_PROMPT = "You are a terse assistant for the dashboard test. " * 8
"""Shared by every request so the prefix cache has something to hit."""

CANARY_RULES = {
    "groups": [
        {
            "name": "dashboard-test",
            "rules": [
                {
                    "alert": "VLLMDashboardTestCanary",
                    "expr": 'max by (model_name) ({__name__=~"vllm[:_]num_requests_running"}) >= 0',
                    "labels": {"severity": "info"},
                    "annotations": {"summary": "Always fires, so the alert panels have a row."},
                }
            ],
        }
    ]
}
"""A stand-in for the alert pack: fires at once for every model, like a real VLLM* alert would."""


@dataclass(frozen=True, slots=True)
class Stack:
    """One emulated vLLM server and the sidecar in front of it."""

    name: str
    profile: str
    model: str
    data_parallel: int = 1
    kv_pressure: float = 0.0
    emulator_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)

    @property
    def vllm_job(self) -> str:
        return f"vllm-{self.name}"

    @property
    def sidecar_job(self) -> str:
        return f"vllm-sidecar-{self.name}"

    @property
    def vllm_instance(self) -> str:
        return f"127.0.0.1:{self.emulator_port}"

    @property
    def sidecar_instance(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def start(self, processes: Processes, workdir: Path) -> None:
        """Start the emulator, then the sidecar in front of it."""
        logs = workdir / self.name
        logs.mkdir(parents=True)
        processes.start(
            logged(
                [
                    sys.executable,
                    "-m",
                    "sidecar.cli",
                    "emulate",
                    f"--listen=127.0.0.1:{self.emulator_port}",
                    f"--metrics-profile={self.profile}",
                    f"--data-parallel={self.data_parallel}",
                    f"--model={self.model}",
                    f"--kv-pressure={self.kv_pressure}",
                    "--speed=4",
                    "--output-tokens-mean=48",
                    "--error-rate=0.02",
                ],
                logs / "emulator.log",
            )
        )
        wait_for_port(self.emulator_port)
        processes.start(
            logged(
                [
                    sys.executable,
                    "-m",
                    "sidecar.cli",
                    "run",
                    f"--upstream=http://127.0.0.1:{self.emulator_port}",
                    f"--listen=127.0.0.1:{self.proxy_port}",
                    f"--admin-listen=127.0.0.1:{self.admin_port}",
                    "--scrape-interval=1",
                    "--sample-rate=0.5",
                    "--upload-batch-max-seconds=2",
                    f"--samples-dir={logs / 'samples'}",
                    f"--spool-dir={logs / 'spool'}",
                    "--log-format=json",
                ],
                logs / "sidecar.log",
            )
        )
        wait_for_port(self.admin_port)
        try:
            wait_for_port(self.proxy_port)
        except TimeoutError as exc:
            raise TimeoutError(
                f"vllm-sidecar run does not serve the proxy on --listen: {exc}"
            ) from None


class Prometheus:
    """A real Prometheus scraping the stacks every second, queried over its HTTP API."""

    def __init__(self, stacks: Sequence[Stack], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stacks = stacks
        self._workdir = workdir / "prometheus"

    def start(self, processes: Processes) -> None:
        """Write the config and rule file, start the server and wait until it is ready."""
        self._workdir.mkdir(parents=True)
        rules = self._workdir / "canary.rules.yaml"
        rules.write_text(yaml.safe_dump(CANARY_RULES), encoding="utf-8")
        jobs = []
        for stack in self._stacks:
            jobs.append({"job_name": stack.vllm_job, "targets": [stack.vllm_instance]})
            jobs.append({"job_name": stack.sidecar_job, "targets": [stack.sidecar_instance]})
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": job["job_name"], "static_configs": [{"targets": job["targets"]}]}
                for job in jobs
            ],
        }
        config_file = self._workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        processes.start(
            logged(
                [
                    "prometheus",
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={self._workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                self._workdir / "prometheus.log",
            )
        )
        wait_for_port(self.port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise TimeoutError("Prometheus did not become ready")

    def _get(self, path: str, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        return body

    def query(self, expr: str, *, instant: bool, window: float = 30.0) -> dict[str, Any]:
        """Evaluate like Grafana: an instant query, or a range query over the last ``window``."""
        now = time.time()
        if instant:
            return self._get("/api/v1/query", [("query", expr), ("time", f"{now:.3f}")])
        return self._get(
            "/api/v1/query_range",
            [
                ("query", expr),
                ("start", f"{now - window:.3f}"),
                ("end", f"{now:.3f}"),
                ("step", "2"),
            ],
        )

    def label_values(self, label: str, match: str) -> list[str]:
        """What a ``label_values(match, label)`` template variable would offer."""
        body = self._get(f"/api/v1/label/{label}/values", [("match[]", match)])
        assert body["status"] == "success", body
        return list(body["data"])


def logged(argv: Sequence[str], log: Path) -> list[str]:
    """``argv`` with stdout and stderr appended to ``log`` by the shell, which then execs it.

    The file is opened by the child, not by us, so no file object is left open in the test.
    """
    return ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(log), *argv]


def finite_values(body: dict[str, Any]) -> list[float]:
    """Every finite sample value in a successful query answer (vector, matrix or scalar)."""
    data = body.get("data", {})
    result = data.get("result", [])
    samples: list[Any] = []
    if data.get("resultType") == "scalar":
        samples = [result]
    for series in result if isinstance(result, list) else []:
        if "value" in series:
            samples.append(series["value"])
        samples.extend(series.get("values", []))
    values = [float(sample[1]) for sample in samples]
    return [value for value in values if math.isfinite(value)]


class Load:
    """Chat completions through every sidecar's proxy, ``workers`` at a time, until stopped."""

    def __init__(self, stacks: Sequence[Stack], workers: int = 4) -> None:
        self._stacks = stacks
        self._workers = workers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stop = asyncio.Event()
        self._main: concurrent.futures.Future[list[int]] | None = None
        self.completed: list[int] = []

    def start(self) -> None:
        """Start sending in the background."""
        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    def stop(self) -> None:
        """Stop sending, wait for the workers and close the loop (also if never started)."""
        if self._main is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self.completed = self._main.result(timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    async def _run(self) -> list[int]:
        clients = [
            openai.AsyncOpenAI(
                base_url=f"http://127.0.0.1:{stack.proxy_port}/v1",
                api_key="dashboard-test",
                max_retries=0,
                timeout=30,
            )
            for stack in self._stacks
        ]
        try:
            counts = await asyncio.gather(
                *(
                    self._worker(client, stack.model, seed)
                    for client, stack in zip(clients, self._stacks, strict=True)
                    for seed in range(self._workers)
                )
            )
        finally:
            for client in clients:
                await client.close()
        return list(counts)

    async def _worker(self, client: openai.AsyncOpenAI, model: str, seed: int) -> int:
        rng = random.Random(seed)
        done = 0
        while not self._stop.is_set():
            messages: list[Any] = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": f"question {rng.randrange(10_000)} " * rng.randint(1, 40),
                },
            ]
            with contextlib.suppress(openai.APIError):
                if rng.random() < 0.7:
                    stream = await client.chat.completions.create(
                        model=model,
                        messages=messages,
                        max_tokens=rng.randint(8, 64),
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    async for _chunk in stream:
                        pass
                else:
                    await client.chat.completions.create(
                        model=model, messages=messages, max_tokens=rng.randint(8, 64)
                    )
                done += 1
        return done
