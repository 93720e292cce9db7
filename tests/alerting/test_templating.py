"""Annotation templates render the same in the sidecar as in Prometheus."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sidecar.alerting import catalogue, templating
from sidecar.alerting.spec import RuleConfig
from tests.alerting.promtool_cases import promtool

VALUES: tuple[float, ...] = (0.0, 2.5e-7, 0.000123, 0.05, 0.1234567, 0.5, 0.85, 0.9999, 1.0)
VALUES += (1.5, 8.75, 59.99, 61.0, 250.59, 600.0, 3599.5, 90061.0, 1234.5, 12345.0, 1234567.0, -3.2)


def test_humanizers_match_prometheus_examples() -> None:
    """Prometheus' documented examples of its humanize functions come out the same."""
    assert templating.humanize(1234567.0) == "1.235M"
    assert templating.humanize(0.012) == "12m"
    assert templating.humanize_duration(899.99) == "14m 59s"
    assert templating.humanize_duration(0.5) == "500ms"
    assert templating.humanize_duration(90061) == "1d 1h 1m 1s"
    assert templating.humanize_percentage(0.1234567) == "12.35%"
    assert templating.humanize(float("nan")) == "NaN"


def test_unsupported_template_actions_are_refused() -> None:
    """A construct the engine cannot render the way Prometheus does is an error, not garbage."""
    with pytest.raises(templating.TemplateError, match="unsupported"):
        templating.render("{{ $value | humanize1024 }}", {}, 1.0)
    with pytest.raises(templating.TemplateError, match="unsupported"):
        templating.render("{{ if $value }}x{{ end }}", {}, 1.0)
    with pytest.raises(templating.TemplateError, match="unknown parameter"):
        templating.fill("over ${nope}", {"threshold": "1"})
    assert templating.render("{{ $labels.absent }}", {}, 1.0) == "<no value>"


def test_every_catalogue_template_renders_like_promtool(tmp_path: Path) -> None:
    """For every alert description and many values, Python's rendering equals Prometheus'."""
    config = RuleConfig()
    labels = {"model_name": "m", "metric": "kv_cache_usage", "reason": "spool_full"}
    labels |= {"receiver": "alertmanager", "signal": "kv_cache"}
    rules, checks = [], []
    for index, (rule, value) in enumerate(
        (rule, value) for rule in catalogue.RULES for value in VALUES
    ):
        name = f"T{index}"
        description = templating.fill(rule.description, rule.template_params(config))
        label_expr = "vector(1)"
        for label, label_value in labels.items():
            label_expr = f'label_replace({label_expr}, "{label}", "{label_value}", "", "")'
        rules.append(
            {"alert": name, "expr": f"{label_expr} * {value!r}", "annotations": {"d": description}}
        )
        checks.append(
            {
                "eval_time": "1m",
                "alertname": name,
                "exp_alerts": [
                    {
                        "exp_labels": labels,
                        "exp_annotations": {"d": templating.render(description, labels, value)},
                    }
                ],
            }
        )
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "t", "rules": rules}]})
    )
    suite = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [], "alert_rule_test": checks}],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(suite))
    result = promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert len(checks) == len(catalogue.RULES) * len(VALUES)
