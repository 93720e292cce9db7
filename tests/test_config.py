"""Settings precedence (flags > env > YAML > defaults) and precise one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from sidecar.config import ConfigError, load


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
        timeout=60,
    )


def test_defaults_follow_the_command_line_contract() -> None:
    """Proxy on :8080, admin on :9400, 5 s scrapes, 1% sampling."""
    settings = load()
    assert settings.listen == "0.0.0.0:8080"
    assert settings.admin_listen == "0.0.0.0:9400"
    assert settings.scrape_interval == 5.0
    assert settings.sample_rate == 0.01


def test_flags_beat_env_which_beats_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each source overrides the weaker ones key by key."""
    config = tmp_path / "sidecar.yaml"
    config.write_text("scrape_interval: 7\nsample_rate: 0.5\nupstream: http://vllm:8000\n")
    monkeypatch.setenv("VLLM_SIDECAR_SAMPLE_RATE", "0.25")
    settings = load(config_file=config, upstream="http://10.0.0.1:8000")
    assert settings.scrape_interval == 7.0
    assert settings.sample_rate == 0.25
    assert settings.upstream == "http://10.0.0.1:8000"


def test_settings_are_frozen() -> None:
    """Nothing can change the settings after start-up."""
    settings = load()
    with pytest.raises(FrozenInstanceError):
        settings.scrape_interval = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"scrape_interval": "0"}, "scrape_interval"),
        ({"upstream": "localhost:8000"}, "upstream"),
        ({"admin_listen": "9400"}, "admin_listen"),
        ({"sample_rate": "1.5"}, "sample_rate"),
        ({"s3_sse": "aws:kms"}, "s3_kms_key_id"),
        ({"redact_patterns": ["(unclosed"]}, "redact_patterns"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_values_name_the_field(flags: dict[str, object], field: str) -> None:
    """The error is one line and names the offending setting."""
    with pytest.raises(ConfigError) as caught:
        load(**flags)
    message = str(caught.value)
    assert field in message
    assert "\n" not in message


def test_unreadable_and_malformed_yaml_are_clear(tmp_path: Path) -> None:
    """A missing or broken config file is reported with its path."""
    with pytest.raises(ConfigError, match="cannot read"):
        load(config_file=tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("scrape_interval: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(config_file=broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(config_file=listed)


def test_check_config_prints_effective_settings_and_exits_zero() -> None:
    """`check-config` shows the merged settings as JSON."""
    result = _cli("check-config", "--scrape-interval", "2", env={"VLLM_SIDECAR_SAMPLE_RATE": "0.1"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["scrape_interval"] == 2.0
    assert shown["sample_rate"] == 0.1


def test_check_config_rejects_bad_value_with_one_line() -> None:
    """A bad flag exits non-zero with exactly one line naming the field."""
    result = _cli("check-config", "--scrape-timeout", "soon")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "scrape_timeout" in lines[0]


def test_structured_flags_take_json() -> None:
    """Mapping settings accept JSON on the command line, and reject non-JSON clearly."""
    good = _cli("check-config", "--sample-rate-overrides", '{"big-model": 0.5}')
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["sample_rate_overrides"] == {"big-model": 0.5}
    bad = _cli("check-config", "--sample-rate-overrides", "big-model=0.5")
    assert bad.returncode == 2
    assert "sample_rate_overrides" in bad.stderr


def test_text_from_flags_and_environment_is_coerced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strings become the declared types; structured settings are JSON in the environment."""
    monkeypatch.setenv("VLLM_SIDECAR_PROXY_ENABLED", "off")
    monkeypatch.setenv("vllm_sidecar_alert_thresholds", '{"VllmKvCacheNearFull": "0.9"}')
    monkeypatch.setenv("VLLM_SIDECAR_SAMPLE_KEEP_SLOW_SECONDS", "12")
    monkeypatch.setenv("VLLM_SIDECAR_NOT_A_SETTING", "ignored")  # not ours to judge
    settings = load(max_body_bytes="2048", spool_dir="/var/spool/x", sample_keep_length="false")
    assert settings.proxy_enabled is False
    assert settings.alert_thresholds == {"VllmKvCacheNearFull": 0.9}
    assert settings.sample_keep_slow_seconds == 12.0
    assert settings.max_body_bytes == 2048
    assert settings.spool_dir == Path("/var/spool/x")
    assert settings.sample_keep_length is False


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("VLLM_SIDECAR_SAMPEL_RATE", "VLLM_SIDECAR_SAMPLE_RATE"),
        ("vllm_sidecar_scrape_intervall", "VLLM_SIDECAR_SCRAPE_INTERVAL"),
        ("VLLM_SIDECAR_UPSTEAM", "VLLM_SIDECAR_UPSTREAM"),
    ],
)
def test_a_misspelt_environment_variable_is_refused_with_the_right_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, suggestion: str
) -> None:
    """A typo would leave the default in force without a word: refuse it, naming the fix."""
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigError) as refused:
        load()
    assert str(refused.value) == f"{variable}: unknown setting; did you mean {suggestion}?"


def test_kubernetes_service_links_under_the_prefix_are_not_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Service named vllm-sidecar makes Kubernetes inject these into every pod beside it."""
    for name, value in {
        "VLLM_SIDECAR_PORT": "tcp://10.0.0.7:8000",
        "VLLM_SIDECAR_SERVICE_HOST": "10.0.0.7",
        "VLLM_SIDECAR_SERVICE_PORT": "8000",
        "VLLM_SIDECAR_SERVICE_PORT_PROXY": "8000",
        "VLLM_SIDECAR_PORT_8000_TCP_ADDR": "10.0.0.7",
        "VLLM_SIDECAR_REAL_VLLM_HOME": "/tmp/real-vllm",
    }.items():
        monkeypatch.setenv(name, value)
    assert load(upstream="http://127.0.0.1:8000").upstream == "http://127.0.0.1:8000"


def test_structured_environment_values_must_be_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_SIDECAR_EXTERNAL_LABELS", "team=llm")
    with pytest.raises(ConfigError, match="external_labels: not valid JSON"):
        load()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"max_body_bytes": "1.5"}, "max_body_bytes: expected an integer (got '1.5')"),
        ({"scrape_interval": "nan"}, "scrape_interval: expected a finite number of seconds"),
        ({"history_seconds": 299}, "history_seconds: must be at least 300 (got 299)"),
        ({"slo_target": 1}, "slo_target: must be less than 1 (got 1)"),
        ({"proxy_enabled": "maybe"}, "proxy_enabled: expected a boolean"),
        ({"log_level": "DEBUG"}, "log_level: expected one of 'debug', 'info'"),
        ({"metrics_path": "/m?x"}, "metrics_path: must be a plain path"),
        ({"external_labels": {"a": 1}}, "external_labels: entry 'a': expected a string (got 1)"),
    ],
)
def test_errors_say_what_was_expected(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**flags)
    assert str(caught.value).startswith(message)


def test_replace_checks_the_changed_values_and_masked_is_plain_json() -> None:
    settings = load()
    assert settings.replace(sample_rate="0.5").sample_rate == 0.5
    with pytest.raises(ConfigError, match="sample_rate"):
        settings.replace(sample_rate=2)
    shown = settings.masked()
    assert json.loads(json.dumps(shown)) == shown
    assert shown["spool_dir"] == "spool"
