"""The shape of one alert rule and the configuration both renderings of it share.

An :class:`AlertRule` carries everything about one alert in one place: identity (name,
severity), threshold and ``for`` (both overridable by name), the static summary, the templated
description, the PromQL for the rule file and the in-process evaluation over the sidecar's
inputs. :class:`RuleConfig` is built from the same :class:`~sidecar.config.Settings` for the
generator and the engine, so a threshold changed in one place changes in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sidecar.alerting.templating import humanize, humanize_percentage
from sidecar.config import Settings, fields_of_settings

if TYPE_CHECKING:
    from sidecar.alerting.inputs import EvalContext


def _setting_default(name: str) -> Any:
    """A setting's default, so the generator's defaults cannot drift from the sidecar's."""
    return fields_of_settings()[name].default


DEFAULT_VLLM_UP_SELECTOR = 'job=~".*vllm.*",job!~".*sidecar.*"'
"""``up`` series of vLLM targets: any job named like vLLM that is not the sidecar's own job."""
DEFAULT_SIDECAR_UP_SELECTOR = 'job=~".*sidecar.*"'


class Severity(StrEnum):
    """The mixin convention: critical pages, warning makes a ticket, info is not routed."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Unit(StrEnum):
    """How a threshold is written in descriptions (``85%``, ``10m 0s``, ``0.05/s``)."""

    RATIO = "ratio"
    SECONDS = "seconds"
    PER_SECOND = "per_second"
    COUNT = "count"

    def describe(self, value: float) -> str:
        """The threshold as a reader sees it, with Prometheus' own humanizers."""
        if self is Unit.RATIO:
            return humanize_percentage(value)
        if self is Unit.SECONDS:
            return duration(value)
        if self is Unit.PER_SECOND:
            return f"{value:g}/s"
        return humanize(value)


@dataclass(frozen=True, slots=True)
class Sample:
    """One alert instance found by an in-process evaluation: its labels and current value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Everything that changes the rendered rules; shared by the generator and the engine.

    ``instance_labels`` are the labels that tell one vLLM server from another in Prometheus
    (e.g. ``("namespace", "pod")``). Every alert aggregates to ``model_name`` plus these, and the
    sidecar must carry the same labels in ``external_labels`` so both paths send identical label
    sets. The default (none) suits one Prometheus per vLLM deployment and keeps labels minimal.
    """

    thresholds: Mapping[str, float] = field(default_factory=dict)
    for_seconds: Mapping[str, float] = field(default_factory=dict)
    slo_ttft_seconds: float = _setting_default("slo_ttft_seconds")
    slo_e2e_seconds: float = _setting_default("slo_e2e_seconds")
    slo_target: float = _setting_default("slo_target")
    min_requests_for_ratio: float = _setting_default("min_requests_for_ratio")
    runbook_url: str = _setting_default("alert_runbook_url")
    vllm_selector: str = ""
    """Extra matchers for every ``vllm:*`` series (e.g. ``namespace="llm"``)."""
    vllm_up_selector: str = DEFAULT_VLLM_UP_SELECTOR
    sidecar_selector: str = ""
    """Extra matchers for every ``vllm_sidecar_*`` series."""
    sidecar_up_selector: str = DEFAULT_SIDECAR_UP_SELECTOR
    instance_labels: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleConfig:
        """The rule configuration a running sidecar with ``settings`` evaluates."""
        return cls(
            thresholds=dict(settings.alert_thresholds),
            for_seconds=dict(settings.alert_for),
            slo_ttft_seconds=settings.slo_ttft_seconds,
            slo_e2e_seconds=settings.slo_e2e_seconds,
            slo_target=settings.slo_target,
            min_requests_for_ratio=settings.min_requests_for_ratio,
            runbook_url=settings.alert_runbook_url,
        )

    @property
    def model_by(self) -> str:
        """``model_name`` plus the instance labels, for ``by (...)`` and ``on (...)``."""
        return ", ".join(("model_name", *self.instance_labels))

    @property
    def target_by(self) -> str:
        """Only the instance labels (possibly empty): one series per vLLM server."""
        return ", ".join(self.instance_labels)

    def threshold(self, rule: AlertRule) -> float:
        """The rule's threshold after overrides (rules without one get 0)."""
        if rule.threshold is None:
            return 0.0
        return self.thresholds.get(rule.name, rule.threshold)

    def hold(self, rule: AlertRule) -> float:
        """The rule's ``for`` in seconds after overrides."""
        return self.for_seconds.get(rule.name, rule.for_seconds)

    def runbook(self, rule: AlertRule) -> str:
        """The rule's ``runbook_url``: the runbook document plus the heading's anchor."""
        return f"{self.runbook_url}#{rule.name.lower()}"


Expr = Callable[[RuleConfig, float], str]
"""(config, threshold) -> the PromQL of the rule."""
Evaluate = Callable[["EvalContext", float], Iterable[Sample]]
"""(context, threshold) -> the instances that meet the condition now."""
Params = Callable[[RuleConfig], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alerting rule, rendered into the rule file and evaluated in-process.

    ``by`` names the labels each instance carries (besides ``RuleConfig.instance_labels``);
    ``labels`` are static extra labels (the burn-rate rows' ``long``/``short``). ``evaluate`` is
    None for the few rules only Prometheus can evaluate (the sidecar cannot see itself down);
    ``prometheus_only`` says why. ``overridable`` is False for rules whose threshold and ``for``
    come from the SLO settings instead of ``alert_thresholds``/``alert_for``.
    """

    name: str
    severity: Severity
    summary: str
    description: str
    expr: Expr
    evaluate: Evaluate | None
    threshold: float | None = None
    unit: Unit = Unit.COUNT
    for_seconds: float = 0.0
    by: tuple[str, ...] = ("model_name",)
    """Labels the expression keeps besides the instance labels: the alert's identity."""
    labels: Mapping[str, str] = field(default_factory=dict)
    params: Params | None = None
    inhibits: tuple[str, ...] = ()
    overridable: bool = True
    prometheus_only: str = ""

    def template_params(self, config: RuleConfig) -> dict[str, str]:
        """Values for the ``${...}`` placeholders of summary and description."""
        params = {"threshold": self.unit.describe(config.threshold(self))}
        if self.params is not None:
            params.update(self.params(config))
        return params


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (``90`` -> ``1m30s``), the form ``for:`` takes."""
    whole = round(seconds * 1000)
    if whole == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if whole:
        parts.append(f"{whole}ms")
    return "".join(parts)
