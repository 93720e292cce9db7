"""The alert catalogue: every alert the sidecar ships, declared once.

The rule file (``alerts/vllm-sidecar.rules.yaml``), the runbook index, the example Alertmanager
inhibitions and the in-process engine are all rendered from :data:`RULES`. An alert name may
appear on several rules when it has tiers (the SLO burn-rate rows); such rules are not
overridable by name and take their numbers from the SLO settings.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping

from sidecar.alerting import templating
from sidecar.alerting.rules_engine import ENGINE_RULES
from sidecar.alerting.rules_serving import SERVING_RULES
from sidecar.alerting.rules_sidecar import SIDECAR_RULES
from sidecar.alerting.slo import LATENCY_SLOS, burn_rules, check_edges
from sidecar.alerting.spec import AlertRule, RuleConfig

_BURN_SUMMARIES = {
    "ttft": "A model misses its time-to-first-token SLO fast enough to exhaust the error budget.",
    "e2e_latency": "A model misses its end-to-end latency SLO fast enough to exhaust the budget.",
}

RULES: tuple[AlertRule, ...] = (
    *ENGINE_RULES,
    *SERVING_RULES,
    *(rule for slo in LATENCY_SLOS for rule in burn_rules(slo, _BURN_SUMMARIES[slo.key])),
    *SIDECAR_RULES,
)
"""Every rule, in the order the rule file lists them."""


def alert_names() -> list[str]:
    """Distinct alert names in catalogue order."""
    return list(dict.fromkeys(rule.name for rule in RULES))


def rules_named(name: str) -> list[AlertRule]:
    """All rules (tiers) of one alert name."""
    return [rule for rule in RULES if rule.name == name]


def _check_overrides(kind: str, overrides: Mapping[str, float]) -> None:
    overridable = {rule.name for rule in RULES if rule.overridable}
    for name, value in overrides.items():
        if name not in overridable:
            close = difflib.get_close_matches(name, sorted(overridable), n=1)
            hint = (
                "it is configured through slo_ttft_seconds / slo_e2e_seconds / slo_target"
                if any(rule.name == name for rule in RULES)
                else f"did you mean {close[0]}?"
                if close
                else f"known alerts: {', '.join(sorted(overridable))}"
            )
            raise ValueError(f"{kind}: cannot override {name!r}; {hint}")
        if math.isnan(value) or value < 0:
            raise ValueError(f"{kind}: {name} must be a number >= 0, got {value}")


def validate(config: RuleConfig, *, check_slo_edges: bool = True) -> None:
    """Raise ValueError naming the first bad override, SLO threshold or template."""
    _check_overrides("alert_thresholds", config.thresholds)
    _check_overrides("alert_for", config.for_seconds)
    for name in config.thresholds:
        if rules_named(name)[0].threshold is None:
            raise ValueError(f"alert_thresholds: {name} has no threshold to override")
    if check_slo_edges:
        check_edges(config)
    for rule in RULES:
        params = rule.template_params(config)
        for text in (rule.summary, rule.description):
            templating.check(templating.fill(text, params))
        if "{{" in rule.summary:
            raise ValueError(f"{rule.name}: the summary must be static (no templating)")
