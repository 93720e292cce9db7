"""Deliver alerts to Alertmanager (API v2) and to a generic webhook, never blocking the caller.

Each receiver gets a :class:`Dispatcher`: :meth:`Dispatcher.submit` merges alerts into a pending
map keyed by label set (the newest state of an alert replaces an older, unsent one) and returns
at once; a task of its own posts the pending alerts, and on failure puts them back and retries
with exponential backoff and full jitter. So a dead Alertmanager costs a bounded amount of memory
(one entry per distinct alert, capped) and never slows scraping or the proxy, and when it comes
back it receives the current state in one request. A 4xx answer (other than 408/429) means the
payload itself is wrong: it is counted as rejected and not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import structlog
from prometheus_client import Counter, Gauge

from sidecar.masking import scrub
from sidecar.metrics import REGISTRY

log = structlog.get_logger("sidecar.alerting")

NOTIFICATIONS = Counter(
    "vllm_sidecar_alert_notifications_total",
    "Alert notification attempts by receiver and outcome: success, failure (retried), "
    "rejected (4xx, not retried), dropped (pending map full).",
    ["receiver", "outcome"],
    registry=REGISTRY,
)
PENDING = Gauge(
    "vllm_sidecar_alert_notifications_pending",
    "Alerts waiting to be delivered, by receiver.",
    ["receiver"],
    registry=REGISTRY,
)
MAX_PENDING = 10_000
"""Distinct alerts one receiver may hold while it is unreachable."""
RETRYABLE_4XX = frozenset({408, 429})
AlertKey = tuple[tuple[str, str], ...]


def rfc3339(seconds: float) -> str:
    """Unix seconds as the UTC timestamp Alertmanager expects."""
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert as Alertmanager's API v2 takes it."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float
    generator_url: str
    resolved: bool

    @property
    def key(self) -> AlertKey:
        """The label set, sorted: one alert's identity."""
        return tuple(sorted(self.labels.items()))

    def fingerprint(self) -> str:
        """A stable id of the label set (for webhook payloads)."""
        text = "\0".join(f"{name}\0{value}" for name, value in self.key)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_api(self) -> dict[str, Any]:
        """The ``postableAlert`` object of Alertmanager's API v2."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at),
            "generatorURL": self.generator_url,
        }


class DeliveryError(Exception):
    """A failed delivery; ``retry`` says whether trying the same payload again can help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Receiver(Protocol):
    """Somewhere alerts go; ``send`` raises :class:`DeliveryError` on failure."""

    name: str

    async def send(self, session: aiohttp.ClientSession, alerts: Sequence[Notification]) -> None:
        """Deliver every alert in one request."""
        ...


async def _post(session: aiohttp.ClientSession, url: str, payload: Any) -> None:
    try:
        async with session.post(url, json=payload) as response:
            if response.status < 300:
                return
            retry = response.status >= 500 or response.status in RETRYABLE_4XX
            body = (await response.text())[:200]
            raise DeliveryError(f"HTTP {response.status}: {scrub(body, url)}", retry=retry)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # aiohttp's messages can quote the URL, and with it a password or webhook token.
        raise DeliveryError(f"{type(exc).__name__}: {scrub(str(exc), url)}", retry=True) from exc


@dataclass(slots=True)
class AlertmanagerReceiver:
    """POST ``/api/v2/alerts`` of one Alertmanager."""

    url: str
    name: str = "alertmanager"

    async def send(self, session: aiohttp.ClientSession, alerts: Sequence[Notification]) -> None:
        await _post(session, f"{self.url}/api/v2/alerts", [alert.to_api() for alert in alerts])


@dataclass(slots=True)
class WebhookReceiver:
    """POST Alertmanager's webhook payload (version 4) to any URL."""

    url: str
    external_url: str
    name: str = "webhook"

    def payload(self, alerts: Sequence[Notification]) -> dict[str, Any]:
        """The JSON body: the same shape Alertmanager's own webhook receiver sends."""
        items = [
            {
                "status": "resolved" if alert.resolved else "firing",
                **alert.to_api(),
                "fingerprint": alert.fingerprint(),
            }
            for alert in alerts
        ]
        common_labels = _common([alert.labels for alert in alerts])
        return {
            "version": "4",
            "groupKey": "{}:{}",
            "truncatedAlerts": 0,
            "status": "firing" if any(not alert.resolved for alert in alerts) else "resolved",
            "receiver": "vllm-sidecar",
            "groupLabels": {},
            "commonLabels": common_labels,
            "commonAnnotations": _common([alert.annotations for alert in alerts]),
            "externalURL": self.external_url,
            "alerts": items,
        }

    async def send(self, session: aiohttp.ClientSession, alerts: Sequence[Notification]) -> None:
        await _post(session, self.url, self.payload(alerts))


def _common(maps: Sequence[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {key: value for key, value in first.items() if all(m.get(key) == value for m in maps)}


class Dispatcher:
    """The pending alerts of one receiver and the task that delivers them (module docstring)."""

    def __init__(
        self,
        receiver: Receiver,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_pending: int = MAX_PENDING,
        jitter: Callable[[float], float] | None = None,
    ) -> None:
        self.receiver = receiver
        self._pending: dict[AlertKey, Notification] = {}
        self._wake = asyncio.Event()
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_pending = max_pending
        self._jitter = jitter or (lambda ceiling: random.uniform(0, ceiling))  # noqa: S311
        self._idle = asyncio.Event()
        self._idle.set()
        for outcome in ("success", "failure", "rejected", "dropped"):
            NOTIFICATIONS.labels(receiver=receiver.name, outcome=outcome)

    def submit(self, alerts: Sequence[Notification]) -> None:
        """Queue alerts for delivery; returns immediately (never awaits, never raises)."""
        for alert in alerts:
            if alert.key not in self._pending and len(self._pending) >= self._max_pending:
                NOTIFICATIONS.labels(receiver=self.receiver.name, outcome="dropped").inc()
                continue
            self._pending[alert.key] = alert
        self._publish()
        if self._pending:
            self._idle.clear()
            self._wake.set()

    def _publish(self) -> None:
        PENDING.labels(receiver=self.receiver.name).set(len(self._pending))

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (failures - 1))
        return self._jitter(ceiling)

    async def _attempt(
        self, session: aiohttp.ClientSession, batch: dict[AlertKey, Notification]
    ) -> DeliveryError | None:
        try:
            await self.receiver.send(session, list(batch.values()))
        except DeliveryError as exc:
            return exc
        return None

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Deliver pending alerts until cancelled."""
        name = self.receiver.name
        failures = 0
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            batch, self._pending = self._pending, {}
            error = await self._attempt(session, batch)
            if error is None:
                NOTIFICATIONS.labels(receiver=name, outcome="success").inc()
                if failures:
                    log.info("alert_notifications_recovered", receiver=name, failures=failures)
                failures = 0
            elif not error.retry:
                NOTIFICATIONS.labels(receiver=name, outcome="rejected").inc()
                log.error("alert_notification_rejected", receiver=name, error=str(error))
            else:
                NOTIFICATIONS.labels(receiver=name, outcome="failure").inc()
                for key, alert in batch.items():
                    self._pending.setdefault(key, alert)  # newer submissions win
                failures += 1
                delay = self._backoff(failures)
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "alert_notification_failed",
                        receiver=name,
                        error=str(error),
                        failures=failures,
                        retry_in=round(delay, 2),
                    )
                self._publish()
                await asyncio.sleep(delay)
            self._publish()

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the pending map to empty; True when it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), seconds)
        return self._idle.is_set()
