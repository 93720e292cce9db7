"""The importable load generator: ``report = await run_load(LoadOptions(target=url, ...))``.

A run is bounded by ``requests`` (how many to start), ``duration`` (seconds), or both; when the
duration ends, requests still in flight are cancelled (the server sees client disconnects) unless
``drain`` is set. Prompts are synthetic and deterministic (seeded by ``seed`` and the request
number), and each one is different, so a prefix cache cannot make the run look cheaper than it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from sidecar.loadgen.client import Endpoint, RequestResult, RequestSpec, send
from sidecar.loadgen.profiles import LoadProfile, ProfileName
from sidecar.loadgen.report import LoadReport, Progress, Tally

_WORDS = (
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"),
    *("juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"),
    *("sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"),
    *("measure", "explain", "summarise", "compare", "describe", "list", "outline"),
    *("the", "a", "of", "and", "with", "for", "about", "between"),
)
_TICK_SECONDS = 0.05


class LoadError(RuntimeError):
    """The run could not start (target unreachable, no model served)."""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """One load run. ``target`` is the server's base URL (``/v1`` is optional)."""

    target: str
    profile: ProfileName = "steady"
    concurrency: int = 8
    requests: int | None = None
    duration: float | None = None
    ramp_seconds: float | None = None
    """Ramp length; default: the whole duration (or 30 s when only ``requests`` bounds the run)."""
    burst_seconds: float = 5.0
    idle_seconds: float = 5.0
    endpoint: Endpoint = "chat"
    stream: bool = True
    model: str | None = None
    """None = the first model ``GET /v1/models`` lists."""
    prompt_words: int = 200
    max_tokens: int = 128
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    """Seconds one request may take before it counts as a ``timeout`` error."""
    seed: int = 0
    drain: bool = False

    def __post_init__(self) -> None:
        if self.requests is None and self.duration is None:
            raise ValueError("a load run needs a bound: requests, duration, or both")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"duration must be > 0 seconds, got {self.duration}")
        if self.prompt_words < 1 or self.max_tokens < 1:
            raise ValueError("prompt_words and max_tokens must be >= 1")
        if not self.timeout > 0:
            raise ValueError("timeout must be > 0")
        if not self.target.startswith(("http://", "https://")):
            raise ValueError(f"target must be an http(s) URL, got {self.target!r}")
        self.load_profile()

    def load_profile(self) -> LoadProfile:
        ramp = self.ramp_seconds if self.ramp_seconds is not None else (self.duration or 30.0)
        return LoadProfile(
            self.profile, self.concurrency, ramp, self.burst_seconds, self.idle_seconds
        )

    @property
    def base_url(self) -> str:
        return self.target.rstrip("/").removesuffix("/v1")


def make_prompt(seed: int, index: int, words: int) -> str:
    """A deterministic, unique prompt of about ``words`` words."""
    rng = random.Random(f"{seed}:{index}")  # noqa: S311 - synthetic text, not security
    body = " ".join(rng.choice(_WORDS) for _ in range(max(words - 2, 1)))
    return f"Request {index}: {body}"


async def discover_model(session: aiohttp.ClientSession, base_url: str) -> str:
    """The first model the server lists."""
    try:
        async with session.get(base_url + "/v1/models") as response:
            if response.status != 200:
                raise LoadError(f"GET {base_url}/v1/models answered HTTP {response.status}")
            data = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise LoadError(f"cannot reach {base_url}: {exc}") from exc
    models = data.get("data") if isinstance(data, dict) else None
    if not models:
        raise LoadError(f"{base_url}/v1/models lists no model")
    return str(models[0]["id"])


async def run_load(
    options: LoadOptions,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 0.5,
) -> LoadReport:
    """Run the load described by ``options``; ``on_progress`` is called every interval."""
    headers: tuple[tuple[str, str], ...] = ()
    if options.api_key:
        headers = (("Authorization", f"Bearer {options.api_key}"),)
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers=dict(headers)
    ) as session:
        model = options.model or await discover_model(session, options.base_url)
        spec = RequestSpec(
            options.base_url, model, options.endpoint, options.stream, options.max_tokens
        )
        run = _LoadRun(session, spec, options, on_progress, progress_interval)
        return await run.run()


class _LoadRun:
    """The closed loop of one run: keep the profile's target in flight, tally what comes back."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        spec: RequestSpec,
        options: LoadOptions,
        on_progress: Callable[[Progress], None] | None,
        progress_interval: float,
    ) -> None:
        self.session = session
        self.spec = spec
        self.options = options
        self.profile = options.load_profile()
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.tally = Tally()
        self.in_flight: set[asyncio.Task[RequestResult]] = set()
        self.wake = asyncio.Event()
        self.start = time.monotonic()

    def _finished(self, task: asyncio.Task[RequestResult]) -> None:
        self.in_flight.discard(task)
        if task.cancelled():
            self.tally.cancelled += 1
        elif task.exception() is not None:
            self.tally.errors["exception"] += 1
        else:
            self.tally.add(task.result())
        self.wake.set()

    def _report_progress(self, now: float) -> None:
        if self.on_progress is not None:
            elapsed = now - self.start
            self.on_progress(
                Progress(
                    elapsed,
                    self.profile.name,
                    self.profile.target(elapsed),
                    len(self.in_flight),
                    self.tally,
                )
            )

    def _more(self) -> bool:
        return self.options.requests is None or self.tally.sent < self.options.requests

    def _launch(self) -> None:
        options = self.options
        prompt = make_prompt(options.seed, self.tally.sent, options.prompt_words)
        task = asyncio.create_task(send(self.session, self.spec, prompt))
        self.tally.sent += 1
        self.in_flight.add(task)
        task.add_done_callback(self._finished)

    async def run(self) -> LoadReport:
        options = self.options
        deadline = self.start + options.duration if options.duration else math.inf
        next_progress = self.start
        while True:
            now = time.monotonic()
            if now >= deadline or (not self._more() and not self.in_flight):
                break
            target = self.profile.target(now - self.start)
            while self._more() and len(self.in_flight) < target:
                self._launch()
            if now >= next_progress:
                self._report_progress(now)
                next_progress = now + self.progress_interval
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.wake.wait(), min(_TICK_SECONDS, max(deadline - now, 0.0))
                )
        if self.in_flight:
            if not options.drain:
                for task in self.in_flight:
                    task.cancel()
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        elapsed = time.monotonic() - self.start
        self._report_progress(time.monotonic())
        return LoadReport(self.profile.name, self.profile.concurrency, elapsed, self.tally)
