"""The chart lints strictly and renders valid objects for every case of its value matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.chart import (
    CHART_DIR,
    KUBE_VERSIONS,
    MONITORING_GROUP,
    RELEASE,
    matrix,
    render,
    validate_custom_object,
)

CASES = matrix()
CRD_PLURALS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}
WARNING = 2
"""Severity of a lint message that strict mode turns into a failure (1 is info)."""


def test_matrix_has_the_required_cases() -> None:
    """ci/ holds the defaults, monitoring-only, every-toggle-on and every-toggle-off cases."""
    assert {"default", "monitoring-only", "all-off"} <= set(CASES)
    assert {"all-on-servicemonitor", "all-on-podmonitor"} <= set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_strict_passes(case: str) -> None:
    """`helm lint --strict` with the case's values reports no warning and no error."""
    report = helm_python.lint(CHART_DIR, CASES[case], strict=True, namespace="ai")
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert problems == [], problems
    assert report["errors"] == []


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_core_objects_validate(case: str, kube_version: str) -> None:
    """Every rendered Kubernetes object validates strictly against that release's schema."""
    rendered = render(CASES[case])
    core = [obj for obj in rendered.objects if not obj["apiVersion"].startswith(MONITORING_GROUP)]
    assert core, "nothing rendered"
    for obj in core:
        kubernetes_validate.validate(obj, kube_version, strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_monitoring_objects_validate_against_the_crds(case: str, test_data: Path) -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule objects fit the Prometheus Operator CRDs."""
    for obj in render(CASES[case]).objects:
        if not obj["apiVersion"].startswith(MONITORING_GROUP):
            continue
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        validate_custom_object(obj, test_data, CRD_PLURALS[obj["kind"]])


def test_crd_validation_catches_a_broken_monitor(test_data: Path) -> None:
    """The CRD check is real: a bad enum value and a misspelt field are both rejected."""
    monitor = render(CASES["monitoring-only"]).one("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    with pytest.raises(jsonschema.ValidationError, match="gopher"):
        validate_custom_object(monitor, test_data, "servicemonitors")
    del monitor["spec"]["endpoints"][0]["scheme"]
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "10s"
    with pytest.raises(jsonschema.ValidationError, match="scrapeTimout"):
        validate_custom_object(monitor, test_data, "servicemonitors")


def test_each_case_renders_the_expected_objects() -> None:
    """Toggles decide which objects exist: defaults are minimal, all-on has every kind."""
    defaults = ["ConfigMap", "Deployment", "Service", "ServiceAccount"]
    assert render(CASES["default"]).kinds() == defaults
    assert render(CASES["all-off"]).kinds() == ["ConfigMap", "Deployment"]
    every = set(render(CASES["all-on-servicemonitor"]).kinds())
    assert every >= {"NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "ServiceMonitor"}
    assert "PodMonitor" in render(CASES["all-on-podmonitor"]).kinds()
    monitoring_only = render(CASES["monitoring-only"]).kinds()
    assert "Deployment" not in monitoring_only
    assert {"PrometheusRule", "ServiceMonitor"} <= set(monitoring_only)


def test_client_service_targets_the_proxy_and_keeps_vllm_local() -> None:
    """The client Service exposes only the sidecar's proxy unless vllm.exposePort is set."""
    service = render({}).one("Service")
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", 8080)]
    exposed = render({"vllm": {"exposePort": True}}).one("Service")
    assert [p["targetPort"] for p in exposed["spec"]["ports"]] == [8080, 8000]


def test_sidecar_container_is_locked_down() -> None:
    """The sidecar runs non-root, read-only, without capabilities, with its spool on a volume."""
    rendered = render({})
    sidecar = rendered.container("vllm-sidecar")
    context = sidecar["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    assert mounts["/var/spool/vllm-sidecar"] == "sidecar-spool"
    assert mounts["/tmp"] == "sidecar-tmp"
    volumes = {
        v["name"]: v for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["sidecar-spool"]["emptyDir"] == {"sizeLimit": "1Gi"}
    settings = rendered.sidecar_settings()
    assert settings["spool_dir"].startswith("/var/spool/vllm-sidecar/")
    assert settings["samples_dir"].startswith("/var/spool/vllm-sidecar/")


def test_termination_grace_outlasts_the_drain() -> None:
    """The pod's grace period exceeds the sidecar's drain, and vLLM sleeps through that drain."""
    rendered = render(
        {"sidecar": {"shutdownGraceSeconds": 40}, "terminationGracePeriodSeconds": 90}
    )
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert (
        pod["terminationGracePeriodSeconds"] > rendered.sidecar_settings()["shutdown_grace_seconds"]
    )
    pre_stop = rendered.container("vllm")["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop == ["sleep", "40"]


def test_probes_use_the_documented_endpoints() -> None:
    """vLLM probes /health (with a long startup budget); the sidecar /healthz or /readyz."""
    rendered = render({})
    vllm = rendered.container("vllm")
    assert {vllm[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe")} == {"/health"}
    startup = vllm["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    sidecar = rendered.container("vllm-sidecar")
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/healthz"
    gated = render({"sidecar": {"readinessGatesOnVllm": True}}).container("vllm-sidecar")
    assert gated["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_secrets_are_referenced_never_inlined() -> None:
    """API keys come from existing Secrets: env secretKeyRef for vLLM, files for the sidecar."""
    rendered = render(CASES["all-on-servicemonitor"])
    assert rendered.all("Secret") == []
    vllm_env = {e["name"]: e for e in rendered.container("vllm")["env"]}
    assert vllm_env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "vllm-api-key",
        "key": "api-key",
    }
    settings = rendered.sidecar_settings()
    assert settings["api_keys_file"] == "/etc/vllm-sidecar/secrets/api-keys.yaml"
    assert settings["upstream_api_key_file"] == "/etc/vllm-sidecar/secrets/upstream-api-key"


def test_service_account_carries_workload_identity_annotations() -> None:
    """IRSA / workload-identity annotations land on the ServiceAccount the pod uses."""
    rendered = render(CASES["all-on-servicemonitor"])
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/vllm-sidecar"
    }
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_monitors_label_jobs_the_way_the_rules_expect() -> None:
    """Both monitors relabel job to vllm / vllm-sidecar, the names the alert rules match."""
    for case, kind, key in (
        ("all-on-servicemonitor", "ServiceMonitor", "endpoints"),
        ("all-on-podmonitor", "PodMonitor", "podMetricsEndpoints"),
    ):
        endpoints = render(CASES[case]).one(kind)["spec"][key]
        jobs = [e["relabelings"][0] for e in endpoints]
        assert [j["replacement"] for j in jobs] == ["vllm", "vllm-sidecar"]
        assert all(j["targetLabel"] == "job" for j in jobs)


def test_servicemonitor_finds_the_metrics_service() -> None:
    """The ServiceMonitor's selector and port names match the headless metrics Service."""
    rendered = render(CASES["all-on-servicemonitor"])
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service", f"{RELEASE}-vllm-sidecar-metrics")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {
        p["name"] for p in service["spec"]["ports"]
    }


def test_podmonitor_ports_exist_on_the_pod() -> None:
    """Every PodMonitor endpoint names a containerPort of the pod it selects."""
    rendered = render(CASES["all-on-podmonitor"])
    pod = rendered.one("Deployment")["spec"]["template"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    monitor = rendered.one("PodMonitor")
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_network_policy_opens_only_what_is_needed() -> None:
    """Proxy from the namespace, metrics from monitoring, egress to DNS, HTTPS, Alertmanager."""
    policy = render(CASES["all-on-podmonitor"]).one("NetworkPolicy")["spec"]
    ingress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["ingress"]]
    assert ingress_ports == [[8000, 8080], [8000, 9400]]
    assert policy["ingress"][1]["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
    }
    egress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["egress"]]
    assert egress_ports == [[53, 53], [443], [9093], [9000]]


def test_pod_disruption_budget_prefers_min_available() -> None:
    """minAvailable wins when set; otherwise maxUnavailable bounds voluntary disruptions."""
    with_min = render(CASES["all-on-podmonitor"]).one("PodDisruptionBudget")["spec"]
    assert with_min.get("minAvailable") == 1
    assert "maxUnavailable" not in with_min
    default = render({"podDisruptionBudget": {"enabled": True}}).one("PodDisruptionBudget")
    assert default["spec"]["maxUnavailable"] == 1


def _notes(values: dict[str, Any]) -> str:
    return render(values).notes


def test_notes_tell_how_to_reach_proxy_and_dashboards() -> None:
    """NOTES.txt gives the proxy URL, a port-forward, and the dashboards Grafana will load."""
    notes = _notes(CASES["all-on-servicemonitor"])
    assert "http://llm-vllm-sidecar.ai.svc:80/v1" in notes
    assert "kubectl -n ai port-forward svc/llm-vllm-sidecar" in notes
    assert 'grafana_dashboard="1"' in notes
    assert '"vLLM / Overview"' in notes
    defaults = _notes({})
    assert "WARNING: sidecar.apiKeys.existingSecret is empty" in defaults
    assert "WARNING: sidecar.s3.bucket is empty" in defaults
    assert "Monitoring-only mode" in _notes(CASES["monitoring-only"])
