"""The load client: aiohttp on uvloop in a process of its own, driven one command at a time.

``python -m bench.client`` reads one JSON command per line on stdin and answers one JSON line
on stdout, so the orchestrator's own work never shares an event loop with the measurement.

Commands:

* ``idle``: one stream at a time, rotating over the targets (direct, nginx, sidecar...) request
  by request, so all targets see the same machine state; returns each target's TTFTs.
* ``streams``: ``concurrency`` closed-loop streams against one target (each client starts its
  next request when its stream ends; lengths vary +-25% around ``tokens`` and the clients start
  spread over the warm-up, so streams do not move in lockstep); after ``warmup`` seconds a
  window of ``window`` seconds counts the events received, the TTFT of requests started inside
  it (they run to their end after the window closes), and the CPU time and memory of the
  target's processes (and of the upstream, and of this client). It also reports the events
  relayed after the window while the streams in flight finish, and the target's CPU counters
  at the window's start, so the orchestrator can charge work a target defers (the sampler's
  queue) to the events that caused it.

TTFT here is what an application sees: from just before the request is sent to the arrival of
the read holding the first content event (the second event of a chat stream, after the role
event). Events are counted by their ``\\n\\n`` terminators, without parsing JSON, so the client
stays cheaper per event than anything it measures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any

import aiohttp

from bench.procstat import cpu_times, memory
from bench.upstream import MODEL, STEP_HEADER

PROMPT = (
    "You are reviewing a pull request for a small Python service that relays streamed answers "
    "from a language model to its callers. Summarise the change, list any risks you see in the "
    "error handling, and suggest one test that would catch a regression in the streaming path. "
    "Keep the answer short: a paragraph and a bulleted list are enough."
)
_DONE = b"data: [DONE]\n\n"
_DONE_LENGTH = len(_DONE)
DRAIN_SECONDS = 30.0
"""How long streams in flight at the end of a window may take to finish before being cut."""


def request_body(tokens: int) -> bytes:
    """A typical chat request (about 700 bytes) asking for ``tokens`` streamed tokens."""
    return json.dumps(
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a careful senior engineer."},
                {"role": "user", "content": PROMPT},
            ],
            "stream": True,
            "max_tokens": tokens,
            "temperature": 0.7,
        }
    ).encode()


@dataclass(slots=True)
class Window:
    """What the streams count while ``open`` is set."""

    open: bool = False
    draining: bool = False
    events: int = 0
    after: int = 0
    """Events relayed after the window closed, while the streams in flight finish."""
    completed: int = 0
    ttfts: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    expected_events: int,
    window: Window,
) -> float | None:
    """Send one request and read its stream to the end; returns its TTFT (None on failure)."""
    counted = window.open
    started = perf_counter()
    ttft: float | None = None
    events = 0
    ended_with_newline = False
    tail = b""  # the stream's last bytes, whatever the read boundaries
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                await response.read()
                window.error(f"status_{response.status}")
                return None
            read = response.content.readany
            while chunk := await read():
                count = chunk.count(b"\n\n")
                if ended_with_newline and chunk[:1] == b"\n":
                    count += 1
                ended_with_newline = chunk[-1:] == b"\n"
                events += count
                if window.open:
                    window.events += count
                elif window.draining:
                    window.after += count
                if ttft is None and events >= 2:
                    ttft = perf_counter() - started
                tail = (tail + chunk if len(chunk) < _DONE_LENGTH else chunk)[-_DONE_LENGTH:]
    except (aiohttp.ClientError, OSError) as exc:
        window.error(type(exc).__name__)
        return None
    if events != expected_events or not tail.endswith(_DONE):
        window.error("incomplete_stream")
        return None
    if window.open:
        window.completed += 1
    if counted and ttft is not None:  # started inside the window, wherever it ended
        window.ttfts.append(ttft)
    return ttft


def _lengths(tokens: int) -> list[int]:
    """Stream lengths of the concurrent phases: ``tokens`` on average, +-25%.

    Equal lengths would keep closed-loop streams in lockstep (all ending, and all starting
    anew, on the same engine step), which no real load does.
    """
    spread = tokens // 4
    return list(range(max(1, tokens - spread), tokens + spread + 1))


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600))


def _headers(step_ms: float) -> dict[str, str]:
    return {"Content-Type": "application/json", STEP_HEADER: repr(float(step_ms))}


async def idle(command: dict[str, Any]) -> dict[str, Any]:
    """One stream at a time over all targets in rotation; TTFTs per target."""
    targets: dict[str, str] = command["targets"]
    tokens = int(command["tokens"])
    body = request_body(tokens)
    headers = _headers(float(command.get("step_ms", 0.0)))
    names = list(targets)
    windows = {name: Window(open=True) for name in names}
    sessions = {name: _session(4) for name in names}
    try:
        for index in range(int(command["warmup"]) + int(command["requests"])):
            measuring = index >= int(command["warmup"])
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                window = windows[name]
                window.open = measuring
                await one_stream(sessions[name], targets[name], body, headers, tokens + 2, window)
    finally:
        for session in sessions.values():
            await session.close()
    return {name: {"ttfts": w.ttfts, "errors": w.errors} for name, w in windows.items()}


async def streams(command: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop concurrent streams against one target, measured over a window."""
    url: str = command["url"]
    concurrency = int(command["concurrency"])
    tokens = int(command["tokens"])
    pids: list[int] = command["pids"]
    upstream_pids: list[int] = command["upstream_pids"]
    step_ms = float(command["step_ms"])
    headers = _headers(step_ms)
    lengths = _lengths(tokens)
    bodies = {length: request_body(length) for length in lengths}
    window = Window()
    stopping = asyncio.Event()
    session = _session(concurrency)
    ramp = min(float(command["warmup"]), tokens * step_ms / 1000.0)

    async def client(number: int) -> None:
        pick = random.Random(number).choice
        await asyncio.sleep(ramp * number / concurrency)
        while not stopping.is_set():
            length = pick(lengths)
            await one_stream(session, url, bodies[length], headers, length + 2, window)

    workers = [asyncio.create_task(client(number)) for number in range(concurrency)]
    try:
        await asyncio.sleep(float(command["warmup"]))
        cpu_before, upstream_before = cpu_times(pids), cpu_times(upstream_pids)
        client_before = time.process_time()
        started = perf_counter()
        window.open = True
        await asyncio.sleep(float(command["window"]))
        window.open = False
        window.draining = True
        wall = perf_counter() - started
        cpu = cpu_times(pids) - cpu_before
        upstream_cpu = cpu_times(upstream_pids) - upstream_before
        client_cpu = time.process_time() - client_before
        mem = memory(pids)
        stopping.set()
        _, pending = await asyncio.wait(workers, timeout=DRAIN_SECONDS)
        for task in pending:
            task.cancel()
            window.error("cut_at_drain")
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await session.close()
    return {
        "events": window.events,
        "events_after": window.after,
        "cpu_start": asdict(cpu_before),
        "completed": window.completed,
        "wall": wall,
        "ttfts": window.ttfts,
        "errors": window.errors,
        "cpu": asdict(cpu),
        "upstream_cpu": asdict(upstream_cpu),
        "client_cpu": client_cpu,
        "rss": mem.rss,
        "peak_rss": mem.peak,
    }


COMMANDS = {"idle": idle, "streams": streams}


async def serve_commands() -> None:
    """Answer commands from stdin until it closes."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        try:
            result = {"ok": True, "result": await COMMANDS[command["op"]](command)}
        except Exception as exc:  # reported to the orchestrator, which stops the run
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main() -> None:
    try:
        import uvloop

        uvloop.run(serve_commands())
    except ImportError:
        asyncio.run(serve_commands())


if __name__ == "__main__":
    main()
