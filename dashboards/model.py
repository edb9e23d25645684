"""Dashboards as plain values, and the JSON Grafana reads: pure, no I/O.

A `Dashboard` holds `Panel`s in reading order and the template `Variable`s its queries
use; `dashboard_json` lays the panels out on Grafana's 24-column grid (left to right,
wrapping), numbers them, and points every panel and query at one data source by uid.
Queries are raw InfluxQL (`rawQuery: true`) with Grafana's macros (`$timeFilter`,
`$__interval`) and the dashboard's variables (`$site`): `ruche.dashboards.macros`
expands them the way Grafana does, for the tests.

The panel constructors (`stat`, `timeseries`, `bars`, `table`, `heatmap`, `piechart`)
carry the few options each Grafana panel type needs, so a dashboard module reads as a
list of titles and queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, Unpack

DATASOURCE_TYPE = "influxdb"
DATASOURCE_UID = "ruche-influxdb"
"""Fixed, so dashboards exported or pushed anywhere find their data source."""
SCHEMA_VERSION = 39
"""Grafana's dashboard schema version these dashboards are written for (Grafana 10.4+)."""
GRID_COLUMNS = 24

ResultFormat = Literal["time_series", "table"]
PanelType = Literal["stat", "timeseries", "table", "heatmap", "piechart"]


@dataclass(frozen=True, slots=True)
class Query:
    """One raw InfluxQL query of a panel; `alias` names its series (`$tag_desk`).

    Written over several lines for reading, kept on one: runs of whitespace become one
    space, none is kept inside parentheses (InfluxQL reads them alike; no query here
    quotes a string holding two spaces or a space by a parenthesis).
    """

    influxql: str
    alias: str | None = None
    result_format: ResultFormat = "time_series"

    def __post_init__(self) -> None:
        text = " ".join(self.influxql.split()).replace("( ", "(").replace(" )", ")")
        object.__setattr__(self, "influxql", text)
        if not self.influxql:
            raise ValueError("a query is empty")


@dataclass(frozen=True, slots=True)
class Panel:
    """One panel: its Grafana type, queries, size in grid units and display options.

    `time_from` overrides the dashboard's time range for this panel ("15m": the last 15
    minutes, whatever the dashboard shows); `interval` is the smallest `$__interval`
    Grafana may give its queries.
    """

    title: str
    type: PanelType
    queries: tuple[Query, ...]
    description: str = ""
    width: int = 12
    height: int = 8
    unit: str | None = None
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    time_from: str | None = None
    interval: str | None = None
    mappings: tuple[Mapping[str, Any], ...] = ()
    custom: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.queries:
            raise ValueError(f"panel {self.title!r} has no query")
        if not 1 <= self.width <= GRID_COLUMNS:
            raise ValueError(f"panel {self.title!r}: width must be 1 to {GRID_COLUMNS}")
        if self.height < 1:
            raise ValueError(f"panel {self.title!r}: height must be at least 1")


@dataclass(frozen=True, slots=True)
class Variable:
    """A template variable filled by an InfluxQL query (`SHOW TAG VALUES ...`)."""

    name: str
    label: str
    query: str
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None


@dataclass(frozen=True, slots=True)
class Constant:
    """A template variable the viewer types (a textbox), with its default."""

    name: str
    label: str
    default: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Dashboard:
    """One dashboard: uid (stable across exports and pushes), title, panels in reading order."""

    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable | Constant, ...] = ()
    time_from: str = "now-24h"
    refresh: str = ""
    tags: tuple[str, ...] = ("ruche",)

    def __post_init__(self) -> None:
        if not self.uid or len(self.uid) > 40:
            raise ValueError(f"dashboard uid {self.uid!r} must be 1 to 40 characters")
        if not self.panels:
            raise ValueError(f"dashboard {self.uid} has no panel")
        titles = [p.title for p in self.panels]
        if len(set(titles)) != len(titles):
            raise ValueError(f"dashboard {self.uid} has two panels with one title")


# --- panel constructors --------------------------------------------------------------------


class PanelOptions(TypedDict, total=False):
    """What a dashboard module may set on any panel (the constructors set the rest)."""

    description: str
    width: int
    height: int
    unit: str
    decimals: int
    min: float
    max: float
    time_from: str
    interval: str
    mappings: tuple[Mapping[str, Any], ...]


_LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
_REDUCE_LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def stat(title: str, *queries: Query, **kwargs: Unpack[PanelOptions]) -> Panel:
    """A big number: the last value of each series."""
    options = {
        "reduceOptions": _REDUCE_LAST,
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
        "wideLayout": True,
        "showPercentChange": False,
    }
    kwargs.setdefault("width", 6)
    return Panel(title, "stat", queries, options=options, **kwargs)


def timeseries(
    title: str,
    *queries: Query,
    stack: bool = False,
    steps: bool = False,
    **kwargs: Unpack[PanelOptions],
) -> Panel:
    """Lines over time; `steps` holds each value until the next (a state, not a trend)."""
    custom = {
        "drawStyle": "line",
        "lineInterpolation": "stepAfter" if steps else "linear",
        "lineWidth": 1,
        "fillOpacity": 10,
        "spanNulls": False,
        "showPoints": "never",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    options = {"legend": _LEGEND, "tooltip": {"mode": "multi", "sort": "none"}}
    return Panel(title, "timeseries", queries, custom=custom, options=options, **kwargs)


def bars(title: str, *queries: Query, stack: bool = False, **kwargs: Unpack[PanelOptions]) -> Panel:
    """Bars over time (one bar per `GROUP BY time` bucket)."""
    custom = {
        "drawStyle": "bars",
        "lineWidth": 1,
        "fillOpacity": 80,
        "showPoints": "never",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    options = {"legend": _LEGEND, "tooltip": {"mode": "multi", "sort": "none"}}
    return Panel(title, "timeseries", queries, custom=custom, options=options, **kwargs)


def table(title: str, *queries: Query, **kwargs: Unpack[PanelOptions]) -> Panel:
    """Rows as InfluxDB returns them (queries should use `result_format="table"`)."""
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return Panel(title, "table", queries, options=options, **kwargs)


def heatmap(title: str, *queries: Query, **kwargs: Unpack[PanelOptions]) -> Panel:
    """Cells coloured by value: one row per series (desk), one column per time bucket."""
    options = {
        "calculate": False,
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5,
                  "fill": "dark-orange", "reverse": False},
        "yAxis": {"axisPlacement": "left", "reverse": False},
        "rowsFrame": {"layout": "auto"},
        "legend": {"show": True},
        "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
        "showValue": "never",
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
    }  # fmt: skip
    return Panel(title, "heatmap", queries, options=options, **kwargs)


def piechart(title: str, *queries: Query, **kwargs: Unpack[PanelOptions]) -> Panel:
    """Shares of a whole: one slice per field of the last row."""
    options = {
        "reduceOptions": _REDUCE_LAST,
        "pieType": "donut",
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                   "values": ["value"]},
        "tooltip": {"mode": "single", "sort": "none"},
        "displayLabels": ["value"],
    }  # fmt: skip
    kwargs.setdefault("width", 6)
    return Panel(title, "piechart", queries, options=options, **kwargs)


# --- JSON ----------------------------------------------------------------------------------


def datasource_ref(uid: str = DATASOURCE_UID) -> dict[str, str]:
    return {"type": DATASOURCE_TYPE, "uid": uid}


def _target(query: Query, ref_id: str, datasource: dict[str, str]) -> dict[str, Any]:
    target: dict[str, Any] = {
        "refId": ref_id,
        "datasource": datasource,
        "query": query.influxql,
        "rawQuery": True,
        "resultFormat": query.result_format,
    }
    if query.alias is not None:
        target["alias"] = query.alias
    return target


def _ref_id(index: int) -> str:
    """A, B, ... Z, AA, AB, ...: Grafana's own naming of a panel's queries."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"custom": dict(panel.custom), "mappings": list(panel.mappings)}
    for key in ("unit", "decimals", "min", "max"):
        value = getattr(panel, key)
        if value is not None:
            defaults[key] = value
    return {"defaults": defaults, "overrides": []}


def _panel_json(
    panel: Panel, panel_id: int, grid: dict[str, int], datasource: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.type,
        "title": panel.title,
        "description": panel.description,
        "gridPos": grid,
        "datasource": datasource,
        "targets": [_target(q, _ref_id(i), datasource) for i, q in enumerate(panel.queries)],
        "fieldConfig": _field_config(panel),
        "options": dict(panel.options),
    }
    if panel.time_from is not None:
        out["timeFrom"] = panel.time_from
    if panel.interval is not None:
        out["interval"] = panel.interval
    return out


def layout(panels: Sequence[Panel]) -> list[dict[str, int]]:
    """Each panel's `gridPos`: left to right, a new row when the next one does not fit."""
    grids: list[dict[str, int]] = []
    x = y = row_height = 0
    for panel in panels:
        if x + panel.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        grids.append({"x": x, "y": y, "w": panel.width, "h": panel.height})
        x += panel.width
        row_height = max(row_height, panel.height)
    return grids


def _variable_json(variable: Variable | Constant, datasource: dict[str, str]) -> dict[str, Any]:
    if isinstance(variable, Constant):
        return {
            "type": "textbox",
            "name": variable.name,
            "label": variable.label,
            "description": variable.description,
            "query": variable.default,
            "current": {"text": variable.default, "value": variable.default},
            "hide": 0,
        }
    out: dict[str, Any] = {
        "type": "query",
        "name": variable.name,
        "label": variable.label,
        "datasource": datasource,
        "query": variable.query,
        "definition": variable.query,
        "refresh": 1,  # on dashboard load: new sites and desks appear without editing
        "sort": 1,
        "multi": variable.multi,
        "includeAll": variable.include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }
    if variable.all_value is not None:
        out["allValue"] = variable.all_value
    return out


def dashboard_json(dashboard: Dashboard, *, datasource_uid: str = DATASOURCE_UID) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what file provisioning and the API take)."""
    datasource = datasource_ref(datasource_uid)
    grids = layout(dashboard.panels)
    return {
        "id": None,
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": dashboard.time_from, "to": "now"},
        "refresh": dashboard.refresh,
        "templating": {"list": [_variable_json(v, datasource) for v in dashboard.variables]},
        "annotations": {"list": []},
        "links": [],
        "panels": [
            _panel_json(panel, number, grid, datasource)
            for number, (panel, grid) in enumerate(zip(dashboard.panels, grids, strict=True), 1)
        ],
    }
