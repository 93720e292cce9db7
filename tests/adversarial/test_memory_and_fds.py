"""Memory and descriptors under attack, against the real sidecar process.

50 concurrent 16 MiB uploads while vLLM is slow, plus 1,500 idle connections, with the process
limited to 1,024 open files: the sidecar must not grow past the chart's 512 MiB memory limit,
must not run out of descriptors, must answer the clients past a budget with a clear 503, and
its admin ``/healthz`` must answer throughout.

Memory: no cgroup can be created on the test machines (cgroup v1, read-only), and an address
space limit (RLIMIT_AS) counts thread stacks and allocator arenas, not memory in use; so the
test measures the child's peak resident set (``VmHWM``) against 512 MiB instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

from tests.adversarial.raw_upstream import RawUpstream
from tests.support import Processes, free_port, wait_for_port, wait_until

UPLOADS = 50
UPLOAD_BYTES = 16 * 1024 * 1024
IDLE_CONNECTIONS = 1500
MEMORY_LIMIT = 512 * 1024 * 1024
OPEN_FILES = 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_uploads_and_idle_connections_stay_within_memory_and_descriptors(
    tmp_path: Path, processes: Processes
) -> None:
    release = asyncio.Event()

    async def slow(writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        await writer.drain()

    upstream = RawUpstream(script=slow)
    await upstream.start()
    proxy_port, admin_port = free_port(), free_port()
    command = " ".join(
        [
            f"ulimit -n {OPEN_FILES} &&",
            f"exec {sys.executable} -m sidecar.cli run",
            f"--upstream {upstream.url}",
            f"--listen 127.0.0.1:{proxy_port}",
            f"--admin-listen 127.0.0.1:{admin_port}",
            f"--spool-dir {tmp_path / 'spool'}",
            f"--samples-dir {tmp_path / 'samples'}",
            "--sample-rate 0",
            "--scrape-interval 60",
            "--client-header-timeout 60",
        ]
    )
    child = processes.start(["bash", "-c", command], log=tmp_path / "sidecar.log")
    await asyncio.to_thread(wait_for_port, admin_port)
    await asyncio.to_thread(wait_for_port, proxy_port)

    health_failures: list[str] = []
    stop_probe = asyncio.Event()

    async def probe_health() -> int:
        answered = 0
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop_probe.is_set():
                try:
                    async with http.get(f"http://127.0.0.1:{admin_port}/healthz") as response:
                        if response.status != 200:
                            health_failures.append(f"status {response.status}")
                        answered += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    health_failures.append(type(exc).__name__)
                await asyncio.sleep(0.2)
        return answered

    prober = asyncio.create_task(probe_health())
    body = b"x" * UPLOAD_BYTES
    outcomes: list[tuple[int, str]] = []

    def upload() -> None:
        """Like curl: send the whole request, then read the answer (a raw socket, so no client
        library gives up writing when an early answer arrives)."""
        head = (
            f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=120) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(head)
                sock.sendall(body)
            chunks = []
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        answer = b"".join(chunks)
        status = int(answer.split(b" ", 2)[1]) if answer else 0
        payload = answer.partition(b"\r\n\r\n")[2]
        kind = json.loads(payload)["error"]["type"] if status not in (0, 200) else ""
        outcomes.append((status, kind))

    idle: list[socket.socket] = []
    pool = ThreadPoolExecutor(UPLOADS, thread_name_prefix="upload")
    try:
        loop = asyncio.get_running_loop()
        uploads = [loop.run_in_executor(pool, upload) for _ in range(UPLOADS)]
        await wait_until(lambda: bool(upstream.requests), within=60)  # uploads are connected
        for _ in range(IDLE_CONNECTIONS):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", proxy_port))
            idle.append(sock)
        refused = await asyncio.to_thread(_count_refusals, idle)
        await asyncio.sleep(1.0)
        release.set()
        await asyncio.gather(*uploads)
        stop_probe.set()
        answered = await prober
        assert child.poll() is None, (tmp_path / "sidecar.log").read_text()[-3000:]
        rss = peak_rss(child.pid)
    finally:
        for sock in idle:
            sock.close()
        stop_probe.set()
        release.set()
        await upstream.close()
        pool.shutdown(wait=False)

    statuses = sorted(set(outcomes))
    print(
        f"peak RSS {rss / 2**20:.0f} MiB; uploads {len(outcomes)}: "
        f"{sum(s == 200 for s, _ in outcomes)} relayed, "
        f"{sum(s == 503 for s, _ in outcomes)} refused 503; "
        f"idle connections refused 503: {refused} of {IDLE_CONNECTIONS}; "
        f"/healthz answered {answered} times, failures {len(health_failures)}"
    )
    assert len(outcomes) == UPLOADS
    assert set(statuses) <= {(200, ""), (503, "ServiceUnavailableError")}, statuses
    assert any(status == 200 for status, _ in outcomes)
    assert any(status == 503 for status, _ in outcomes)
    assert refused > 0
    assert health_failures == []
    assert answered > 0
    assert rss < MEMORY_LIMIT


def _count_refusals(sockets: list[socket.socket]) -> int:
    """How many idle connections were answered with the connection budget's 503 (epoll: the
    descriptors are past select()'s 1,024)."""
    import selectors

    refused = 0
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        quiet_until = time.monotonic() + 3.0
        while time.monotonic() < quiet_until:
            events = selector.select(timeout=0.5)
            if events:
                quiet_until = time.monotonic() + 3.0
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                with contextlib.suppress(OSError):
                    if sock.recv(12).startswith(b"HTTP/1.1 503"):
                        refused += 1
    return refused
