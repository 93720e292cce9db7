"""values.yaml is typed and documented, and bad values stop `helm install` with a clear message."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import pytest

from tests.deploy.chart import CHART_DIR, chart, render

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text("utf-8"))
VALUES_LINES = (CHART_DIR / "values.yaml").read_text("utf-8").splitlines()
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):")


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    resolved: dict[str, Any] = SCHEMA["definitions"][ref.rsplit("/", 1)[1]]
    return resolved


def _documented_paths(node: dict[str, Any], defaults: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every value the chart defines: the members of its closed objects.

    Open maps (``alerts.overrides``, ``sidecar.settings``) are one value each: their members are
    optional entries, typed by the schema and documented in the map's comment.
    """
    node = _resolve(node)
    if node.get("additionalProperties") is not False or not isinstance(defaults, dict):
        return []
    if not defaults and prefix:
        return []
    paths = []
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        paths.append(path)
        paths.extend(_documented_paths(child, defaults.get(key), f"{path}."))
    return paths


def _values_yaml_keys() -> dict[str, str]:
    """Dotted path -> the comment block just above it, for every key line of values.yaml."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in VALUES_LINES:
        if line.strip().startswith("#"):
            comment.append(line.strip().lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if not match or line.lstrip().startswith("-"):
            comment = []
            continue
        depth = len(match["indent"])
        stack = [(d, k) for d, k in stack if d < depth]
        stack.append((depth, match["key"]))
        found[".".join(key for _, key in stack)] = " ".join(comment)
        comment = []
    return found


def _schema_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        chart().render(values, name="llm", namespace="ai")
    return str(caught.value)


def _template_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmRenderError) as caught:
        chart().render(values, name="llm", namespace="ai")
    return str(caught.value)


def test_every_chart_value_is_typed_and_commented_with_its_name() -> None:
    """Each value the schema defines is in values.yaml with a comment starting with its name."""
    documented = _values_yaml_keys()
    expected = _documented_paths(SCHEMA, chart().values)
    missing = [path for path in expected if path not in documented]
    assert missing == [], f"schema values absent from values.yaml: {missing}"
    untyped = [path for path in documented if path.split(".")[0] not in SCHEMA["properties"]]
    assert untyped == []
    for path in expected:
        leaf = path.rsplit(".", 1)[-1]
        schema = _resolve(_schema_at(path))
        if schema.get("additionalProperties") is False and schema.get("properties"):
            continue  # a group of values: its members carry the comments
        assert documented[path].startswith(leaf), f"{path}: comment must start with {leaf!r}"


def _schema_at(path: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMA
    for key in path.split("."):
        node = _resolve(node)["properties"][key]
    return node


def test_defaults_pass_the_schema() -> None:
    """The chart's own values.yaml is valid under its schema."""
    chart().validate_schema(chart().values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"sidecar": {"sampling": {"rate": 1.5}}}, "at '/sidecar/sampling/rate': maximum"),
        ({"vllm": {"imagee": {}}}, "additional properties 'imagee' not allowed"),
        (
            {"alerts": {"overrides": {"VLLMKVCacheSaturaton": {"for": "5m"}}}},
            "VLLMKVCacheSaturaton",
        ),
        (
            {"alerts": {"overrides": {"VLLMKVCacheSaturation": {"for": "5 minutes"}}}},
            "at '/alerts/overrides/VLLMKVCacheSaturation/for'",
        ),
        (
            {"alerts": {"overrides": {"VLLMDown": {"for": "30s5m"}}}},
            "at '/alerts/overrides/VLLMDown/for'",
        ),
        (
            {"alerts": {"overrides": {"VLLMDown": {"threshold": 1}}}},
            "at '/alerts/overrides/VLLMDown': additional properties 'threshold' not allowed",
        ),
        (
            {"alerts": {"overrides": {"VLLMKVCacheSaturation": {"threshold": 85}}}},
            "at '/alerts/overrides/VLLMKVCacheSaturation/threshold': maximum",
        ),
        ({"sidecar": {"settings": {"scrape_intervall": 5}}}, "'scrape_intervall' not allowed"),
        ({"sidecar": {"settings": {"log_level": "loud"}}}, "at '/sidecar/settings/log_level'"),
        ({"sidecar": {"spool": {"sizeLimit": "1 GB"}}}, "at '/sidecar/spool/sizeLimit'"),
        ({"sidecar": {"s3": {"sse": "rot13"}}}, "at '/sidecar/s3/sse'"),
        ({"metrics": {"sidecarJob": "proxy"}}, "at '/metrics/sidecarJob'"),
        ({"serviceMonitor": {"interval": "fast"}}, "at '/serviceMonitor/interval'"),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(values: dict[str, Any], message: str) -> None:
    """A mistyped, misspelt or out-of-range value is refused, and the message points at it."""
    error = _schema_error(values)
    assert "don't meet the specifications of the schema" in error
    assert message in error


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
            "serviceMonitor.enabled and podMonitor.enabled are both true",
        ),
        ({"vllm": {"enabled": False}}, "vllm.enabled=false needs existingVllm.podSelector"),
        (
            {"terminationGracePeriodSeconds": 20},
            "terminationGracePeriodSeconds (20) must exceed sidecar.shutdownGraceSeconds (25)",
        ),
        (
            {"sidecar": {"spool": {"sizeLimit": "512Mi", "maxBytes": 600000000}}},
            "sidecar.spool.maxBytes (600000000) must be below sidecar.spool.sizeLimit (512Mi)",
        ),
        ({"metrics": {"vllmJob": "vllm-sidecar"}}, 'metrics.vllmJob "vllm-sidecar" contains'),
        ({"sidecar": {"s3": {"sse": "aws:kms"}}}, "needs sidecar.s3.kmsKeyId"),
        (
            {"replicaCount": 2, "sidecar": {"spool": {"existingClaim": "spool"}}},
            "needs replicaCount 1",
        ),
    ],
)
def test_inconsistent_values_fail_with_the_fix(values: dict[str, Any], message: str) -> None:
    """Combinations the schema cannot express stop the render with a message naming the fix."""
    assert message in _template_error(values)


def test_spool_limit_accepts_quantities() -> None:
    """sizeLimit is compared in bytes whatever the suffix: 1G and 2Gi both leave room."""
    for limit in ("1G", "2Gi", "900000000"):
        volumes = render({"sidecar": {"spool": {"sizeLimit": limit}}}).one("Deployment")
        spool = [
            v
            for v in volumes["spec"]["template"]["spec"]["volumes"]
            if v["name"] == "sidecar-spool"
        ]
        assert spool[0]["emptyDir"]["sizeLimit"] == limit
