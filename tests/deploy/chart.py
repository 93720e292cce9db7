"""Render the chart offline with Helm's own Go SDK (helm-python-sdk) and sort what comes out.

Helm lint and render run in-process through ``helm_python``: no ``helm`` binary, no cluster. The
value matrix is the chart's ``ci/*-values.yaml`` (the files chart-testing would install), so the
cases the tests render are the cases CI elsewhere would deploy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "vllm-sidecar"
RELEASE = "llm"
NAMESPACE = "ai"
MONITORING_GROUP = "monitoring.coreos.com/"
KUBE_VERSIONS = ("1.25", "1.33")
"""The chart's minimum (Chart.yaml kubeVersion) and a current release."""


def matrix() -> dict[str, dict[str, Any]]:
    """Case name -> values, from ``ci/<case>-values.yaml``."""
    return {
        path.name.removesuffix("-values.yaml"): yaml.safe_load(path.read_text("utf-8")) or {}
        for path in sorted((CHART_DIR / "ci").glob("*-values.yaml"))
    }


@cache
def chart() -> helm_python.Chart:
    """The chart, loaded once per test run (Helm charts are immutable once loaded)."""
    return helm_python.Chart.load(CHART_DIR)


@dataclass(frozen=True)
class Rendered:
    """The objects and NOTES of one ``helm template``."""

    objects: list[dict[str, Any]]
    notes: str

    def kinds(self) -> list[str]:
        """Kinds of every object, sorted."""
        return sorted(obj["kind"] for obj in self.objects)

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The single object of ``kind`` (and ``name``); fails if there is not exactly one."""
        found = [
            obj
            for obj in self.objects
            if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every object of ``kind``."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def container(self, name: str) -> dict[str, Any]:
        """A container of the Deployment's pod template."""
        pod = self.one("Deployment")["spec"]["template"]["spec"]
        (found,) = [c for c in pod["containers"] if c["name"] == name]
        return dict(found)

    def sidecar_settings(self) -> dict[str, Any]:
        """The sidecar's settings file, parsed."""
        config = self.one("ConfigMap", f"{RELEASE}-vllm-sidecar-config")
        settings: dict[str, Any] = yaml.safe_load(config["data"]["config.yaml"])
        return settings


def render(values: Mapping[str, Any] | None = None) -> Rendered:
    """``helm template llm helm/vllm-sidecar -n ai -f values`` as parsed objects."""
    manifests = chart().render(copy.deepcopy(dict(values or {})), name=RELEASE, namespace=NAMESPACE)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(objects=objects, notes=notes)


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Values layered like repeated ``-f`` flags (later maps win, key by key)."""
    result: dict[str, Any] = {}
    for layer in layers:
        _merge_into(result, layer)
    return result


def _merge_into(target: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def crd_schema(test_data: Path, plural: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one Prometheus Operator CRD in ``test_data/k8s-crds``."""
    path = test_data / "k8s-crds" / f"monitoring.coreos.com_{plural}.yaml"
    crd = yaml.safe_load(path.read_text("utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def closed(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict field validation does.

    OpenAPI schemas leave objects open (the server prunes unknown fields), so a misspelt field
    would pass a plain check; closing every object that lists its properties catches it.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    preserves = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in schema and "additionalProperties" not in schema and not preserves:
        result["additionalProperties"] = False
    return result


def validate_custom_object(obj: Mapping[str, Any], test_data: Path, plural: str) -> None:
    """Validate a rendered ServiceMonitor/PodMonitor/PrometheusRule against its CRD, strictly.

    Draft 7 semantics without checking the schema itself: the CRDs carry Go regular expressions
    (``^(?i)...``) that Python's metaschema check would refuse.
    """
    schema = closed(crd_schema(test_data, plural))
    jsonschema.Draft7Validator(schema).validate(dict(obj))


def values_paths(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every key in a values tree."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, Mapping):
            yield from values_paths(value, f"{path}.")
