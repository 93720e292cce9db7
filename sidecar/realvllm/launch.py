"""Start and stop one real ``vllm serve`` on 127.0.0.1, its temp and cache files in a work dir.

vLLM on CPU must have its KV cache sized (unsized, it takes most of the RAM and the kernel kills
the worker), and left alone it scatters ZMQ sockets and ``vllm_dist_*`` in /tmp and compile caches
in ~/.cache: every such path is pointed into ``workdir``. Proxy variables point at a dead loopback
port so nothing can leave the machine, and the server runs in its own process group so ``stop``
takes the API server, EngineCore and worker down together, by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.realvllm.install import RealVllmEnv

SERVED_MODEL = "tiny-llama"
DEAD_PROXY = "http://127.0.0.1:9"
DEFAULT_FLAGS = ("--max-model-len", "2048", "--kv-cache-memory-bytes", "268435456")


class LaunchError(RuntimeError):
    """vLLM did not become healthy (the message carries the tail of its log)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline_environment(workdir: Path) -> dict[str, str]:
    """The environment for vLLM: offline, no telemetry, every temp/cache path under ``workdir``."""
    tmp = workdir / "tmp"
    caches = {
        "TMPDIR": tmp,
        "VLLM_RPC_BASE_PATH": tmp,
        "VLLM_CACHE_ROOT": workdir / "cache" / "vllm",
        "TORCHINDUCTOR_CACHE_DIR": workdir / "cache" / "inductor",
        "XDG_CACHE_HOME": workdir / "cache",
    }
    for path in caches.values():
        path.mkdir(parents=True, exist_ok=True)
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith("VLLM_")
    }
    environ.update({key: str(path) for key, path in caches.items()})
    environ.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return environ


@dataclass
class VllmServer:
    """One ``vllm serve``: build with :meth:`start`, then ``url``; :meth:`stop` ends it."""

    env: RealVllmEnv
    model: Path
    workdir: Path
    flags: tuple[str, ...] = DEFAULT_FLAGS
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "vllm.log"

    def argv(self) -> list[str]:
        return [
            str(self.env.vllm),
            "serve",
            str(self.model),
            "--served-model-name",
            SERVED_MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--enforce-eager",
            *self.flags,
        ]

    def start(self, timeout: float = 300.0) -> VllmServer:
        """Spawn vLLM and wait (bounded) for ``GET /health`` to answer 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                self.argv(),
                env=offline_environment(self.workdir),
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_healthy(timeout)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process is not None and self.process.poll() is not None:
                raise LaunchError(f"vLLM exited ({self.process.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"vLLM not healthy within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """PIDs in the server's process group: API server(s), EngineCore, workers."""
        if self.process is None:
            return []
        group = os.getpgid(self.process.pid) if self.process.poll() is None else self.process.pid
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ProcessLookupError):
                    if os.getpgid(int(entry.name)) == group:
                        found.append(int(entry.name))
        return found

    def pid_of(self, name: str) -> int | None:
        """The PID of the group member whose command line contains ``name`` (e.g. EngineCore).

        vLLM renames its children (``VLLM::EngineCore``); ``comm`` is cut at 15 characters, so
        the command line is read instead.
        """
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return pid
        return None

    def stop(self, grace: float = 15.0) -> None:
        """TERM the process group, KILL what is left after ``grace`` seconds."""
        if self.process is None or self.process.poll() is not None:
            self._kill_group()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        self._kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self._group_alive() and time.monotonic() < deadline:  # children exit after a KILL
            time.sleep(0.05)

    def _group_alive(self) -> bool:
        if self.process is None:
            return False
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _kill_group(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def start_server(
    env: RealVllmEnv, model: Path, workdir: Path, flags: Sequence[str] = DEFAULT_FLAGS
) -> VllmServer:
    """Start a server with ``flags`` (vLLM CLI flags after the fixed ones) and wait for health."""
    return VllmServer(env=env, model=model, workdir=workdir, flags=tuple(flags)).start()
