"""Door activity and alarms: taps and openings per door, forced and held-open doors,
and the decisions agents took offline."""

from __future__ import annotations

from ruche.dashboards.model import Dashboard, Query, bars, stat, table
from ruche.dashboards.variables import SITE

DASHBOARD = Dashboard(
    uid="ruche-doors",
    title="Ruche · Doors and alarms",
    description="Taps, openings and alarms at one site's doors.",
    variables=(SITE,),
    time_from="now-24h",
    refresh="1m",
    panels=(
        stat(
            "Alarms",
            Query(
                """
                SELECT count("seq") AS "alarms" FROM "door_event"
                WHERE "site" = '$site' AND ("kind" = 'forced' OR "kind" = 'held_open')
                AND $timeFilter GROUP BY "kind"
                """,
                alias="$tag_kind",
            ),
            description="Doors forced (opened without an unlock) and held open too long.",
            decimals=0,
            width=8,
        ),
        stat(
            "Offline decisions",
            Query(
                """
                SELECT count("seq") AS "decisions" FROM "door_event"
                WHERE "site" = '$site' AND "kind" = 'offline_decision' AND $timeFilter
                """,
                alias="offline",
            ),
            description="Taps an agent decided alone, from its allow-list, while the "
            "server was out of reach.",
            decimals=0,
            width=4,
        ),
        bars(
            "Taps per door",
            Query(
                """
                SELECT count("tap") AS "taps" FROM "door_tap"
                WHERE "site" = '$site' AND $timeFilter
                GROUP BY time($__interval), "door" fill(0)
                """,
                alias="$tag_door",
            ),
            description="Badge taps at each door's readers, granted or not.",
            interval="5m",
            stack=True,
            decimals=0,
        ),
        bars(
            "Openings per door",
            Query(
                """
                SELECT count("seq") AS "openings" FROM "door_event"
                WHERE "site" = '$site' AND "kind" = 'opened' AND $timeFilter
                GROUP BY time($__interval), "door" fill(0)
                """,
                alias="$tag_door",
            ),
            description="Each time a door's contact reported it open.",
            interval="5m",
            stack=True,
            decimals=0,
            width=24,
        ),
        table(
            "Alarm log",
            Query(
                """
                SELECT "door", "kind", "open_s", "agent", "seq" FROM "door_event"
                WHERE "site" = '$site' AND ("kind" = 'forced' OR "kind" = 'held_open')
                AND $timeFilter ORDER BY time DESC LIMIT 200
                """,
                result_format="table",
            ),
            description="Forced and held-open doors, latest first; open_s is how long a "
            "held-open door had been open.",
        ),
        table(
            "Offline decision log",
            Query(
                """
                SELECT "door", "allowed", "reason", "agent", "seq" FROM "door_event"
                WHERE "site" = '$site' AND "kind" = 'offline_decision' AND $timeFilter
                ORDER BY time DESC LIMIT 200
                """,
                result_format="table",
            ),
            description="What agents decided alone, and why.",
        ),
    ),
)
