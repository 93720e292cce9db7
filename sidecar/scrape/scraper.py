"""The scrape loop: GET vLLM's /metrics on a fixed interval, parse, keep history, count failures.

A failed scrape never stops the loop and never throws away history: it is counted by reason and
logged once per change of state. Only a failure that says *vLLM cannot serve* (no connection,
no answer in time, an error status, the connection dropped mid-page) makes ``/readyz`` answer
503 and ``vllm_sidecar_upstream_up`` 0 (what ``VLLMDown`` reads); a page we could not use (too
large, malformed) is our problem, counted but not blamed on vLLM. Each scrape opens its own
connection, so a vLLM that refuses new connections (while the proxy answers 502) is not ready
even though an old keep-alive connection would still answer. The whole body is read, up to
:data:`MAX_BODY_BYTES`, within ``scrape_timeout``.
The loop ticks on a fixed schedule (not "sleep after the work"), so a slow vLLM does not stretch
the interval that rates and forecasts assume.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog
from prometheus_client import Counter, Gauge, Histogram

from sidecar.config import Settings
from sidecar.masking import mask_url, scrub
from sidecar.metrics import REGISTRY
from sidecar.scrape.catalogue import CATALOGUE, missing_required
from sidecar.scrape.errors import REASONS
from sidecar.scrape.parse import ExpositionError, parse_snapshot
from sidecar.signals.history import History
from sidecar.snapshot import Snapshot

ACCEPT = "text/plain; version=0.0.4; charset=utf-8, */*;q=0.1"
"""Ask for the classic text format: vLLM's OpenMetrics output is broken upstream (see reference)."""

MAX_BODY_BYTES = 32 * 1024 * 1024
"""A vLLM page is ~60 KB; anything this large is not a metrics page and would only eat memory."""

SCRAPES = Counter(
    "vllm_sidecar_scrapes_total", "Scrapes of vLLM's /metrics attempted.", registry=REGISTRY
)
SCRAPE_ERRORS = Counter(
    "vllm_sidecar_scrape_errors_total",
    "Failed scrapes of vLLM's /metrics, by reason.",
    ["reason"],
    registry=REGISTRY,
)
SCRAPE_DURATION = Histogram(
    "vllm_sidecar_scrape_duration_seconds",
    "Time to fetch and parse vLLM's /metrics.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "vllm_sidecar_last_scrape_success_timestamp_seconds",
    "Unix time of the last successful scrape (0 before the first).",
    registry=REGISTRY,
)
UPSTREAM_UP = Gauge(
    "vllm_sidecar_upstream_up",
    "1 when the last scrape of vLLM succeeded, else 0.",
    registry=REGISTRY,
)
METRICS_MISSING = Gauge(
    "vllm_sidecar_vllm_metrics_missing",
    "1 when a metric every supported vLLM exposes was absent from the last good scrape.",
    ["metric"],
    registry=REGISTRY,
)
SCRAPE_BYTES = Gauge(
    "vllm_sidecar_scrape_body_bytes", "Size of the last /metrics body.", registry=REGISTRY
)

for _metric in CATALOGUE:
    if _metric.required:
        METRICS_MISSING.labels(metric=_metric.name).set(0)
for _reason in sorted({"connect", "timeout", "http_status", "too_large", *REASONS}):
    SCRAPE_ERRORS.labels(reason=_reason)


class ScrapeError(Exception):
    """One failed scrape; ``reason`` is a bounded label value; ``vllm_down`` when the failure
    says vLLM cannot serve (rather than that its page was unusable)."""

    def __init__(self, reason: str, message: str, *, vllm_down: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.vllm_down = vllm_down


@dataclass(slots=True)
class ScrapeStatus:
    """What the admin server and alerts need to know about scraping."""

    last_success_monotonic: float | None = None
    last_success_wall: float | None = None
    last_error: str | None = None
    last_error_reason: str | None = None
    consecutive_failures: int = 0
    missing_metrics: tuple[str, ...] = ()
    vllm_version: str | None = None
    vllm_serving: bool = False
    """The last scrape reached vLLM and got its page (whether or not the page was usable)."""
    loop_failed: bool = False
    """The scrape loop itself crashed (a bug); set until it has been restarted and scraped."""

    @property
    def finished_once(self) -> bool:
        """True once a scrape has finished, successful or not (alerts wait for it)."""
        return self.last_success_monotonic is not None or self.consecutive_failures > 0

    @property
    def ready(self) -> bool:
        """Ready when a scrape has succeeded and the latest one found vLLM serving."""
        return (
            self.last_success_monotonic is not None and self.vllm_serving and not self.loop_failed
        )


async def _read_all(response: aiohttp.ClientResponse) -> bytes:
    """The whole body however it is sent (one write, many, slowly, chunked), up to the cap.

    ``StreamReader.read(n)`` returns what has arrived so far, not ``n`` bytes: reading once kept
    only the first write of a page.
    """
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > MAX_BODY_BYTES:
            raise ScrapeError("too_large", f"body over {MAX_BODY_BYTES} bytes", vllm_down=False)
        pieces.append(piece)
    return b"".join(pieces)


class Scraper:
    """Fetches and parses vLLM's /metrics into ``history`` every ``scrape_interval`` seconds."""

    def __init__(
        self, settings: Settings, session: aiohttp.ClientSession, history: History
    ) -> None:
        self._settings = settings
        self._session = session
        self._history = history
        self._url = settings.upstream + settings.metrics_path
        self._timeout = aiohttp.ClientTimeout(total=settings.scrape_timeout)
        self.status = ScrapeStatus()
        self._log = structlog.get_logger("sidecar.scrape")

    async def _fetch(self) -> tuple[bytes, str | None]:
        try:
            async with self._session.get(
                self._url, headers={"Accept": ACCEPT}, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise ScrapeError("http_status", f"GET {self._url} answered {response.status}")
                if (response.content_length or 0) > MAX_BODY_BYTES:
                    raise ScrapeError(
                        "too_large", f"body of {response.content_length} bytes", vllm_down=False
                    )
                return await _read_all(response), response.headers.get("Content-Type")
        except TimeoutError as exc:
            raise ScrapeError(
                "timeout", f"no answer within {self._settings.scrape_timeout}s"
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise ScrapeError("truncated", f"body cut short: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise ScrapeError("connect", f"{type(exc).__name__}: {exc}") from exc

    async def scrape_once(self) -> Snapshot | None:
        """One scrape; returns the snapshot, or None after counting and logging the failure."""
        SCRAPES.inc()
        started = time.perf_counter()
        try:
            body, content_type = await self._fetch()
            SCRAPE_BYTES.set(len(body))
            # In a worker thread: a page takes 10-100 ms to parse (1-8 engines), which on the
            # event loop would stall every relayed stream that long; beside it, the loop only
            # waits for the GIL (at most the 5 ms switch interval) when it has work.
            snapshot = await asyncio.to_thread(
                parse_snapshot,
                body,
                content_type,
                timestamp=time.time(),
                monotonic=time.monotonic(),
            )
        except ScrapeError as exc:
            self._failed(exc.reason, str(exc), vllm_down=exc.vllm_down)
            return None
        except ExpositionError as exc:
            self._failed(exc.reason, str(exc), vllm_down=False)
            return None
        finally:
            SCRAPE_DURATION.observe(time.perf_counter() - started)
        self._succeeded(snapshot)
        return snapshot

    def _failed(self, reason: str, message: str, *, vllm_down: bool) -> None:
        SCRAPE_ERRORS.labels(reason=reason).inc()
        status = self.status
        status.vllm_serving = not vllm_down
        UPSTREAM_UP.set(0 if vllm_down else 1)
        if status.consecutive_failures == 0 or status.last_error_reason != reason:
            self._log.warning(
                "scrape_failed",
                reason=reason,
                error=scrub(message, self._url),
                url=mask_url(self._url),
            )
        status.consecutive_failures += 1
        status.last_error, status.last_error_reason = scrub(message, self._url), reason

    def _succeeded(self, snapshot: Snapshot) -> None:
        self._history.append(snapshot)
        status = self.status
        if status.consecutive_failures:
            self._log.info("scrape_recovered", after_failures=status.consecutive_failures)
        status.consecutive_failures = 0
        status.vllm_serving = True
        status.loop_failed = False
        status.last_success_monotonic = snapshot.monotonic
        status.last_success_wall = snapshot.timestamp
        missing = tuple(missing_required(snapshot.present))
        if missing != status.missing_metrics and missing:
            self._log.warning("vllm_metrics_missing", metrics=list(missing))
        status.missing_metrics = missing
        for metric in CATALOGUE:
            if metric.required:
                METRICS_MISSING.labels(metric=metric.name).set(1 if metric.name in missing else 0)
        LAST_SUCCESS.set(snapshot.timestamp)
        UPSTREAM_UP.set(1)

    def crashed(self) -> None:
        """The loop crashed (a bug, already logged): not ready until a scrape succeeds again.

        ``upstream_up`` is left alone: our bug is not vLLM being down.
        """
        self.status.loop_failed = True

    async def fetch_version(self) -> str | None:
        """vLLM's ``/version`` (``{"version": "0.33.0"}``), or None when it cannot be read."""
        try:
            async with self._session.get(
                self._settings.upstream + "/version", timeout=self._timeout
            ) as response:
                if response.status != 200:
                    return None
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return str(version) if version is not None else None

    async def run(self, stop: asyncio.Event, on_snapshot: Callable[[Snapshot], None]) -> None:
        """Scrape on a fixed schedule until ``stop`` is set; hand each good snapshot on."""
        interval = self._settings.scrape_interval
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not stop.is_set():
            snapshot = await self.scrape_once()
            if snapshot is not None:
                on_snapshot(snapshot)
                if self.status.vllm_version is None:
                    self.status.vllm_version = await self.fetch_version()
            elif not self.status.vllm_serving:
                self.status.vllm_version = None  # re-read when vLLM is back (maybe upgraded)
            next_tick += interval
            now = loop.time()
            if next_tick < now:  # fell behind (slow scrape): skip missed ticks, keep the phase
                next_tick += ((now - next_tick) // interval + 1) * interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=next_tick - now)
