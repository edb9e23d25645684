"""Live occupancy: who is seated now, the desks by state, today's door traffic.

A desk's state is its latest `presence` report (`occupied` 1 or 0). Taps at a reader
named `out` or `*-out` are exits, as the server reads them (`facts.direction_of`).
"""

from __future__ import annotations

from ruche.dashboards.model import Dashboard, Query, piechart, stat, table, timeseries
from ruche.dashboards.variables import SITE

_STATE_NAMES = (
    {
        "type": "value",
        "options": {
            "0": {"text": "vacant", "color": "green", "index": 0},
            "1": {"text": "occupied", "color": "red", "index": 1},
        },
    },
)

DASHBOARD = Dashboard(
    uid="ruche-live",
    title="Ruche · Live occupancy",
    description="Seated now, desks by state and door traffic at one site.",
    variables=(SITE,),
    time_from="now-12h",
    refresh="30s",
    panels=(
        stat(
            "Seated now",
            Query("""
                SELECT sum("occupied") AS "seated" FROM (
                    SELECT last("occupied") AS "occupied" FROM "presence"
                    WHERE "site" = '$site' AND $timeFilter GROUP BY "desk"
                )
            """),
            description="Desks whose latest report (last 15 minutes) says occupied: "
            "the people at desks.",
            time_from="15m",
            decimals=0,
            height=6,
        ),
        piechart(
            "Desks by state",
            Query("""
                SELECT sum("occupied") AS "occupied",
                    count("occupied") - sum("occupied") AS "vacant"
                FROM (
                    SELECT last("occupied") AS "occupied" FROM "presence"
                    WHERE "site" = '$site' AND $timeFilter GROUP BY "desk"
                )
            """),
            description="Desks that reported in the last 15 minutes, by their latest "
            "state. A desk missing here is silent: see its last report in Desks.",
            time_from="15m",
            height=6,
        ),
        stat(
            "Door taps in and out",
            Query(
                """
                SELECT count("tap") AS "in" FROM "door_tap"
                WHERE "site" = '$site' AND "reader" !~ /(^|-)out$/ AND $timeFilter
                """,
                alias="in",
            ),
            Query(
                """
                SELECT count("tap") AS "out" FROM "door_tap"
                WHERE "site" = '$site' AND "reader" =~ /(^|-)out$/ AND $timeFilter
                """,
                alias="out",
            ),
            description="Badge taps at entry readers and at exit readers (named out or "
            "*-out) over the dashboard's range, granted or not.",
            width=12,
            height=6,
            decimals=0,
        ),
        timeseries(
            "Seated over time",
            Query(
                """
                SELECT sum("occupied") AS "seated" FROM (
                    SELECT last("occupied") AS "occupied" FROM "presence"
                    WHERE "site" = '$site' AND $timeFilter
                    GROUP BY time($__interval), "desk" fill(none)
                ) WHERE $timeFilter GROUP BY time($__interval) fill(none)
                """,
                alias="seated",
            ),
            description="Occupied desks at the end of each interval. At least 10 minutes "
            "a point, so that every desk has reported (heartbeats every 5).",
            interval="10m",
            width=16,
            decimals=0,
            min=0,
        ),
        table(
            "Desks",
            Query(
                """
                SELECT last("occupied") AS "state" FROM "presence"
                WHERE "site" = '$site' AND $timeFilter GROUP BY "desk", "agent"
                """,
                result_format="table",
            ),
            description="Each desk's latest report in the range and when it came: an old "
            "time means a silent sensor.",
            width=8,
            mappings=_STATE_NAMES,
        ),
        table(
            "Latest door events",
            Query(
                """
                SELECT "door", "kind", "agent", "seq" FROM "door_event"
                WHERE "site" = '$site' AND $timeFilter ORDER BY time DESC LIMIT 20
                """,
                result_format="table",
            ),
            description="Doors opened, closed, forced, held open, and offline decisions.",
            width=24,
        ),
    ),
)
