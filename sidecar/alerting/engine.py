"""The in-process alert engine: the catalogue evaluated over the sidecar's own signals.

For teams without Prometheus. It evaluates every rule of :data:`~.catalogue.RULES` that has an
in-process evaluation on a fixed interval, keeps Prometheus' pending/firing/resolved lifecycle
(:mod:`.state`), and pushes to Alertmanager and/or a webhook through :mod:`.notify`. Alert labels
and annotations are built exactly as Prometheus builds them from the generated rule file
(expression labels, then the rule's labels, ``alertname``, then external labels where absent), so
Alertmanager routes, groups, deduplicates and inhibits both paths the same way.

Lifecycle::

    engine = AlertEngine(settings)
    await engine.start(lambda: EngineInputs(signals, snapshot, read_registry(REGISTRY), True))
    app.router.add_get("/api/v1/alerts", engine.handle_alerts)   # or use engine.alert_list()
    ...
    await engine.stop()          # stops evaluating, flushes notifications for a moment

Evaluation is synchronous and cheap; notification happens in tasks of its own, so neither a slow
nor a dead receiver can delay the scraper or the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import Counter, Gauge

from sidecar.alerting import catalogue, slo, templating
from sidecar.alerting.history import CounterHistory
from sidecar.alerting.inputs import EngineInputs, EvalContext
from sidecar.alerting.notify import (
    AlertmanagerReceiver,
    Dispatcher,
    Notification,
    Receiver,
    WebhookReceiver,
    rfc3339,
)
from sidecar.alerting.rules_serving import record_progress
from sidecar.alerting.rules_sidecar import COUNTER_SAMPLES
from sidecar.alerting.spec import AlertRule, RuleConfig
from sidecar.alerting.state import VALIDITY_INTERVALS, AlertTable, Instance, Observation, State
from sidecar.config import ConfigError, Settings, split_host_port
from sidecar.metrics import REGISTRY

log = structlog.get_logger("sidecar.alerting")

ALERTS = Gauge(
    "vllm_sidecar_alerts",
    "Alert instances of the in-process engine by name, severity and state (pending, firing).",
    ["alertname", "severity", "state"],
    registry=REGISTRY,
)
EVALUATIONS = Counter(
    "vllm_sidecar_alert_evaluations_total", "In-process alert evaluations run.", registry=REGISTRY
)
EVALUATION_FAILURES = Counter(
    "vllm_sidecar_alert_evaluation_failures_total",
    "Evaluations that failed as a whole (for example, its inputs could not be built).",
    registry=REGISTRY,
)
RULE_FAILURES = Counter(
    "vllm_sidecar_alert_rule_failures_total",
    "In-process evaluations of one rule that raised (the other rules still ran).",
    ["alertname"],
    registry=REGISTRY,
)
LAST_EVALUATION = Gauge(
    "vllm_sidecar_alert_last_evaluation_timestamp_seconds",
    "Unix time of the last completed in-process alert evaluation.",
    registry=REGISTRY,
)
NOTIFY_TIMEOUT = aiohttp.ClientTimeout(total=10.0, connect=3.0)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A rule with its configured threshold, ``for`` and filled-in templates."""

    rule: AlertRule
    threshold: float
    hold: float
    summary: str
    description: str
    runbook_url: str


def default_receivers(settings: Settings, external_url: str) -> list[Receiver]:
    """The receivers ``settings`` asks for: Alertmanager and/or a webhook."""
    receivers: list[Receiver] = []
    if settings.alertmanager_url:
        receivers.append(AlertmanagerReceiver(settings.alertmanager_url))
    if settings.alert_webhook_url:
        receivers.append(WebhookReceiver(settings.alert_webhook_url, external_url))
    return receivers


def default_external_url(settings: Settings) -> str:
    """Where the admin server can be reached, for ``generatorURL`` links."""
    host, port = split_host_port(settings.admin_listen)
    if host in ("", "0.0.0.0", "::"):
        host = settings.pod_name
    return f"http://{host}:{port}"


def rule_config(settings: Settings) -> RuleConfig:
    """The rules ``settings`` configure, checked (ConfigError naming the bad override)."""
    config = RuleConfig.from_settings(settings)
    try:
        catalogue.validate(config, check_slo_edges=False)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config


class AlertEngine:
    """Evaluates the catalogue in-process and notifies receivers (see module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        receivers: Sequence[Receiver] | None = None,
        external_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        backoff_base: float = 0.5,
    ) -> None:
        self.config = rule_config(settings)
        self._interval = settings.alert_evaluation_interval
        self._staleness = 2 * settings.scrape_interval + settings.scrape_timeout
        self._resend = settings.alert_resend_interval
        self._external_labels = dict(settings.external_labels)
        self.external_url = external_url or default_external_url(settings)
        chosen = default_receivers(settings, self.external_url) if receivers is None else receivers
        cap = min(30.0, max(self._resend, backoff_base))
        self._dispatchers = [
            Dispatcher(receiver, backoff_base=backoff_base, backoff_cap=cap) for receiver in chosen
        ]
        self._clock = clock
        self._wall = wall_clock
        self._table = AlertTable()
        self._history = CounterHistory()
        self._rules = [self._prepare(rule) for rule in catalogue.RULES if rule.evaluate]
        self._missing_edges: frozenset[str] = frozenset()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._gauges = {
            (rule.name, rule.severity.value, state.value): ALERTS.labels(
                rule.name, rule.severity.value, state.value
            )
            for rule in catalogue.RULES
            for state in (State.PENDING, State.FIRING)
        }

    def _prepare(self, rule: AlertRule) -> _Prepared:
        params = rule.template_params(self.config)
        return _Prepared(
            rule=rule,
            threshold=self.config.threshold(rule),
            hold=self.config.hold(rule),
            summary=templating.fill(rule.summary, params),
            description=templating.fill(rule.description, params),
            runbook_url=self.config.runbook(rule),
        )

    # --- evaluation -------------------------------------------------------------------------

    def _record(self, inputs: EngineInputs, now: float, fresh: bool) -> None:
        """Feed the counter history the long windows and the sidecar's counters need."""
        if inputs.snapshot is not None and fresh:
            record_progress(self._history, inputs.snapshot)
            missing = frozenset(slo.record_counts(self._history, inputs.snapshot, self.config, now))
            if missing != self._missing_edges:
                if missing:
                    log.warning(
                        "slo_edge_missing",
                        histograms=sorted(missing),
                        detail="the SLO threshold is not a bucket edge; its burn alerts are off",
                    )
                self._missing_edges = missing
        for name in COUNTER_SAMPLES:
            for labels, value in inputs.readings.series(name):
                self._history.add((name, labels), now, value)
        self._history.forget_stale(now, slo.LONGEST_WINDOW + 3600.0)

    def _observe(self, prepared: _Prepared, ctx: EvalContext) -> list[Observation]:
        rule = prepared.rule
        assert rule.evaluate is not None
        observations = []
        for sample in rule.evaluate(ctx, prepared.threshold):
            labels = {
                **sample.labels,
                **rule.labels,
                "alertname": rule.name,
                "severity": rule.severity.value,
            }
            for name, value in self._external_labels.items():
                labels.setdefault(name, value)
            annotations = {
                "summary": prepared.summary,
                "description": templating.render(prepared.description, sample.labels, sample.value),
                "runbook_url": prepared.runbook_url,
            }
            observations.append(Observation(labels, annotations, sample.value, prepared.hold))
        return observations

    def evaluate(self, inputs: EngineInputs) -> None:
        """Run every in-process rule once over ``inputs`` and notify what is due."""
        mono, wall = self._clock(), self._wall()
        snapshot = inputs.snapshot
        # One failed scrape is tolerated; after that vLLM's numbers are gone, not frozen.
        fresh = snapshot is not None and mono - snapshot.monotonic <= self._staleness
        self._record(inputs, mono, fresh)
        ctx = EvalContext(inputs, self.config, self._history, mono, fresh)
        observations: list[Observation] = []
        for prepared in self._rules if inputs.scrape_finished else ():
            try:
                observations.extend(self._observe(prepared, ctx))
            except Exception:
                RULE_FAILURES.labels(alertname=prepared.rule.name).inc()
                log.exception("alert_rule_failed", alertname=prepared.rule.name)
        self._table.update(observations, mono=mono, wall=wall)
        self._publish_metrics()
        due = self._table.due(mono=mono, resend_interval=self._resend)
        if due and self._dispatchers:
            notifications = [self._notification(instance, wall) for instance in due]
            for dispatcher in self._dispatchers:
                dispatcher.submit(notifications)
        self._table.mark_sent(due, mono)
        EVALUATIONS.inc()
        LAST_EVALUATION.set(wall)

    def _notification(self, instance: Instance, wall: float) -> Notification:
        resolved = instance.state is State.RESOLVED and instance.resolved_at is not None
        valid_for = VALIDITY_INTERVALS * max(self._interval, self._resend)
        return Notification(
            labels=dict(instance.labels),
            annotations=dict(instance.annotations),
            starts_at=instance.fired_at or instance.active_at,
            ends_at=instance.resolved_at if resolved and instance.resolved_at else wall + valid_for,
            generator_url=f"{self.external_url}/api/v1/alerts",
            resolved=resolved,
        )

    def _publish_metrics(self) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for instance in self._table.instances():
            if instance.state is State.RESOLVED:
                continue
            labels = instance.labels
            key = (labels["alertname"], labels["severity"], instance.state.value)
            counts[key] = counts.get(key, 0) + 1
        for key, gauge in self._gauges.items():
            gauge.set(counts.get(key, 0))

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, source: Callable[[], EngineInputs]) -> None:
        """Start evaluating ``source()`` every interval and delivering notifications."""
        if self._tasks:
            raise RuntimeError("alert engine already started")
        self._session = aiohttp.ClientSession(timeout=NOTIFY_TIMEOUT)
        for dispatcher in self._dispatchers:
            self._tasks.append(asyncio.create_task(dispatcher.run(self._session)))
        self._tasks.append(asyncio.create_task(self._loop(source)))

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The background tasks (dispatchers, evaluation loop), for the composer to supervise."""
        return tuple(self._tasks)

    async def _loop(self, source: Callable[[], EngineInputs]) -> None:
        next_tick = self._clock()
        while True:
            try:
                self.evaluate(source())
            except Exception:
                EVALUATION_FAILURES.inc()
                log.exception("alert_evaluation_failed")
            next_tick += self._interval
            now = self._clock()
            if next_tick < now:  # fell behind (a stalled loop): skip the missed ticks
                next_tick = now + self._interval - (now - next_tick) % self._interval
            await asyncio.sleep(next_tick - now)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop evaluating; give pending notifications up to ``grace`` seconds, then close."""
        if not self._tasks:
            return
        loop_task = self._tasks[-1]
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
        await asyncio.gather(*(d.drain(grace) for d in self._dispatchers))
        for task in self._tasks[:-1]:
            task.cancel()
        await asyncio.gather(*self._tasks[:-1], return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- read side --------------------------------------------------------------------------

    def alerts(self) -> list[Instance]:
        """Pending, firing and recently resolved instances."""
        return self._table.instances()

    def to_json(self) -> dict[str, Any]:
        """Current alerts in the shape of Prometheus' ``/api/v1/alerts``."""
        return {"status": "success", "data": {"alerts": self.alert_list()}}

    def alert_list(self) -> list[dict[str, Any]]:
        """Pending, firing and recently resolved alerts as JSON-able dicts (newest state)."""
        items = []
        for instance in self._table.instances():
            item: dict[str, Any] = {
                "labels": instance.labels,
                "annotations": instance.annotations,
                "state": instance.state.value,
                "activeAt": rfc3339(instance.active_at),
                "value": _value(instance.value),
            }
            if instance.fired_at is not None:
                item["firedAt"] = rfc3339(instance.fired_at)
            if instance.resolved_at is not None:
                item["resolvedAt"] = rfc3339(instance.resolved_at)
            items.append(item)
        return items

    async def handle_alerts(self, request: web.Request) -> web.Response:
        """``GET /api/v1/alerts`` (optional ``?state=pending|firing|resolved``)."""
        body = self.to_json()
        wanted = request.query.get("state")
        if wanted:
            if wanted not in {state.value for state in State}:
                return web.json_response(
                    {"status": "error", "error": "state must be pending, firing or resolved"},
                    status=400,
                )
            body["data"]["alerts"] = [a for a in body["data"]["alerts"] if a["state"] == wanted]
        return web.json_response(body)


def _value(value: float) -> str:
    """Prometheus' API spells sample values as strings (so NaN and Inf survive JSON)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
