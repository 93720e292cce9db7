"""The Grafana provisioning files of the single-VM recipe are well-formed and fit the boards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.dashboards.support import DASHBOARDS, committed_dashboards

PROVISIONING = DASHBOARDS / "provisioning"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1
    return data


def test_datasource_is_prometheus_with_scrape_interval() -> None:
    """One Prometheus datasource whose timeInterval lets Grafana size $__rate_interval."""
    (datasource,) = _load(PROVISIONING / "datasources" / "vllm-sidecar.yaml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["access"] == "proxy"
    assert datasource["url"].startswith("http://127.0.0.1:")
    assert re.fullmatch(r"\d+[smh]", datasource["jsonData"]["timeInterval"])
    assert datasource["uid"]


def test_dashboard_provider_serves_read_only_files() -> None:
    """A file provider at an absolute path, UI edits off (the JSON is generated)."""
    (provider,) = _load(PROVISIONING / "dashboards" / "vllm-sidecar.yaml")["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    assert Path(provider["options"]["path"]).is_absolute()
    assert all(board["editable"] is False for board in committed_dashboards().values())


def test_provisioned_boards_need_no_datasource_uid() -> None:
    """Boards pick the datasource through their variable, so any datasource name/uid works."""
    for board in committed_dashboards().values():
        assert "vllm-sidecar-prometheus" not in str(board)
