"""Many long streams through the sidecar inside a memory limit: ``python -m bench.memory``.

The issue's scenario: 200 concurrent 20k-token streams from the emulator, at sampling 0.01 and
1.0, with the sidecar in a 512 MiB memory cgroup (cgroup v1 ``memory.limit_in_bytes`` under this
process's own cgroup when the machine lets one be made; otherwise no hard limit and only the
RSS is measured, which the table says). It prints, per rate: streams completed, bytes relayed,
the sidecar's peak RSS (``VmHWM``), the cgroup's peak usage and OOM kills, the sampler budget's
peak reservation and the budget itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import aiohttp

from bench.procstat import memory
from bench.targets import free_port, wait_for_port

MIB = 1024 * 1024
MODEL = "bench-model"


class Cgroup:
    """A cgroup v1 memory group below this process's own, or nothing if none can be made."""

    def __init__(self, limit_bytes: int) -> None:
        self.path: Path | None = None
        own = _own_memory_cgroup()
        if own is None:
            return
        path = own / f"bench-memory-{os.getpid()}"
        try:
            path.mkdir()
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        except OSError:
            return
        self.path = path

    def add(self, pid: int) -> None:
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(pid))

    def peak(self) -> int | None:
        return None if self.path is None else int(self._read("memory.max_usage_in_bytes"))

    def oom_kills(self) -> int | None:
        if self.path is None:
            return None
        for line in self._read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return int(self._read("memory.failcnt") != "0")

    def _read(self, name: str) -> str:
        assert self.path is not None
        return (self.path / name).read_text().strip()

    def remove(self) -> None:
        if self.path is not None:
            self.path.rmdir()


def _own_memory_cgroup() -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidate = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            return candidate if candidate.is_dir() else None
    return None


@dataclass
class Result:
    rate: float
    completed: int
    streams: int
    relayed_bytes: int
    peak_rss: int
    cgroup_peak: int | None
    oom_kills: int | None
    budget_peak: int
    budget: int
    exit_code: int | None
    seconds: float


async def _stream(http: aiohttp.ClientSession, url: str, tokens: int, n: int) -> int:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"write a very long story, number {n}"}],
        "max_tokens": tokens,
        "stream": True,
    }
    size = 0
    async with http.post(url, json=body) as response:
        response.raise_for_status()
        async for piece in response.content.iter_any():
            size += len(piece)
            tail = piece[-14:]
    return size if tail == b"data: [DONE]\n\n" else -1


def _gauge(admin: str, name: str) -> float:
    with urllib.request.urlopen(f"{admin}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def _load(
    url: str, admin: str, pid: int, streams: int, tokens: int
) -> tuple[int, int, int, int]:
    """Run the streams; return (completed, bytes, peak RSS, peak budget reservation)."""
    peak_rss = budget_peak = 0
    done = False

    async def watch() -> None:
        nonlocal peak_rss, budget_peak
        while not done:
            try:
                peak_rss = max(peak_rss, memory([pid]).peak)
                gauge = await asyncio.to_thread(_gauge, admin, "vllm_sidecar_sample_memory_bytes")
                budget_peak = max(budget_peak, int(gauge))
            except (OSError, ValueError):
                return  # the sidecar is gone (an OOM kill shows in the table)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    connector = aiohttp.TCPConnector(limit=streams)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        results = await asyncio.gather(
            *(_stream(http, url, tokens, n) for n in range(streams)), return_exceptions=True
        )
    done = True
    await watcher
    sizes = [size for size in results if isinstance(size, int) and size > 0]
    return len(sizes), sum(sizes), peak_rss, budget_peak


def run_one(root: Path, rate: float, args: argparse.Namespace) -> Result:
    code = args.code or Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(code)}
    logs = root / f"rate-{rate}"
    logs.mkdir()
    emulator_port, port, admin_port = free_port(), free_port(), free_port()
    emulator_argv = [
        sys.executable, "-m", "sidecar.cli", "emulate",
        "--listen", f"127.0.0.1:{emulator_port}", "--model", MODEL, "--zero-latency",
        "--max-num-seqs", str(args.streams), "--max-model-len", str(args.tokens + 1024),
        "--num-gpu-blocks", str(args.streams * (args.tokens + 1024) // 16 + 64),
        "--max-num-batched-tokens", str(max(8192, args.streams * 64)),
        "--output-tokens-mean", str(args.tokens * 4), "--output-tokens-sigma", "0",
        "--log-level", "warning",
    ]  # fmt: skip
    emulator = subprocess.Popen(
        emulator_argv,
        stdout=(logs / "emulator.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=code,
        start_new_session=True,
    )
    cgroup = Cgroup(args.limit_mib * MIB)
    sidecar_argv = [
        sys.executable, "-m", "sidecar.cli", "run",
        "--upstream", f"http://127.0.0.1:{emulator_port}",
        "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
        "--samples-dir", str(logs / "samples"), "--spool-dir", str(logs / "spool"),
        "--sample-rate", str(rate), "--log-format", "json", "--log-level", "warning",
    ]  # fmt: skip
    sidecar = subprocess.Popen(
        sidecar_argv,
        stdout=(logs / "sidecar.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=code,
        start_new_session=True,
    )
    cgroup.add(sidecar.pid)
    try:
        wait_for_port(emulator_port, emulator, logs / "emulator.log", 60)
        wait_for_port(port, sidecar, logs / "sidecar.log", 60)
        wait_for_port(admin_port, sidecar, logs / "sidecar.log", 60)
        admin = f"http://127.0.0.1:{admin_port}"
        budget = int(_gauge(admin, "vllm_sidecar_sample_memory_limit_bytes"))
        started = time.monotonic()
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        completed, relayed, peak_rss, budget_peak = asyncio.run(
            _load(url, admin, sidecar.pid, args.streams, args.tokens)
        )
        seconds = time.monotonic() - started
        with_peak = memory([sidecar.pid]).peak if sidecar.poll() is None else peak_rss
        return Result(
            rate, completed, args.streams, relayed, max(peak_rss, with_peak), cgroup.peak(),
            cgroup.oom_kills(), budget_peak, budget, sidecar.poll(), seconds,
        )  # fmt: skip
    finally:
        for child in (sidecar, emulator):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in (sidecar, emulator):
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        cgroup.remove()


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / MIB:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--limit-mib", type=int, default=512)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 1.0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--code", type=Path, help="run the sidecar of another checkout (baseline)")
    args = parser.parse_args()
    with TemporaryDirectory(prefix="bench-memory-") as directory:
        results = [run_one(Path(directory), rate, args) for rate in args.rates]
    limited = results[0].cgroup_peak is not None
    print(
        f"{args.streams} streams x {args.tokens} tokens, "
        + (f"cgroup v1 memory limit {args.limit_mib} MiB" if limited else "no cgroup: RSS only")
    )
    print("| sample rate | streams completed | relayed | seconds | peak RSS | cgroup peak "
          "| OOM kills | sidecar exit | budget peak / budget |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.rate} | {r.completed}/{r.streams} | {_mib(r.relayed_bytes)} | {r.seconds:.0f} "
            f"| {_mib(r.peak_rss)} | {_mib(r.cgroup_peak)} | {r.oom_kills if limited else '—'} "
            f"| {'running' if r.exit_code is None else r.exit_code} "
            f"| {_mib(r.budget_peak)} / {_mib(r.budget)} |"
        )
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))


if __name__ == "__main__":
    main()
