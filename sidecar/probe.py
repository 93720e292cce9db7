"""Optional active probe: a 1-token completion sent to vLLM every ``probe_interval`` seconds.

vLLM's own metrics and ``/health`` can look fine while its EngineCore is hung; a real request is
the one check that cannot be fooled. The probe goes straight to vLLM (not through the proxy, so
the proxy's client-facing counters stay clients-only), asks for one token from the first model
``/v1/models`` lists, and exports its latency and failures as ``vllm_sidecar_probe_*``. Off by
default (``probe_interval`` 0): every probe costs vLLM a prefill.

The loop is supervised the way the scraper's is: a probe that raises is counted
(``reason="internal"``) and logged, and the next tick runs as scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import structlog
from prometheus_client import Counter, Gauge, Histogram

from sidecar.config import Settings
from sidecar.metrics import REGISTRY
from sidecar.proxy.keys import load_upstream_key

PROMPT = "ping"
REASONS = ("connect", "timeout", "http_status", "bad_response", "no_model", "internal")

PROBES = Counter("vllm_sidecar_probes_total", "Active probes sent to vLLM.", registry=REGISTRY)
PROBE_FAILURES = Counter(
    "vllm_sidecar_probe_failures_total",
    "Active probes that got no 1-token answer, by reason.",
    ["reason"],
    registry=REGISTRY,
)
PROBE_DURATION = Histogram(
    "vllm_sidecar_probe_duration_seconds",
    "Time for vLLM to answer a 1-token completion (successful probes).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
PROBE_LAST_SUCCESS = Gauge(
    "vllm_sidecar_probe_last_success_timestamp_seconds",
    "Unix time of the last successful probe (0 before the first).",
    registry=REGISTRY,
)
for _reason in REASONS:
    PROBE_FAILURES.labels(reason=_reason)


class ProbeFailed(Exception):
    """One failed probe; ``reason`` is a bounded label value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Prober:
    """Sends the probe on a fixed schedule; see the module docstring."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=settings.probe_timeout)
        key = load_upstream_key(settings.upstream_api_key_file)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._model: str | None = None
        self._log = structlog.get_logger("sidecar.probe")

    async def _served_model(self) -> str:
        if self._model is None:
            async with self._session.get(
                self._settings.upstream + "/v1/models", headers=self._headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise ProbeFailed("http_status", f"/v1/models answered {response.status}")
                body = await response.json(content_type=None)
            models = body.get("data") if isinstance(body, dict) else None
            if not models or not isinstance(models[0], dict) or "id" not in models[0]:
                raise ProbeFailed("no_model", "/v1/models lists no model")
            self._model = str(models[0]["id"])
        return self._model

    async def _complete(self) -> None:
        model = await self._served_model()
        body = {"model": model, "prompt": PROMPT, "max_tokens": 1, "temperature": 0}
        async with self._session.post(
            self._settings.upstream + "/v1/completions",
            json=body,
            headers=self._headers,
            timeout=self._timeout,
        ) as response:
            if response.status != 200:
                if response.status == 404:
                    self._model = None  # the model was swapped: ask /v1/models again
                raise ProbeFailed("http_status", f"/v1/completions answered {response.status}")
            answer = await response.json(content_type=None)
        if not isinstance(answer, dict) or not answer.get("choices"):
            raise ProbeFailed("bad_response", "the completion has no choices")

    async def probe_once(self) -> bool:
        """One probe; True when vLLM answered with a token, else the failure is counted."""
        PROBES.inc()
        started = time.perf_counter()
        try:
            await self._complete()
        except ProbeFailed as exc:
            return self._failed(exc.reason, str(exc))
        except TimeoutError:
            return self._failed("timeout", f"no answer within {self._settings.probe_timeout}s")
        except aiohttp.ClientError as exc:
            return self._failed("connect", f"{type(exc).__name__}: {exc}")
        except ValueError as exc:
            return self._failed("bad_response", f"not JSON: {exc}")
        PROBE_DURATION.observe(time.perf_counter() - started)
        PROBE_LAST_SUCCESS.set(time.time())
        return True

    def _failed(self, reason: str, message: str) -> bool:
        PROBE_FAILURES.labels(reason=reason).inc()
        self._log.warning("probe_failed", reason=reason, error=message)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every ``probe_interval`` seconds until ``stop`` is set."""
        interval = self._settings.probe_interval
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not stop.is_set():
            try:
                await self.probe_once()
            except Exception:
                PROBE_FAILURES.labels(reason="internal").inc()
                self._log.exception("probe_crashed")
            next_tick += interval
            now = loop.time()
            if next_tick < now:  # a probe outlasted the interval: skip the missed ticks
                next_tick = now + interval - (now - next_tick) % interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_tick - now)
