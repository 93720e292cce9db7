"""A real Prometheus scraping one backend (job ``vllm``) with the rules the sidecar ships."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from sidecar.alerting import generate
from tests.realvllm.drill import until
from tests.support import Processes, free_port, wait_for_port

PROMETHEUS = "/usr/bin/prometheus"


class Prometheus:
    """Started by :meth:`start`; ask it with :meth:`query` and :meth:`alerts`."""

    def __init__(self, workdir: Path, target: str, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.target = target.removeprefix("http://")
        self.settings = settings
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, processes: Processes) -> Prometheus:
        """Render the rules from the same settings the sidecar runs with, then scrape every 1 s."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        settings_file = self.workdir / "sidecar.yaml"
        settings_file.write_text(yaml.safe_dump(self.settings))
        args = ["--config", str(settings_file), "--out-dir", str(self.workdir)]
        assert generate.main(args) == 0
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.workdir / generate.RULES_FILE)],
            "scrape_configs": [
                {"job_name": "vllm", "static_configs": [{"targets": [self.target]}]}
            ],
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))
        processes.start(
            [
                PROMETHEUS,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            log=self.workdir / "prometheus.log",
        )
        await asyncio.to_thread(wait_for_port, self.port, 30.0)
        await until(self._ready, "Prometheus to be ready", within=30)
        return self

    async def _ready(self) -> bool:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/-/ready") as reply:
            return reply.status == 200

    async def _get(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}{path}", params=params) as reply,
        ):
            assert reply.status == 200, await reply.text()
            return (await reply.json())["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self._get("/api/v1/query", query=expr))["result"]
        return result

    async def value(self, expr: str) -> float | None:
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else None

    async def scraped_after(self, instant: float) -> bool:
        """Whether every target's last scrape happened after ``instant`` (Unix seconds)."""
        oldest = await self.value("min(timestamp(up))")
        return oldest is not None and oldest > instant

    async def alerts(self, name: str, state: str = "firing") -> list[dict[str, str]]:
        found = (await self._get("/api/v1/alerts"))["alerts"]
        return [
            a["labels"] for a in found if a["labels"]["alertname"] == name and a["state"] == state
        ]
