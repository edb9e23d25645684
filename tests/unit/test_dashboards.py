"""The dashboards as Grafana reads them: the JSON model's required structure, the
provisioning files, the macros Grafana fills in, the CLI's export, and the `booking`
point the bookings dashboard charts."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ruche.cli import main
from ruche.dashboards.catalogue import DASHBOARDS
from ruche.dashboards.datasource import Datasource
from ruche.dashboards.export import export
from ruche.dashboards.macros import (
    MacroError,
    auto_interval,
    expand,
    format_duration,
    parse_duration,
    regex_value,
)
from ruche.dashboards.model import (
    DATASOURCE_UID,
    GRID_COLUMNS,
    Dashboard,
    Panel,
    Query,
    dashboard_json,
    layout,
    stat,
)
from ruche.server.timeseries.points import ChartedBooking, booking_point

ROOT = Path(__file__).resolve().parents[2]
PANEL_TYPES = {"stat", "timeseries", "table", "heatmap", "piechart"}
MODELS = [dashboard_json(d) for d in DASHBOARDS]
START = datetime(2026, 11, 24, 8, tzinfo=UTC)


def variables_of(model: dict[str, Any]) -> dict[str, str | list[str]]:
    """A value for each of the dashboard's variables: a list for a multi-valued one."""
    return {
        v["name"]: ["desk-1", "desk.2"] if v.get("multi") else "lyon"
        for v in model["templating"]["list"]
    }


def overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


class TestDashboardModel:
    """Every dashboard has what Grafana requires: uid, title, schemaVersion, and panels
    each with an id, a type, a grid position, a data source and targets with queries."""

    def test_five_dashboards_with_unique_uids(self):
        uids = [m["uid"] for m in MODELS]
        assert len(uids) == 5
        assert len(set(uids)) == len(uids)
        assert {"ruche-live", "ruche-utilisation", "ruche-bookings", "ruche-doors",
                "ruche-health"} == set(uids)  # fmt: skip

    @pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
    def test_top_level(self, model):
        assert isinstance(model["uid"], str)
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", model["uid"])
        assert model["title"]
        assert isinstance(model["schemaVersion"], int)
        assert model["schemaVersion"] >= 36  # data source references by uid
        assert model["id"] is None  # Grafana assigns ids; a fixed one would clash
        assert model["panels"]
        assert {"from", "to"} <= model["time"].keys()
        assert json.loads(json.dumps(model)) == model

    @pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
    def test_panels(self, model):
        ids = [p["id"] for p in model["panels"]]
        assert len(set(ids)) == len(ids)
        assert all(isinstance(i, int) and i > 0 for i in ids)
        titles = [p["title"] for p in model["panels"]]
        assert len(set(titles)) == len(titles)
        for panel in model["panels"]:
            assert panel["type"] in PANEL_TYPES
            grid = panel["gridPos"]
            assert set(grid) == {"x", "y", "w", "h"}
            assert grid["x"] >= 0
            assert grid["y"] >= 0
            assert grid["w"] >= 1
            assert grid["h"] >= 1
            assert grid["x"] + grid["w"] <= GRID_COLUMNS
            assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
            assert panel["targets"], panel["title"]
            assert "defaults" in panel["fieldConfig"]
            assert "overrides" in panel["fieldConfig"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs)
            for target in panel["targets"]:
                assert re.fullmatch(r"[A-Z]+", target["refId"])
                assert target["datasource"] == panel["datasource"]
                assert target["rawQuery"] is True
                assert target["resultFormat"] in {"time_series", "table"}
                assert target["query"].startswith("SELECT ")
                # Unbounded queries would scan everything InfluxDB holds.
                assert "$timeFilter" in target["query"], (panel["title"], target["query"])
            if "timeFrom" in panel:
                parse_duration(panel["timeFrom"])
            if "interval" in panel:
                parse_duration(panel["interval"])

    @pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
    def test_panels_do_not_overlap(self, model):
        grids = [p["gridPos"] for p in model["panels"]]
        for i, a in enumerate(grids):
            for b in grids[i + 1 :]:
                assert not overlaps(a, b), (a, b)

    @pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
    def test_every_variable_a_query_uses_is_defined(self, model):
        values = variables_of(model)
        for panel in model["panels"]:
            for target in panel["targets"]:
                query = expand(target["query"], start=START, end=START + timedelta(hours=1),
                               interval=timedelta(minutes=1), variables=values)  # fmt: skip
                assert "$" not in query.replace("$/", ""), query

    @pytest.mark.parametrize("model", MODELS, ids=lambda m: m["uid"])
    def test_site_variable(self, model):
        variables = {v["name"]: v for v in model["templating"]["list"]}
        site = variables["site"]
        assert site["type"] == "query"
        assert site["query"] == 'SHOW TAG VALUES FROM "presence" WITH KEY = "site"'
        assert site["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["query"].startswith("SHOW TAG VALUES FROM ")

    def test_another_datasource_uid_reaches_every_reference(self):
        model = dashboard_json(DASHBOARDS[0], datasource_uid="elsewhere")
        refs = [p["datasource"]["uid"] for p in model["panels"]]
        refs += [t["datasource"]["uid"] for p in model["panels"] for t in p["targets"]]
        refs += [v["datasource"]["uid"] for v in model["templating"]["list"] if "datasource" in v]
        assert set(refs) == {"elsewhere"}


class TestBuilder:
    """The builder refuses what Grafana would show wrong, and lays panels out in rows."""

    def test_query_whitespace_collapses(self):
        query = Query("""
            SELECT count("tap")
              FROM "door_tap"   WHERE $timeFilter
        """)
        assert query.influxql == 'SELECT count("tap") FROM "door_tap" WHERE $timeFilter'

    def test_empty_query_refused(self):
        with pytest.raises(ValueError, match="empty"):
            Query("   ")

    def test_panel_without_query_refused(self):
        with pytest.raises(ValueError, match="no query"):
            Panel("x", "stat", ())

    def test_panel_wider_than_the_grid_refused(self):
        with pytest.raises(ValueError, match="width"):
            stat("x", Query("SELECT 1"), width=25)

    def test_two_panels_with_one_title_refused(self):
        panel = stat("same", Query("SELECT 1"))
        with pytest.raises(ValueError, match="two panels"):
            Dashboard(uid="d", title="D", description="", panels=(panel, panel))

    def test_long_uid_refused(self):
        with pytest.raises(ValueError, match="uid"):
            Dashboard(uid="x" * 41, title="D", description="", panels=(stat("a", Query("S")),))

    def test_ref_ids_follow_grafana(self):
        panel = stat("many", *(Query(f"SELECT {i}") for i in range(28)), width=24)
        model = dashboard_json(Dashboard(uid="d", title="D", description="", panels=(panel,)))
        refs = [t["refId"] for t in model["panels"][0]["targets"]]
        assert refs[:3] == ["A", "B", "C"]
        assert refs[25:] == ["Z", "AA", "AB"]

    @given(st.lists(st.tuples(st.integers(1, 24), st.integers(1, 12)), min_size=1, max_size=30))
    def test_layout_never_overlaps(self, sizes):
        panels = [stat(f"p{i}", Query("SELECT 1"), width=w, height=h)
                  for i, (w, h) in enumerate(sizes)]  # fmt: skip
        grids = layout(panels)
        for (w, h), grid in zip(sizes, grids, strict=True):
            assert (grid["w"], grid["h"]) == (w, h)
            assert grid["x"] + grid["w"] <= GRID_COLUMNS
        for i, a in enumerate(grids):
            for b in grids[i + 1 :]:
                assert not overlaps(a, b)
        # Reading order: each panel is right of or below the one before it.
        for a, b in itertools.pairwise(grids):
            assert (b["y"], b["x"]) > (a["y"], a["x"])


class TestMacros:
    """Queries are filled in as Grafana's InfluxDB data source fills them."""

    def test_time_filter_interval_and_site(self):
        query = expand(
            "SELECT 1 FROM m WHERE \"site\" = '$site' AND $timeFilter GROUP BY time($__interval)",
            start=START,
            end=START + timedelta(hours=2),
            interval=timedelta(minutes=10),
            variables={"site": "lyon"},
        )
        assert query == (
            "SELECT 1 FROM m WHERE \"site\" = 'lyon' AND time >= 1795507200000ms and "
            "time <= 1795514400000ms GROUP BY time(10m)"
        )

    def test_braced_and_builtin_names(self):
        query = expand("${site} $__from $__to $__interval_ms", start=START,
                       end=START + timedelta(seconds=1), interval=timedelta(seconds=30),
                       variables={"site": "a"})  # fmt: skip
        assert query == "a 1795507200000 1795507201000 30000"

    def test_multi_value_is_an_escaped_regex_group(self):
        assert regex_value(["desk-1", "desk.2"]) == r"(desk-1|desk\.2)"
        assert regex_value(["a/b"]) == r"a\/b"
        with pytest.raises(MacroError):
            regex_value([])

    def test_unknown_variable_fails(self):
        with pytest.raises(MacroError, match=r"\$sight"):
            expand("WHERE site = '$sight'", start=START, end=START + timedelta(hours=1),
                   interval=timedelta(minutes=1), variables={"site": "a"})  # fmt: skip

    def test_naive_time_refused(self):
        with pytest.raises(MacroError, match="timezone"):
            expand("$timeFilter", start=datetime(2026, 1, 1), end=datetime(2026, 1, 2),  # noqa: DTZ001
                   interval=timedelta(minutes=1), variables={})  # fmt: skip

    @pytest.mark.parametrize(
        ("text", "span"),
        [("500ms", timedelta(milliseconds=500)), ("15m", timedelta(minutes=15)),
         ("now-7d", timedelta(days=7)), ("1w", timedelta(weeks=1))],
    )  # fmt: skip
    def test_parse_duration(self, text, span):
        assert parse_duration(text) == span

    @pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "now-", "-3m"])
    def test_bad_duration(self, text):
        with pytest.raises(MacroError):
            parse_duration(text)

    @given(st.integers(1, 10**9))
    def test_duration_round_trip(self, ms):
        span = timedelta(milliseconds=ms)
        assert parse_duration(format_duration(span)) == span

    def test_auto_interval(self):
        day = START + timedelta(days=1)
        assert auto_interval(START, day) == timedelta(minutes=2)  # 86.4 s, rounded up
        assert auto_interval(START, day, minimum="10m") == timedelta(minutes=10)
        assert auto_interval(START, START + timedelta(minutes=5)) == timedelta(seconds=1)
        with pytest.raises(MacroError):
            auto_interval(day, START)


class TestDatasource:
    """The InfluxQL data source, for a provisioning file and for the API."""

    def test_provisioning_entry(self):
        entry = Datasource(url="http://influx:8086", database="ruche").provisioning()
        assert entry["uid"] == DATASOURCE_UID
        assert entry["type"] == "influxdb"
        assert entry["access"] == "proxy"
        assert entry["jsonData"]["version"] == "InfluxQL"
        assert entry["jsonData"]["dbName"] == "ruche"
        assert entry["database"] == "ruche"
        assert "secureJsonData" not in entry

    def test_token_from_the_environment_not_the_file(self):
        entry = Datasource(token_env="INFLUX_TOKEN").provisioning()
        assert entry["jsonData"]["httpHeaderName1"] == "Authorization"
        assert entry["secureJsonData"] == {"httpHeaderValue1": "Token ${INFLUX_TOKEN}"}

    def test_api_body_carries_the_token(self):
        body = Datasource().api_body("s3cret")
        assert body["secureJsonData"] == {"httpHeaderValue1": "Token s3cret"}
        assert "secureJsonData" not in Datasource().api_body()

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [({"url": "influx:8086"}, "http"), ({"database": ""}, "database"),
         ({"token_env": "1BAD"}, "environment"), ({"token_env": "A-B"}, "environment")],
    )  # fmt: skip
    def test_bad_settings_refused(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            Datasource(**kwargs)


class TestExport:
    """`export` writes what Grafana's file provisioning reads."""

    def test_files(self, tmp_path):
        written = export(tmp_path, Datasource(url="http://influx:8086", database="ruche"))
        assert {p.relative_to(tmp_path).as_posix() for p in written} == {
            "provisioning/datasources/ruche.yaml",
            "provisioning/dashboards/ruche.yaml",
            *(f"dashboards/{d.uid}.json" for d in DASHBOARDS),
        }

        sources = yaml.safe_load((tmp_path / "provisioning/datasources/ruche.yaml").read_text())
        assert sources["apiVersion"] == 1
        [source] = sources["datasources"]
        assert {"name", "type", "uid", "url", "access", "jsonData"} <= source.keys()
        assert source["uid"] == DATASOURCE_UID
        assert source["url"] == "http://influx:8086"

        providers = yaml.safe_load((tmp_path / "provisioning/dashboards/ruche.yaml").read_text())
        assert providers["apiVersion"] == 1
        [provider] = providers["providers"]
        assert provider["type"] == "file"
        assert provider["folder"] == "Ruche"
        folder = Path(provider["options"]["path"])
        assert folder.is_absolute()
        assert folder == (tmp_path / "dashboards").resolve()

        for dashboard in DASHBOARDS:
            model = json.loads((folder / f"{dashboard.uid}.json").read_text())
            assert model == dashboard_json(dashboard)
            uids = {p["datasource"]["uid"] for p in model["panels"]}
            assert uids == {source["uid"]}

    def test_again_overwrites(self, tmp_path):
        first = [p.read_bytes() for p in export(tmp_path, Datasource())]
        second = [p.read_bytes() for p in export(tmp_path, Datasource())]
        assert first == second
        assert len(list((tmp_path / "dashboards").iterdir())) == len(DASHBOARDS)

    def test_dashboards_path_for_grafana_elsewhere(self, tmp_path):
        export(tmp_path, Datasource(), dashboards_path=Path("/var/lib/grafana/ruche"))
        providers = yaml.safe_load((tmp_path / "provisioning/dashboards/ruche.yaml").read_text())
        assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/ruche"


class TestCli:
    """`ruche dashboards export` and the errors `push` reports before any request."""

    def test_export(self, tmp_path, capsys):
        code = main(["dashboards", "export", "--out", str(tmp_path), "--influx-url",
                     "http://influx:8086", "--database", "occupancy"])  # fmt: skip
        assert code == 0
        assert capsys.readouterr().out.count("wrote ") == 2 + len(DASHBOARDS)
        source = yaml.safe_load((tmp_path / "provisioning/datasources/ruche.yaml").read_text())
        assert source["datasources"][0]["jsonData"]["dbName"] == "occupancy"

    def test_export_bad_url(self, tmp_path, capsys):
        code = main(["dashboards", "export", "--out", str(tmp_path), "--influx-url", "influx"])
        assert code == 2
        assert "http://" in capsys.readouterr().err

    def test_export_unwritable(self, tmp_path, capsys):
        blocker = tmp_path / "file"
        blocker.write_text("")
        code = main(["dashboards", "export", "--out", str(blocker / "out")])
        assert code == 2
        assert "ruche: error:" in capsys.readouterr().err

    def test_push_needs_a_token(self, monkeypatch, capsys):
        monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
        code = main(["dashboards", "push", "--url", "http://127.0.0.1:9"])
        assert code == 2
        assert "--token" in capsys.readouterr().err

    def test_push_bad_url(self, capsys):
        code = main(["dashboards", "push", "--url", "grafana:3000", "--token", "t"])
        assert code == 2
        assert "http://" in capsys.readouterr().err

    def test_push_unset_influx_token_variable(self, monkeypatch, capsys):
        monkeypatch.delenv("RUCHE_TEST_NO_SUCH_TOKEN", raising=False)
        code = main(["dashboards", "push", "--url", "http://127.0.0.1:9", "--token", "t",
                     "--influx-token-env", "RUCHE_TEST_NO_SUCH_TOKEN"])  # fmt: skip
        assert code == 2
        assert "RUCHE_TEST_NO_SUCH_TOKEN" in capsys.readouterr().err


class TestBookingPoint:
    """A started desk booking as the `booking` point the bookings dashboard reads."""

    def test_fields_and_time(self):
        start = datetime(2026, 11, 24, 9, tzinfo=UTC)
        booking = ChartedBooking(id=7, site="lyon", desk="d1", start=start,
                                 end=start + timedelta(hours=8), status="booked")  # fmt: skip
        point = booking_point(booking)
        assert point.measurement == "booking"
        assert dict(point.tags) == {"site": "lyon", "desk": "d1"}
        assert dict(point.fields) == {"booking_id": 7, "minutes": 480.0, "status": "booked",
                                      "no_show": 0}  # fmt: skip
        assert point.time_ns == int(start.timestamp()) * 10**9

    def test_a_no_show_rewrites_the_same_point(self):
        start = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
        booked = ChartedBooking(7, "lyon", "d1", start, start + timedelta(minutes=90), "booked")
        gone = booking_point(ChartedBooking(7, "lyon", "d1", booked.start, booked.end, "no_show"))
        first = booking_point(booked)
        assert (gone.measurement, dict(gone.tags), gone.time_ns) == (
            first.measurement, dict(first.tags), first.time_ns,
        )  # fmt: skip
        assert gone.fields["no_show"] == 1
        assert gone.fields["status"] == "no_show"
        assert gone.fields["minutes"] == 90.0


class TestDocs:
    """docs/dashboards.md lists every panel with the query the code sends."""

    def test_every_panel_and_query(self):
        text = (ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
        for dashboard in DASHBOARDS:
            assert f"(`{dashboard.uid}`)" in text
            for panel in dashboard.panels:
                assert f"- **{panel.title}** (" in text, panel.title
                for query in panel.queries:
                    assert f"  {query.influxql}\n" in text, (panel.title, query.influxql)
