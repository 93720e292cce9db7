"""Fixtures for the alerting tests: a real Alertmanager (Debian's prometheus-alertmanager)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Processes, free_port

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
QUICK_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


class Alertmanager:
    """One Alertmanager process on a fixed loopback port; can be stopped and started again."""

    def __init__(self, processes: Processes, workdir: Path, config: str = QUICK_CONFIG) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._processes = processes
        self._workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._config = workdir / "alertmanager.yml"
        self._config.write_text(config)
        self._child: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> None:
        """Start (again) on the same port and storage, and wait until it is ready."""
        self._child = self._processes.start(
            [
                ALERTMANAGER,
                f"--config.file={self._config}",
                f"--storage.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            log=self._workdir / "alertmanager.log",
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        log = (self._workdir / "alertmanager.log").read_text()
        raise TimeoutError(f"Alertmanager not ready within {timeout}s:\n{log}")

    def stop(self) -> None:
        """Kill this Alertmanager (its own process group) and wait for it."""
        if self._child is not None and self._child.poll() is None:
            os.killpg(self._child.pid, signal.SIGKILL)
            self._child.wait(timeout=10)
        self._child = None

    def alerts(self, **query: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (with filters such as active=false)."""
        params = "&".join(f"{key}={value}" for key, value in query.items())
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{params}", timeout=5) as response:
            return list(json.load(response))

    def wait_for(self, predicate: Any, timeout: float = 10.0, **query: str) -> list[dict[str, Any]]:
        """Poll the alert list until ``predicate(alerts)`` holds; returns that list."""
        deadline = time.monotonic() + timeout
        alerts: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            alerts = self.alerts(**query)
            if predicate(alerts):
                return alerts
            time.sleep(0.1)
        raise AssertionError(f"condition not met within {timeout}s; last alerts: {alerts}")


@pytest.fixture
def alertmanager(processes: Processes, tmp_path: Path) -> Iterator[Alertmanager]:
    """A running Alertmanager with a quick route and no receivers that send anything."""
    manager = Alertmanager(processes, tmp_path)
    manager.start()
    yield manager
    manager.stop()
