"""Read the promtool unit tests in ``alerts/tests`` and run promtool on rule and test files."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ALERTS_DIR = Path(__file__).resolve().parents[2] / "alerts"
TESTS_DIR = ALERTS_DIR / "tests"
RULES_FILE = ALERTS_DIR / "vllm-sidecar.rules.yaml"
PROMTOOL = "/usr/bin/promtool"


def unit_test_files() -> list[Path]:
    """Every promtool unit test file, sorted."""
    return sorted(TESTS_DIR.glob("*.test.yaml"))


def alert_checks() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` entry of every file, with its test's name."""
    checks = []
    for path in unit_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                checks.append({**check, "test": test["name"], "file": path.name})
    return checks


def expected_alert(alertname: str, **labels: str) -> dict[str, Any]:
    """The first expected alert in the promtool tests with this name and these labels.

    Returns ``{"labels": ..., "annotations": ...}`` where labels include ``alertname``.
    """
    for check in alert_checks():
        if check["alertname"] != alertname:
            continue
        for alert in check.get("exp_alerts") or []:
            got = {str(k): str(v) for k, v in alert["exp_labels"].items()}
            if all(got.get(k) == v for k, v in labels.items()):
                return {
                    "labels": {"alertname": alertname, **got},
                    "annotations": {str(k): str(v) for k, v in alert["exp_annotations"].items()},
                }
    raise LookupError(f"no promtool expectation for {alertname} {labels}")


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        [PROMTOOL, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=120,
    )


def promtool_start(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start promtool without waiting (several test files run side by side)."""
    return subprocess.Popen(
        [PROMTOOL, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )
