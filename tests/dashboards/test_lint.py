"""A pytest port of the grafana/dashboard-linter rules that matter for our boards, plus our own.

Ported: template-datasource-rule, template-job/instance-rule, template-on-time-change-reload,
panel-datasource-rule, panel-title-description-rule, panel-units-rule, target-rate-interval-rule,
target-counter-agg-rule, target-job/instance-rule (as "matchers on every selector"),
target-promql-rule (through ``promtool check rules``) and uneditable-dashboard. Ours: unique
panel ids/titles/refIds, the KV cache is never summed and always shows the 85% canary, renamed
vLLM metrics always come with their legacy fallback, and the import variant has ``__inputs``.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from dashboards import slo
from tests.dashboards.support import (
    IMPORT_VARIANTS,
    committed_dashboards,
    defaults,
    panels,
    ranges,
    selectors,
    substitute,
    targets,
    variables,
)

BOARDS = committed_dashboards()
BOARD_IDS = sorted(BOARDS)

KNOWN_UNITS = frozenset(
    {"s", "ms", "reqps", "ops", "percentunit", "short", "none", "bytes", "currencyUSD"}
    | {"bool_yes_no"}
)
"""Grafana unit ids we use; a typo here would render raw numbers. ``suffix:`` units are custom."""

FILTERS = {
    "job": 'job=~"$job"',
    "instance": 'instance=~"$instance"',
    "model_name": 'model_name=~"$model_name"',
}
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
RATE_FUNCTIONS = frozenset({"rate", "irate", "increase"})
KV_METRICS = frozenset(
    prefix + name
    for prefix in ("vllm:", "vllm_")
    for name in ("kv_cache_usage_perc", "gpu_cache_usage_perc")
)
RENAMES = {
    "vllm:kv_cache_usage_perc": "vllm:gpu_cache_usage_perc",
    "vllm:inter_token_latency_seconds_bucket": "vllm:time_per_output_token_seconds_bucket",
    "vllm:prefix_cache_hits_total": "vllm:gpu_prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total": "vllm:gpu_prefix_cache_queries_total",
}
BUILTINS = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s"}
SLO_BOARD = "vllm-slo-availability"


def _slo_ranges(board: str) -> set[str]:
    """The fixed windows the SLO board may use (the pack's burn windows and the period)."""
    return {f"[{window}]" for window in slo.WINDOWS} if board == SLO_BOARD else set()


def _all_queries() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (name, panel, target) for name, board in BOARDS.items() for panel, target in targets(board)
    ]


QUERIES = _all_queries()
QUERY_IDS = [f"{name}:{panel['title']}:{target['refId']}" for name, panel, target in QUERIES]


def test_four_dashboards_are_committed() -> None:
    """The overview, requests-through-the-sidecar, capacity and SLO boards all exist."""
    assert BOARD_IDS == [
        "vllm-capacity-cost",
        "vllm-overview",
        "vllm-sidecar-requests",
        "vllm-slo-availability",
    ]


@pytest.mark.parametrize("name", BOARD_IDS)
def test_datasource_variable(name: str) -> None:
    """Exactly one Prometheus datasource variable, named ``datasource``, listed first."""
    board = BOARDS[name]
    datasource_vars = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert [v["name"] for v in datasource_vars] == ["datasource"]
    assert datasource_vars[0]["query"] == "prometheus"
    assert board["templating"]["list"][0]["name"] == "datasource"


@pytest.mark.parametrize("name", BOARD_IDS)
def test_filter_variables(name: str) -> None:
    """job, model_name and instance filters: multi, All = .*, reloaded on time change."""
    found = variables(BOARDS[name])
    for filter_name in FILTERS:
        variable = found[filter_name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert variable["allValue"] == ".*"
        assert variable["refresh"] == 2, "refresh on time-range change"
        assert variable["query"].startswith("label_values(")


@pytest.mark.parametrize("name", BOARD_IDS)
def test_panels_use_the_datasource_variable(name: str) -> None:
    """Every panel and every query points at ``${datasource}``, never at a fixed datasource."""
    for panel in panels(BOARDS[name]):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("name", BOARD_IDS)
def test_every_panel_has_title_description_and_unit(name: str) -> None:
    """Title, a one-sentence description and a known unit on every panel."""
    for panel in panels(BOARDS[name]):
        title = panel["title"]
        assert title.strip(), "untitled panel"
        description = panel.get("description", "")
        assert len(description) > 20, f"{title}: description missing or too short"
        assert description.endswith((".", ")")), f"{title}: description is not a sentence"
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        assert unit in KNOWN_UNITS or unit.startswith("suffix:"), f"{title}: unit {unit!r}"
        assert panel["targets"], f"{title}: no queries"


@pytest.mark.parametrize("name", BOARD_IDS)
def test_unique_panel_ids_titles_and_ref_ids(name: str) -> None:
    """Panel ids (rows included) and titles are unique per board; refIds unique per panel."""
    board = BOARDS[name]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(panel_id, int) and panel_id > 0 for panel_id in ids)
    titles = [panel["title"] for panel in board["panels"]]
    assert len(titles) == len(set(titles)), sorted(t for t in titles if titles.count(t) > 1)
    for panel in panels(board):
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert all(ref_ids), panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_uids_are_stable_and_unique() -> None:
    """Each board has its own fixed uid (links and alert annotations rely on it)."""
    uids = [board["uid"] for board in BOARDS.values()]
    assert len(set(uids)) == len(uids)
    assert all(uid.startswith("vllm-sidecar-") and len(uid) <= 40 for uid in uids)


@pytest.mark.parametrize("name", BOARD_IDS)
def test_provisioned_boards_are_not_editable_and_have_no_inputs(name: str) -> None:
    """Provisioned JSON is read-only and never depends on ``__inputs`` (not processed there)."""
    board = BOARDS[name]
    assert board["editable"] is False
    assert "__inputs" not in board
    assert "${DS_" not in json.dumps(board)


@pytest.mark.parametrize(("name", "panel", "target"), QUERIES, ids=QUERY_IDS)
def test_rate_windows_use_rate_interval(
    name: str, panel: dict[str, Any], target: dict[str, Any]
) -> None:
    """Every range and subquery window is ``$__rate_interval``, never a hard-coded duration.

    The SLO board is the exception by design: a budget is spent over the SLO's own windows.
    """
    allowed = {"[$__rate_interval]", "[$__rate_interval:]"} | _slo_ranges(name)
    for window in ranges(target["expr"]):
        assert window in allowed, window


@pytest.mark.parametrize(("name", "panel", "target"), QUERIES, ids=QUERY_IDS)
def test_counters_are_rated(name: str, panel: dict[str, Any], target: dict[str, Any]) -> None:
    """Counters and histogram parts only appear inside rate/irate/increase."""
    for found in selectors(target["expr"]):
        if found.name.endswith(COUNTER_SUFFIXES):
            assert found.function in RATE_FUNCTIONS, f"{found.name} used raw"
            assert found.range in {"[$__rate_interval]"} | _slo_ranges(name)


@pytest.mark.parametrize(("name", "panel", "target"), QUERIES, ids=QUERY_IDS)
def test_no_range_vector_selects_by_a_name_regex(
    name: str, panel: dict[str, Any], target: dict[str, Any]
) -> None:
    """A range over ``{__name__=~"vllm:x|vllm_x"}`` fails whenever both spellings share the
    window ("vector cannot contain metrics with the same labelset"); only the ``or`` of one
    range per spelling is safe (``sidecar.alerting.promql.each_spelling``)."""
    del name, panel
    for found in selectors(target["expr"]):
        if found.range is not None:
            assert found.name, f"range over a name regex: {found.matchers}{found.range}"
            assert "__name__" not in found.matchers, found.matchers


@pytest.mark.parametrize(("name", "panel", "target"), QUERIES, ids=QUERY_IDS)
def test_matchers_on_every_selector(
    name: str, panel: dict[str, Any], target: dict[str, Any]
) -> None:
    """vLLM series filter on job/instance/model, sidecar series on job/instance, ALERTS on model."""
    found = selectors(target["expr"])
    assert found, "query without a selector"
    for selector in found:
        if selector.name.startswith("vllm_sidecar_"):
            required = ["job", "instance"]
        elif selector.name.startswith(("vllm:", "vllm_")):
            required = ["job", "instance", "model_name"]
        elif selector.name == "ALERTS":
            assert 'model_name=~"$model_name|"' in selector.matchers
            required = []
        else:
            pytest.fail(f"selector of an unexpected family: {selector.name!r}")
        for label in required:
            assert FILTERS[label] in selector.matchers, f"{selector.name} lacks {label}"


@pytest.mark.parametrize(("name", "panel", "target"), QUERIES, ids=QUERY_IDS)
def test_kv_cache_is_never_summed(name: str, panel: dict[str, Any], target: dict[str, Any]) -> None:
    """A sum of per-engine KV fractions means nothing: only max/avg/min may aggregate it."""
    for selector in selectors(target["expr"]):
        if selector.name in KV_METRICS:
            assert "sum" not in selector.enclosing, target["expr"]


@pytest.mark.parametrize(("name", "panel", "target"), QUERIES, ids=QUERY_IDS)
def test_renamed_metrics_come_with_legacy_fallback(
    name: str, panel: dict[str, Any], target: dict[str, Any]
) -> None:
    """Wherever a current vLLM name is queried, its pre-rename name is queried with ``or``."""
    names = {selector.name for selector in selectors(target["expr"])}
    for current, legacy in RENAMES.items():
        if current in names:
            assert legacy in names, f"{current} without {legacy}"
            assert " or " in target["expr"]


@pytest.mark.parametrize(("name", "panel", "target"), QUERIES, ids=QUERY_IDS)
def test_vllm_metrics_in_both_spellings(
    name: str, panel: dict[str, Any], target: dict[str, Any]
) -> None:
    """Each ``vllm:x`` selector comes with ``vllm_x`` (OpenMetrics escaping), same matchers."""
    found = [(s.name, s.matchers, s.range) for s in selectors(target["expr"])]
    colon = [item for item in found if item[0].startswith("vllm:")]
    underscore = [
        item
        for item in found
        if item[0].startswith("vllm_") and not item[0].startswith("vllm_sidecar_")
    ]
    assert sorted(("vllm_" + n.removeprefix("vllm:"), m, r) for n, m, r in colon) == sorted(
        underscore
    )


@pytest.mark.parametrize("name", BOARD_IDS)
def test_kv_panels_draw_the_canary(name: str) -> None:
    """Every panel showing KV-cache usage marks 85%, dashed on time series."""
    for panel in panels(BOARDS[name]):
        names = {s.name for target in panel["targets"] for s in selectors(target["expr"])}
        if not names & KV_METRICS:
            continue
        defaults_ = panel["fieldConfig"]["defaults"]
        steps = [step["value"] for step in defaults_["thresholds"]["steps"]]
        assert 0.85 in steps, panel["title"]
        if panel["type"] == "timeseries":
            assert defaults_["custom"]["thresholdsStyle"]["mode"] != "off", panel["title"]


@pytest.mark.parametrize("name", BOARD_IDS)
def test_heatmaps_use_prebucketed_rates(name: str) -> None:
    """Heatmaps read ``sum by (le)`` bucket rates in heatmap format, not recalculated."""
    for panel in panels(BOARDS[name]):
        if panel["type"] != "heatmap":
            continue
        (target,) = panel["targets"]
        assert target["format"] == "heatmap"
        assert target["expr"].startswith("sum by (le) ((rate(")
        assert panel["options"]["calculate"] is False


@pytest.mark.parametrize("name", BOARD_IDS)
def test_import_variant_has_inputs(name: str) -> None:
    """The grafana.com variant asks for a Prometheus datasource and is otherwise the same board."""
    variant = json.loads((IMPORT_VARIANTS / f"{name}.json").read_text(encoding="utf-8"))
    (ds_input,) = variant["__inputs"]
    assert ds_input["name"] == "DS_PROMETHEUS"
    assert ds_input["type"] == "datasource"
    assert ds_input["pluginId"] == "prometheus"
    requires = {(item["type"], item["id"]) for item in variant["__requires"]}
    assert ("datasource", "prometheus") in requires
    assert {("panel", panel["type"]) for panel in panels(variant)} <= requires
    datasource = variables(variant)["datasource"]
    assert datasource["current"]["value"] == "${DS_PROMETHEUS}"
    assert variant["panels"] == BOARDS[name]["panels"]


def test_every_query_parses_with_promtool(tmp_path: Any) -> None:
    """All queries, variables substituted, are valid PromQL according to promtool."""
    rules = []
    for index, (name, _panel, target) in enumerate(QUERIES):
        expr = substitute(target["expr"], defaults(BOARDS[name], BUILTINS))
        rules.append({"record": f"dashboard_query_{index}", "expr": expr})
    rule_file = tmp_path / "queries.rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
