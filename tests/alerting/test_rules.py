"""The committed rule pack: up to date, valid for promtool and amtool, tested, documented."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sidecar.alerting import catalogue, generate
from sidecar.alerting.spec import RuleConfig, Severity
from tests.alerting.promtool_cases import (
    ALERTS_DIR,
    RULES_FILE,
    alert_checks,
    promtool,
    promtool_start,
    unit_test_files,
)

AMTOOL = "/usr/bin/amtool"
CAMEL_CASE = re.compile(r"^([A-Z]+[a-z0-9]+)+$")


def test_committed_files_match_a_fresh_generation(tmp_path: Path) -> None:
    """Regenerating from the catalogue into a temp dir reproduces alerts/ byte for byte."""
    assert generate.main(["--out-dir", str(tmp_path)]) == 0
    for name in (generate.RULES_FILE, generate.ALERTMANAGER_FILE):
        fresh = (tmp_path / name).read_text()
        committed = (ALERTS_DIR / name).read_text()
        assert fresh == committed, f"{name} is stale: run python -m sidecar.alerting.generate"
    assert generate.main(["--check"]) == 0


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    """--check exits 1 and writes nothing when a generated file differs."""
    (tmp_path / generate.RULES_FILE).write_text("groups: []\n")
    assert generate.main(["--out-dir", str(tmp_path), "--check"]) == 1
    assert (tmp_path / generate.RULES_FILE).read_text() == "groups: []\n"
    assert not (tmp_path / generate.ALERTMANAGER_FILE).exists()


def test_bad_generator_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SLO threshold off vLLM's bucket edges stops the generator with a clear message."""
    settings = tmp_path / "sidecar.yaml"
    settings.write_text("slo_ttft_seconds: 0.3\n")
    assert generate.main(["--out-dir", str(tmp_path), "--config", str(settings)]) == 2
    assert "0.3s for ttft is not a vLLM bucket edge" in capsys.readouterr().err
    assert not (tmp_path / generate.RULES_FILE).exists()


def test_cli_subcommand_renders_rules_for_a_settings_file(tmp_path: Path) -> None:
    """``vllm-sidecar alert-rules --config FILE`` writes rules with that file's thresholds."""
    settings = tmp_path / "sidecar.yaml"
    settings.write_text("alert_thresholds: {VLLMKVCacheSaturation: 0.8}\n")
    parser = argparse.ArgumentParser()
    generate.register(parser.add_subparsers())
    args = parser.parse_args(["alert-rules", "--config", str(settings), "--out-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert (
        "model_name:vllm_kv_cache_usage:max >= 0.8\n"
        in (tmp_path / generate.RULES_FILE).read_text()
    )
    assert (tmp_path / generate.ALERTMANAGER_FILE).exists()


def test_promtool_check_rules_passes() -> None:
    """promtool (Prometheus 2.42) accepts the generated rule file."""
    result = promtool("check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 73 rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """Every promtool unit test in alerts/tests passes against the generated rule file."""
    files = unit_test_files()
    runs = [promtool_start("test", "rules", path, cwd=ALERTS_DIR) for path in files]
    for path, run in zip(files, runs, strict=True):
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0, f"{path.name}:\n{out}"
        assert "SUCCESS" in out


def test_rules_rendered_with_custom_settings_still_pass_promtool(tmp_path: Path) -> None:
    """Instance labels, selectors and overrides render to rules promtool accepts."""
    settings = tmp_path / "sidecar.yaml"
    settings.write_text(
        "alert_thresholds: {VLLMKVCacheSaturation: 0.9}\nalert_for: {VLLMDown: 30}\n"
        "slo_ttft_seconds: 1.0\nslo_target: 0.999\n"
    )
    args = ["--out-dir", str(tmp_path), "--config", str(settings)]
    args += ["--instance-label", "namespace", "--instance-label", "pod"]
    args += ["--vllm-selector", 'namespace="llm"', "--vllm-up-selector", 'job="vllm"']
    assert generate.main(args) == 0
    rules = tmp_path / generate.RULES_FILE
    result = promtool("check", "rules", rules)
    assert result.returncode == 0, result.stdout + result.stderr
    text = rules.read_text()
    assert "model_name:vllm_kv_cache_usage:max >= 0.9\n" in text
    kv = '(vllm:kv_cache_usage_perc{namespace="llm"} or vllm_kv_cache_usage_perc{namespace="llm"})'
    assert f"max by (model_name, namespace, pod) {kv}" in text
    assert "rate({__name__" not in text, "a range vector over both spellings fails on overlap"
    assert 'le=~"1(\\\\.0+)?"' in text
    assert "> 0.0144" in text  # 14.4 x (1 - 0.999)
    assert "for: 30s" in text


def test_every_alert_has_a_firing_and_a_silent_promtool_check() -> None:
    """Each alert name is tested both firing (with annotations) and not firing."""
    fired: set[str] = set()
    silent: set[str] = set()
    for check in alert_checks():
        expected = check.get("exp_alerts") or []
        (fired if expected else silent).add(check["alertname"])
        for alert in expected:
            assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
    names = set(catalogue.alert_names())
    assert fired == names
    assert silent == names


def test_alerts_follow_the_mixin_conventions() -> None:
    """CamelCase VLLM* names, known severities, static summaries, templated descriptions."""
    config = RuleConfig()
    for rule in catalogue.RULES:
        assert CAMEL_CASE.match(rule.name), rule.name
        assert rule.name.startswith("VLLM"), rule.name
        assert rule.severity in set(Severity)
        assert "{{" not in rule.summary, rule.name
        assert rule.summary.endswith("."), rule.name
        assert rule.summary[0].isupper(), rule.name
        assert "{{ $value" in rule.description or "{{ $labels" in rule.description, rule.name
        if rule.evaluate is None:
            assert rule.prometheus_only, f"{rule.name} needs a reason to be Prometheus-only"
        assert "model_name" not in rule.labels
        assert config.runbook(rule).endswith(f"#{rule.name.lower()}")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_every_runbook_url_anchor_exists() -> None:
    """Each alert's runbook_url points at a heading of runbooks.md with the four sections."""
    text = (ALERTS_DIR / "runbooks.md").read_text()
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S))
    anchors = {github_anchor(heading): body for heading, body in sections.items()}
    rendered = yaml.safe_load(RULES_FILE.read_text())
    urls = [
        rule["annotations"]["runbook_url"]
        for group in rendered["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert len(urls) == len(catalogue.RULES)
    for url in urls:
        document, _, anchor = url.partition("#")
        assert document.endswith("/alerts/runbooks.md")
        assert anchor in anchors, f"runbooks.md has no heading for #{anchor}"
        for part in ("**Meaning.**", "**Impact.**", "**Diagnosis.**", "**Mitigation.**"):
            assert part in anchors[anchor], f"#{anchor} lacks {part}"
    assert set(sections) == set(catalogue.alert_names()), "a runbook section has no alert"


def test_example_alertmanager_config_is_valid() -> None:
    """amtool accepts the example config; it routes by severity and inhibits warning by critical."""
    path = ALERTS_DIR / generate.ALERTMANAGER_FILE
    result = subprocess.run(
        [AMTOOL, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    routes = {route["matchers"][0]: route["receiver"] for route in config["route"]["routes"]}
    assert routes == {
        'severity="critical"': "pager",
        'severity="warning"': "tickets",
        'severity="info"': "null",
    }
    generic = config["inhibit_rules"][0]
    assert generic["source_matchers"] == ['severity="critical"']
    assert generic["equal"] == ["alertname", "model_name"]
