"""Panel and variable factories on top of ``grafana-foundation-sdk`` with the house defaults.

Every panel gets the templated datasource, a title, a description, a unit and stable ids; every
query gets an explicit ``refId`` and legend. :class:`Board` lays panels out on the 24-column grid
(rows expanded, three 8-wide panels per line by default) and numbers them, so ids and positions
never depend on Grafana filling them in at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["vllm", "vllm-sidecar"]

KV_CANARY = 0.85
"""The KV-cache saturation canary drawn on every KV panel (same number as the alert pack)."""


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target: expression, legend, and whether Grafana should ask for one instant."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    table: bool = False


def _targets(queries: Sequence[Query]) -> list[prometheus.Dataquery]:
    targets = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
        )
        target = target.instant() if query.instant else target.range()
        if query.table:
            target = target.format(PromQueryFormat.TABLE)
        targets.append(target)
    return targets


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds; the first step's value is ``None`` (minus infinity)."""
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


NEUTRAL = thresholds((None, "green"))
KV_THRESHOLDS = thresholds((None, "green"), (KV_CANARY, "orange"), (0.95, "red"))


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    min_value: float | None = 0,
    max_value: float | None = None,
    limits: dash.ThresholdsConfig | None = None,
    width: int = 8,
    height: int = 8,
) -> timeseries.Panel:
    """A line chart; ``limits`` are drawn as dashed lines (e.g. the 85% KV canary)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .thresholds(limits or NEUTRAL)
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
                if limits
                else common.GraphThresholdsStyleMode.OFF
            )
        )
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def stat_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    limits: dash.ThresholdsConfig | None = None,
    mappings: Sequence[model.ValueMap] = (),
    decimals: float | None = None,
    width: int = 4,
    height: int = 4,
) -> stat.Panel:
    """A single number (last value) with an area sparkline."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(limits or NEUTRAL)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if mappings:
        panel = panel.mappings(list(mappings))
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def heatmap_panel(
    title: str,
    description: str,
    y_unit: str,
    bucket_rate_by_le: str,
    *,
    width: int = 12,
    height: int = 8,
) -> heatmap.Panel:
    """A heatmap of pre-bucketed histogram rates (``sum by (le) (rate(..._bucket[..]))``)."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(y_unit)
        .span(width)
        .height(height)
        .calculate(False)
        .hide_from(common_builders.HideSeriesConfig().legend(False).tooltip(False).viz(False))
        .scale_distribution(
            common_builders.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR)
        )
        .y_axis(heatmap.YAxisConfig().unit(y_unit))
        .cell_values(heatmap.CellValues().unit("reqps"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .fill("dark-orange")
            .scale(heatmap_model.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .reverse(False)
        )
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
        .with_target(
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .expr(bucket_rate_by_le)
            .legend_format("{{le}}")
            .format(PromQueryFormat.HEATMAP)
            .range()
            .ref_id("A")
        )
    )


def table_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    """An instant table (one row per label set)."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .align(common.FieldTextAlignment.AUTO)
        .inspect(False)
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True}}
            )
        )
    )
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel
