"""The chart's PrometheusRule is the rule pack of alerts/, and overrides match the generator's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.alerting.catalogue import RULES
from sidecar.alerting.rulefile import render_rules
from sidecar.alerting.spec import RuleConfig, Unit, duration
from sidecar.config import load
from tests.deploy.chart import CHART_DIR, ROOT, matrix, render

RULE_FILE = ROOT / "alerts" / "vllm-sidecar.rules.yaml"
OVERRIDABLE = [rule for rule in RULES if rule.overridable]
WITH_THRESHOLD = [rule for rule in OVERRIDABLE if rule.threshold is not None]
ODD_VALUES = {Unit.RATIO: 0.735, Unit.SECONDS: 5432.25, Unit.PER_SECOND: 0.1234567, Unit.COUNT: 3}
"""Thresholds that exercise rounding in each unit's description text."""


def _rule_groups(values: dict[str, Any]) -> list[dict[str, Any]]:
    rule = render({"prometheusRule": {"enabled": True}, **values}).one("PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_default_groups_equal_the_committed_rule_file() -> None:
    """With default values the PrometheusRule's groups are exactly alerts/'s rule file."""
    committed = yaml.safe_load(RULE_FILE.read_text("utf-8"))["groups"]
    assert _rule_groups({}) == committed


@pytest.mark.parametrize("rule", WITH_THRESHOLD, ids=lambda rule: rule.name)
def test_threshold_override_matches_the_generator(rule: Any) -> None:
    """A chart threshold override renders the same rule as the generator with that override."""
    value = ODD_VALUES[rule.unit]
    overrides = {rule.name: {"threshold": value, "for": "7m30s"}}
    chart_groups = _rule_groups({"alerts": {"overrides": overrides}})
    config = RuleConfig(thresholds={rule.name: value}, for_seconds={rule.name: 450.0})
    expected = yaml.safe_load(render_rules(config))["groups"]
    assert chart_groups == expected


def test_for_override_without_threshold_and_zero_for() -> None:
    """`for` alone overrides rules without a threshold, and `for: 0s` drops the clause."""
    overrides = {"VLLMDown": {"for": "3m"}, "VLLMSidecarUploadsStalled": {"for": "0s"}}
    chart_groups = _rule_groups({"alerts": {"overrides": overrides}})
    config = RuleConfig(for_seconds={"VLLMDown": 180.0, "VLLMSidecarUploadsStalled": 0.0})
    assert chart_groups == yaml.safe_load(render_rules(config))["groups"]


def test_every_overridable_alert_is_in_the_schema() -> None:
    """values.schema.json lists each overridable alert, and only those, under alerts.overrides."""
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text("utf-8"))
    listed = schema["properties"]["alerts"]["properties"]["overrides"]["properties"]
    assert sorted(listed) == sorted({rule.name for rule in OVERRIDABLE})
    for rule in OVERRIDABLE:
        assert ("threshold" in listed[rule.name]["properties"]) == (rule.threshold is not None)


@pytest.mark.parametrize("case", sorted(matrix()))
def test_sidecar_accepts_the_rendered_settings(case: str, tmp_path: Path) -> None:
    """The sidecar's own loader accepts the settings file the chart renders, for every case."""
    rendered = render(matrix()[case])
    config = rendered.one("ConfigMap", "llm-vllm-sidecar-config")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    settings = load(path)
    assert settings.upstream.startswith("http://127.0.0.1:")
    assert settings.log_format == "json"


def test_overrides_reach_the_sidecar_engine_too(tmp_path: Path) -> None:
    """alerts.overrides become alert_thresholds / alert_for (seconds) in the sidecar's settings."""
    overrides = {
        "VLLMKVCacheSaturation": {"threshold": 0.9, "for": "1h30m"},
        "VLLMSidecarProxyOverheadHigh": {"for": "500ms"},
    }
    rendered = render({"alerts": {"overrides": overrides}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered.sidecar_settings()), encoding="utf-8")
    settings = load(path)
    assert settings.alert_thresholds == {"VLLMKVCacheSaturation": 0.9}
    assert settings.alert_for == {
        "VLLMKVCacheSaturation": 5400.0,
        "VLLMSidecarProxyOverheadHigh": 0.5,
    }
    assert duration(settings.alert_for["VLLMKVCacheSaturation"]) == "1h30m"


def test_runbook_url_value_reaches_the_rules_and_the_sidecar(tmp_path: Path) -> None:
    """alerts.runbookUrl: every rule links to that document (same anchors as the generator)."""
    wiki = "https://wiki.example.internal/llm/runbooks"
    rendered = render({"prometheusRule": {"enabled": True}, "alerts": {"runbookUrl": wiki + "/"}})
    groups = rendered.one("PrometheusRule")["spec"]["groups"]
    expected = yaml.safe_load(render_rules(RuleConfig(runbook_url=wiki)))["groups"]
    assert groups == expected
    links = [
        rule["annotations"]["runbook_url"]
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert links
    assert all(link.startswith(wiki + "#") for link in links)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rendered.sidecar_settings()), encoding="utf-8")
    assert load(path).alert_runbook_url == wiki


def test_notes_warn_while_the_image_is_the_unpublished_placeholder() -> None:
    """The default repository does not exist: the install notes say what to do about it."""
    default = render({}).notes
    built = render({"sidecar": {"image": {"repository": "registry.example.com/vllm-sidecar"}}})
    assert "not published" in default
    assert "--set sidecar.image.repository=" in default
    assert "not published" not in built.notes
