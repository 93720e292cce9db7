"""Dashboard skeleton: template variables, links, and a builder that numbers and lays out panels.

Variables follow one chain on every board: ``datasource`` first, then ``job``, ``model_name``
and ``instance``, each multi-valued with *All* = ``.*`` and refreshed on time-range change, so
the same board works for one server (everything *All*) and for a fleet (pick a model, or a pod).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import DATASOURCE, TAGS

ALL = model.VariableOption(selected=True, text=["All"], value=["$__all"])


PanelBuilder = timeseries.Panel | stat.Panel | heatmap.Panel | table.Panel


def datasource_variable() -> dash.DatasourceVariable:
    """The one Prometheus datasource variable every panel and query points at."""
    return (
        dash.DatasourceVariable("datasource")
        .label("Data source")
        .description("The Prometheus that scrapes vLLM and the sidecar.")
        .type("prometheus")
    )


def query_variable(name: str, label: str, query: str, description: str) -> dash.QueryVariable:
    """A multi-valued label filter with *All* meaning ``.*`` (also matches a missing label)."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .current(ALL)
    )


def _with_matchers(series: str, matchers: str) -> str:
    """``name{matchers}``, or ``{__name__=~"..", matchers}`` for a braces-only selector."""
    if not matchers:
        return series
    if series.endswith("}"):
        return f"{series[:-1]}, {matchers}}}"
    return f"{series}{{{matchers}}}"


def filter_chain(series: str, model_series: str | None = None) -> list[dash.QueryVariable]:
    """``job`` -> ``model_name`` -> ``instance`` variables read from the labels of ``series``.

    ``series`` is a metric name or a braces-only selector (``{__name__=~"a|b"}``).
    ``model_series`` names a different series for the model list when ``series`` has no
    ``model_name`` label (the sidecar's process-wide series); instances are then not narrowed by
    model.
    """
    job = 'job=~"$job"'
    models = _with_matchers(model_series or series, job)
    instances = _with_matchers(series, job if model_series else f'{job}, model_name=~"$model_name"')
    return [
        query_variable(
            "job",
            "Job",
            f"label_values({series}, job)",
            "Prometheus scrape job(s) to include.",
        ),
        query_variable(
            "model_name",
            "Model",
            f"label_values({models}, model_name)",
            "Served model name(s) (vLLM's --served-model-name).",
        ),
        query_variable(
            "instance",
            "Instance",
            f"label_values({instances}, instance)",
            "Scrape target(s): one vLLM server or sidecar per instance.",
        ),
    ]


def number_variable(name: str, label: str, default: str, description: str) -> dash.TextBoxVariable:
    """A free-form number typed by the user (prices, GPU counts) and pasted into PromQL."""
    return (
        dash.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(default)
        .current(model.VariableOption(selected=True, text=default, value=default))
    )


class Board:
    """Collects rows and panels in order, giving each a unique id."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self._builder = (
            dash.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .readonly()
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .refresh("30s")
            .time("now-1h", "now")
            .timezone("browser")
            .annotation(
                dash.AnnotationQuery()
                .name("Annotations & Alerts")
                .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                .enable(True)
                .hide(True)
                .icon_color("rgba(0, 211, 255, 1)")
                .type("dashboard")
                .built_in(1)
            )
            .with_variable(datasource_variable())
            .link(
                dash.DashboardLink("vLLM sidecar dashboards")
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags(["vllm-sidecar"])
                .as_dropdown(True)
                .keep_time(True)
                .include_vars(False)
            )
        )
        self._next_id = 1

    def variable(self, variable: cogbuilder.Builder[model.VariableModel]) -> Board:
        """Append a template variable (after ``datasource``)."""
        self._builder = self._builder.with_variable(variable)
        return self

    def row(self, title: str) -> Board:
        """Start a new (expanded) row."""
        self._builder = self._builder.with_row(dash.Row(title).id(self._take_id()))
        return self

    def add(self, *panels: PanelBuilder) -> Board:
        """Append panels left to right, wrapping at 24 columns."""
        for panel in panels:
            self._builder = self._builder.with_panel(panel.id(self._take_id()))
        return self

    def build(self) -> model.Dashboard:
        """The finished dashboard model."""
        return self._builder.build()

    def _take_id(self) -> int:
        taken = self._next_id
        self._next_id += 1
        return taken
