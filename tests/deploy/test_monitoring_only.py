"""Monitoring-only mode, and the README's patch that adds the sidecar to an existing vLLM."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import yaml

from tests.deploy.chart import CHART_DIR, KUBE_VERSIONS, RELEASE, matrix, merged, render

README = CHART_DIR / "README.md"
WITH_KEYS = {
    "vllm": {"apiKey": {"existingSecret": "vllm-api-key"}},
    "sidecar": {"apiKeys": {"existingSecret": "sidecar-api-keys"}},
}
MONITORING_ONLY = matrix()["monitoring-only"]


def _patch() -> dict[str, Any]:
    """The YAML block after the README's ``existing-deployment-patch`` marker."""
    text = README.read_text("utf-8")
    block = re.search(r"<!-- existing-deployment-patch -->\s*```yaml\n(.*?)```", text, re.S)
    assert block, "README lost its patch snippet"
    lines = block.group(1).splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    patch: dict[str, Any] = yaml.safe_load("\n".join(line[indent:] for line in lines))
    return patch


def _existing_deployment() -> dict[str, Any]:
    """A user's vLLM Deployment, before the patch."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "my-vllm", "namespace": "llm"},
        "spec": {
            "selector": {"matchLabels": {"app": "my-vllm"}},
            "template": {
                "metadata": {"labels": {"app": "my-vllm"}},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "ports": [{"name": "http", "containerPort": 8000}],
                        }
                    ]
                },
            },
        },
    }


def _apply(deployment: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Strategic merge as kubectl does it for these fields: containers and volumes by name."""
    pod = deployment["spec"]["template"]["spec"]
    extra = patch["spec"]["template"]["spec"]
    for key in ("containers", "volumes"):
        pod[key] = [*pod.get(key, []), *extra[key]]
    pod["terminationGracePeriodSeconds"] = extra["terminationGracePeriodSeconds"]
    return deployment


def test_readme_patch_is_the_container_the_chart_runs() -> None:
    """The README's sidecar container and volumes equal what the chart renders for release llm."""
    patch = _patch()["spec"]["template"]["spec"]
    rendered = render(WITH_KEYS)
    assert patch["containers"] == [rendered.container("vllm-sidecar")]
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    ours = [v for v in pod["volumes"] if v["name"].startswith("sidecar-")]
    assert patch["volumes"] == ours
    assert patch["terminationGracePeriodSeconds"] == pod["terminationGracePeriodSeconds"]


def test_patched_deployment_is_valid_and_uses_the_chart_config() -> None:
    """The patched Deployment validates, and its ConfigMap is one the chart renders."""
    deployment = _apply(_existing_deployment(), _patch())
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(deployment, version, strict=True)
    rendered = render(merged(MONITORING_ONLY, WITH_KEYS))
    (source,) = [
        s["configMap"]["name"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "sidecar-config"
        for s in v["projected"]["sources"]
        if "configMap" in s
    ]
    assert source == f"{RELEASE}-vllm-sidecar-config"
    settings = rendered.sidecar_settings()
    assert settings["upstream"] == "http://127.0.0.1:8000"
    assert settings["api_keys_file"] == "/etc/vllm-sidecar/secrets/api-keys.yaml"


def test_monitoring_only_objects_select_the_existing_pods() -> None:
    """Client Service, metrics Service and PodMonitor all select existingVllm.podSelector."""
    selector = MONITORING_ONLY["existingVllm"]["podSelector"]
    rendered = render(MONITORING_ONLY)
    for service in rendered.all("Service"):
        assert service["spec"]["selector"] == selector
    podmonitor = render(
        merged(
            MONITORING_ONLY, {"serviceMonitor": {"enabled": False}, "podMonitor": {"enabled": True}}
        )
    ).one("PodMonitor")
    assert podmonitor["spec"]["selector"]["matchLabels"] == selector
    ports = [e["port"] for e in podmonitor["spec"]["podMetricsEndpoints"]]
    patch_ports = {
        p["name"] for p in _patch()["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports == ["http", "sidecar-admin"]
    assert "sidecar-admin" in patch_ports
    assert {"Deployment", "NetworkPolicy", "PodDisruptionBudget"}.isdisjoint(
        render(merged(MONITORING_ONLY, {"networkPolicy": {"enabled": True}})).kinds()
    )
