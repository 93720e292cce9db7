"""Helpers every test area shares: free loopback ports and child processes cleaned up by PID."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

TEST_DATA = Path(__file__).resolve().parent / "data"
"""Test data copied into the repo (vLLM pages, OpenMetrics corpus, CRDs); see data/README.md."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    condition: Callable[[], object],
    within: float = 10.0,
    what: str = "condition",
    every: float = 0.005,
) -> None:
    """Poll ``condition`` every few milliseconds; fail the test if it stays false ``within`` s.

    The one way tests wait for something to happen: no fixed sleeps as synchronisation.
    ``condition`` may be a coroutine function (polled with ``await``); conditions that ask a
    server over HTTP poll less often (``every``) so the polling does not load the box.
    """
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"{what} not met within {within} s"
        await asyncio.sleep(every)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    msg = f"nothing listened on 127.0.0.1:{port} within {timeout}s"
    raise TimeoutError(msg)


class Processes:
    """Starts child processes in their own process group and kills every one of them at exit."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        out = log.open("wb") if log else None
        try:
            child = subprocess.Popen(
                list(argv),
                env={**os.environ, **(env or {})},
                cwd=cwd,
                stdout=out or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy of the descriptor
        self._children.append(child)
        return child

    def sidecar(self, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Run ``vllm-sidecar ARGS`` from this interpreter."""
        return self.start([sys.executable, "-m", "sidecar.cli", *args], **kwargs)  # type: ignore[arg-type]

    def stop_all(self) -> None:
        for child in self._children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
