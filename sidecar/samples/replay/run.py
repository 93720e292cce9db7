"""Send the selected requests to the target: bounded concurrency, a paced rate, a journal.

At most ``concurrency`` requests are in flight; request *starts* are spaced ``1 / rate`` apart
(no bursts after a slow answer). Each send is journalled before it goes out and its answer after
it came back (see :mod:`.journal` for the at-most-once resume). All sends run in one
``asyncio.TaskGroup``, so a failure of the machinery itself stops the run instead of being lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from sidecar.samples.progress import CountProgress, SilentCount
from sidecar.samples.replay.client import send, target_url
from sidecar.samples.replay.journal import Journal
from sidecar.samples.replay.plan import ReplayItem
from sidecar.samples.replay.store import candidate_record, now, write_tree

MANIFEST = ".replay.json"


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay (flags of ``samples replay``)."""

    target: URL
    concurrency: int = 4
    rate: float | None = None
    """Requests started per second; None = as fast as ``concurrency`` allows."""
    api_key: str | None = None
    temperature: float | None = None
    seed: int | None = None
    target_model: str | None = None
    label: str = "candidate"
    timeout_seconds: float = 300.0
    retry_interrupted: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("--concurrency must be >= 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("--rate must be > 0")
        if self.target.scheme not in ("http", "https") or not self.target.host:
            raise ValueError(f"--target must be an http(s) URL, got {self.target}")

    def body_for(self, item: ReplayItem) -> dict[str, Any]:
        """The request as it is re-sent (overrides applied; usage asked for when streaming)."""
        body = dict(item.body)
        body["stream"] = item.stream
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.seed is not None:
            body["seed"] = self.seed
        if self.target_model is not None:
            body["model"] = self.target_model
        if item.stream and not isinstance(body.get("stream_options"), dict):
            body["stream_options"] = {"include_usage": True}
        return body

    def fingerprint(self, source: str, selection: dict[str, Any]) -> str:
        """A run id that is the same for the same replay, so re-running it resumes it."""
        what = {
            "source": source,
            "target": str(self.target),
            "selection": selection,
            "temperature": self.temperature,
            "seed": self.seed,
            "target_model": self.target_model,
            "label": self.label,
        }
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
        return f"replay-{digest[:12]}"


@dataclass(slots=True)
class ReplaySummary:
    """What a run (or resume) did."""

    run_dir: Path
    selected: int = 0
    already_done: int = 0
    sent: int = 0
    failed: int = 0
    interrupted_left_out: int = 0
    objects: int = 0
    seconds: float = 0.0


class Pacer:
    """Spaces request starts ``1 / rate`` seconds apart (no catch-up bursts)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 0.0 if rate is None else 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self.interval <= 0:
            return
        async with self._lock:
            moment = time.monotonic()
            if self._next > moment:
                await asyncio.sleep(self._next - moment)
            self._next = max(self._next, moment) + self.interval


def write_manifest(
    run_dir: Path, source: str, options: ReplayOptions, extra: dict[str, Any]
) -> None:
    """Note what this run replays against what (no credentials)."""
    data = {
        "source": source,
        "target": str(options.target),
        "label": options.label,
        "temperature": options.temperature,
        "seed": options.seed,
        "target_model": options.target_model,
        **extra,
    }
    path = run_dir / MANIFEST
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest ({} when there is none)."""
    try:
        value = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


async def replay(
    items: list[ReplayItem],
    run_dir: Path,
    options: ReplayOptions,
    progress: CountProgress | None = None,
) -> ReplaySummary:
    """Replay ``items`` into ``run_dir``, skipping what an earlier run of it already did."""
    progress = progress or SilentCount()
    summary = ReplaySummary(run_dir, selected=len(items))
    state = Journal.load(run_dir)
    todo: list[ReplayItem] = []
    for item in items:
        if item.request_id in state.answered:
            summary.already_done += 1
        elif item.request_id in state.interrupted and not options.retry_interrupted:
            summary.interrupted_left_out += 1
        else:
            todo.append(item)
    journal = Journal(run_dir)
    pacer = Pacer(options.rate)
    began = time.monotonic()

    async def one(session: aiohttp.ClientSession, item: ReplayItem) -> None:
        await pacer.wait()
        body = options.body_for(item)
        url = target_url(options.target, item.endpoint)
        journal.sending(item.request_id)
        started = now()
        answer = await send(
            session,
            url,
            body,
            api_key=options.api_key,
            timeout_seconds=options.timeout_seconds,
            replay_of=item.request_id,
        )
        record = candidate_record(item, body, answer, started, options.label)
        journal.answered(record)
        state.answered[item.request_id] = record
        summary.sent += 1
        failed = record["error"] is not None or answer.status >= 400
        summary.failed += failed
        progress.advance(failed)

    async def worker(session: aiohttp.ClientSession, queue: Iterator[ReplayItem]) -> None:
        for item in queue:
            await one(session, item)

    progress.start(len(todo))
    connector = aiohttp.TCPConnector(limit=options.concurrency)
    queue = iter(todo)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, trust_env=False) as session,
            asyncio.TaskGroup() as group,
        ):
            for _ in range(min(options.concurrency, len(todo))):
                group.create_task(worker(session, queue))
    finally:
        journal.close()
        progress.finish()
        summary.seconds = time.monotonic() - began
        summary.objects = write_tree(run_dir, list(state.answered.values()))
    return summary
