"""The chart's copies of rules and dashboards (and the VM's Alertmanager config) never drift."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from helm import sync
from sidecar.alerting.catalogue import RULES
from sidecar.alerting.spec import AlertRule, Severity, Unit
from tests.deploy.chart import CHART_DIR, ROOT, render


def test_committed_copies_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m helm.sync --check` finds nothing to rewrite in the working tree."""
    assert sync.main(["--check"]) == 0, capsys.readouterr().out


def _scratch_repo(tmp_path: Path) -> Path:
    """The inputs and outputs of the sync, copied so a test may edit them."""
    for part in ("alerts", "dashboards/json", "helm/vllm-sidecar", "deploy/vm/alertmanager"):
        shutil.copytree(ROOT / part, tmp_path / part)
    return tmp_path


def test_check_names_stale_and_stray_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 1 naming an edited copy and a stray dashboard; a sync repairs both."""
    repo = _scratch_repo(tmp_path)
    copies = repo / "helm/vllm-sidecar/files"
    rules = copies / "prometheus-rules.yaml"
    rules.write_text(rules.read_text("utf-8").replace("for: 5m", "for: 6m", 1), "utf-8")
    (copies / "dashboards/old-board.json").write_text("{}", "utf-8")
    assert sync.main(["--check", "--repo", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "helm/vllm-sidecar/files/prometheus-rules.yaml" in out
    assert "helm/vllm-sidecar/files/dashboards/old-board.json" in out
    assert sync.main(["--repo", str(repo)]) == 0
    assert sync.main(["--check", "--repo", str(repo)]) == 0
    assert not (copies / "dashboards/old-board.json").exists()


def test_a_new_dashboard_is_copied(tmp_path: Path) -> None:
    """A board added to dashboards/json appears in the chart after a sync."""
    repo = _scratch_repo(tmp_path)
    (repo / "dashboards/json/vllm-new.json").write_text('{"title": "New"}\n', "utf-8")
    assert sync.main(["--repo", str(repo)]) == 0
    assert (repo / "helm/vllm-sidecar/files/dashboards/vllm-new.json").read_text() == (
        '{"title": "New"}\n'
    )


def test_dashboard_configmaps_carry_the_boards_verbatim() -> None:
    """One labelled ConfigMap per board in dashboards/json, holding exactly that file."""
    maps = render({"dashboards": {"enabled": True}}).all("ConfigMap")
    boards = {key: text for cm in maps for key, text in cm["data"].items() if key.endswith(".json")}
    sources = {p.name: p.read_text("utf-8") for p in (ROOT / "dashboards/json").glob("*.json")}
    assert boards == sources
    for cm in maps:
        if any(key.endswith(".json") for key in cm["data"]):
            assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert len(json.dumps(cm)) < 1024 * 1024, "a ConfigMap is limited to 1 MiB"


def test_marker_extraction_refuses_a_threshold_it_cannot_place() -> None:
    """A rule that prints its threshold twice cannot be templated, and says so."""
    rule = AlertRule(
        name="VLLMTwice",
        severity=Severity.WARNING,
        summary="Twice.",
        description="Twice.",
        expr=lambda _config, threshold: f"a > {threshold:.10g} or b > {threshold:.10g}",
        evaluate=None,
        threshold=1.0,
        unit=Unit.RATIO,
    )
    default = {"alert": "VLLMTwice", "expr": "a > 1 or b > 1"}
    with pytest.raises(sync.SyncError, match="exactly once"):
        sync._marked_rule(rule, default)


def test_every_overridable_alert_has_defaults_in_the_copy() -> None:
    """The rules copy lists each overridable alert with its default `for` and threshold."""
    copy = yaml.safe_load((CHART_DIR / sync.RULES_COPY).read_text("utf-8"))
    for rule in RULES:
        if not rule.overridable:
            continue
        meta = copy["overridable"][rule.name]
        assert meta.get("threshold") == rule.threshold
        if rule.threshold is not None:
            assert meta["unit"] == rule.unit.value


def test_vm_alertmanager_routes_like_the_example() -> None:
    """The VM's Alertmanager config keeps the example's routes and inhibitions."""
    example = yaml.safe_load((ROOT / "alerts/alertmanager.example.yaml").read_text("utf-8"))
    vm = yaml.safe_load(sync.VM_ALERTMANAGER.read_text("utf-8"))
    assert vm["route"] == example["route"]
    assert vm["inhibit_rules"] == example["inhibit_rules"]
    assert [r["name"] for r in vm["receivers"]] == [r["name"] for r in example["receivers"]]
