"""Dashboard model -> committed JSON, and the grafana.com import variant.

The provisioned JSON (``dashboards/json/``) is exactly what the SDK encodes, key-sorted, so it
survives the SDK's own load/re-encode unchanged and diffs stay small. It references the
datasource only through the ``datasource`` variable, because file and sidecar provisioning do not
process ``__inputs`` (grafana/grafana#10786).

The import variant (``dashboards/grafana-com/``) adds ``__inputs``/``__requires`` so the import
screen asks for a Prometheus datasource; the chosen datasource becomes the ``datasource``
variable's default, and panels keep following the variable.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as model

DS_INPUT = "DS_PROMETHEUS"
MIN_GRAFANA = "11.0.0"


def encode(dashboard: model.Dashboard | dict[str, Any]) -> str:
    """Canonical text of a dashboard: 2-space indent, sorted keys, trailing newline."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def reencode(text: str) -> str:
    """Load ``text`` into the SDK's dashboard model and encode it again (the round trip)."""
    register_default_plugins()
    return encode(model.Dashboard.from_json(json.loads(text)))


def _panel_types(data: dict[str, Any]) -> list[str]:
    return sorted({panel["type"] for panel in data.get("panels", []) if panel["type"] != "row"})


def grafana_com_variant(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a provisioned dashboard made for the grafana.com / UI import screen."""
    variant = copy.deepcopy(data)
    variant["__inputs"] = [
        {
            "name": DS_INPUT,
            "label": "Prometheus",
            "description": "The Prometheus that scrapes vLLM and the sidecar.",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    variant["__requires"] = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": MIN_GRAFANA},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        *(
            {"type": "panel", "id": panel_type, "name": panel_type, "version": ""}
            for panel_type in _panel_types(variant)
        ),
    ]
    variant["__elements"] = {}
    variant["editable"] = True
    for variable in variant["templating"]["list"]:
        if variable["type"] == "datasource":
            placeholder = "${" + DS_INPUT + "}"
            variable["current"] = {"selected": True, "text": placeholder, "value": placeholder}
    return variant
