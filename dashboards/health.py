"""System health: agents online and their outboxes, the server's ingest rate and lag,
InfluxDB writes and their errors.

`agent_status` (tags site, agent) and `server_stats` (tags host, process) are written
by the server (docs/operations.md). An `agent_status` point comes only when an agent's
status does (it connects, changes, or its last will says it went offline), so the
agents' panels look back 30 days for each one's latest, and their charts hold each
value until the next. `server_stats` comes from every process every 10 seconds; its
fields are counts since the process started, charted as rates with
`non_negative_derivative` (a restart starts them again, which it skips), except the lag
and spool fields, which are current values.
"""

from __future__ import annotations

from ruche.dashboards.model import Dashboard, Query, stat, table, timeseries
from ruche.dashboards.variables import SITE

_ONLINE_NAMES = (
    {
        "type": "value",
        "options": {
            "0": {"text": "offline", "color": "red", "index": 0},
            "1": {"text": "online", "color": "green", "index": 1},
        },
    },
)

DASHBOARD = Dashboard(
    uid="ruche-health",
    title="Ruche · System health",
    description="Agents online and their outboxes; ingestion, lag and InfluxDB writes.",
    variables=(SITE,),
    time_from="now-6h",
    refresh="1m",
    panels=(
        stat(
            "Agents online",
            Query("""
                SELECT sum("online") AS "online", count("online") AS "agents" FROM (
                    SELECT last("online") AS "online" FROM "agent_status"
                    WHERE "site" = '$site' AND $timeFilter GROUP BY "agent"
                )
            """),
            description="Agents of the site whose latest status says online, out of those "
            "that sent one in the last 30 days.",
            time_from="30d",
            decimals=0,
        ),
        table(
            "Agents",
            Query(
                """
                SELECT last("online") AS "online" FROM "agent_status"
                WHERE "site" = '$site' AND $timeFilter GROUP BY "agent"
                """,
                result_format="table",
            ),
            description="Each agent's latest status and when it came (last 30 days).",
            time_from="30d",
            width=6,
            mappings=_ONLINE_NAMES,
        ),
        timeseries(
            "Outbox depth",
            Query(
                """
                SELECT max("outbox_depth") AS "outbox" FROM "agent_status"
                WHERE "site" = '$site' AND $timeFilter
                GROUP BY time($__interval), "agent" fill(previous)
                """,
                alias="$tag_agent",
            ),
            description="Events each agent holds that the server has not acknowledged, "
            "as its statuses say: growing means the server or the link is behind. An agent "
            "whose status did not change in the range has no line.",
            interval="1m",
            decimals=0,
            min=0,
            steps=True,
        ),
        timeseries(
            "Agent faults",
            Query(
                """
                SELECT max("faults") AS "faults" FROM "agent_status"
                WHERE "site" = '$site' AND $timeFilter
                GROUP BY time($__interval), "agent" fill(previous)
                """,
                alias="$tag_agent",
            ),
            description="Sensors and readers each agent reports faulty, as its statuses say.",
            interval="1m",
            decimals=0,
            min=0,
            steps=True,
        ),
        timeseries(
            "Ingest rate",
            Query(
                """
                SELECT non_negative_derivative(max("received"), 1s) AS "received",
                    non_negative_derivative(max("stored"), 1s) AS "stored",
                    non_negative_derivative(max("duplicates"), 1s) AS "duplicates",
                    non_negative_derivative(max("bad"), 1s) AS "bad"
                FROM "server_stats" WHERE $timeFilter
                GROUP BY time($__interval), "host", "process" fill(none)
                """,
                alias="$tag_process $col",
            ),
            description="Agent events per second taken by each server process: received, "
            "stored, duplicates (redelivered) and bad (refused by the contract).",
            interval="1m",
            unit="ops",
            min=0,
        ),
        timeseries(
            "Ingest lag",
            Query(
                """
                SELECT max("lag_ms_p50") AS "p50", max("lag_ms_p99") AS "p99"
                FROM "server_stats" WHERE $timeFilter
                GROUP BY time($__interval), "host", "process" fill(none)
                """,
                alias="$tag_process $col",
            ),
            description="From an event's time at the agent to its storage, median and "
            "99th percentile.",
            interval="1m",
            unit="ms",
            min=0,
        ),
        timeseries(
            "InfluxDB writes",
            Query(
                """
                SELECT non_negative_derivative(max("points_written"), 1s) AS "points"
                FROM "server_stats" WHERE $timeFilter
                GROUP BY time($__interval), "host", "process" fill(none)
                """,
                alias="$tag_process points/s",
            ),
            Query(
                """
                SELECT max("spool_points") AS "spooled"
                FROM "server_stats" WHERE $timeFilter
                GROUP BY time($__interval), "host", "process" fill(none)
                """,
                alias="$tag_process spooled",
            ),
            description="Points written per second, and points waiting in the spool on "
            "disk (InfluxDB down or slow).",
            interval="1m",
            min=0,
        ),
        timeseries(
            "InfluxDB write errors",
            Query(
                """
                SELECT non_negative_difference(max("influx_write_errors")) AS "errors"
                FROM "server_stats" WHERE $timeFilter
                GROUP BY time($__interval), "host", "process" fill(none)
                """,
                alias="$tag_process errors",
            ),
            description="Failed writes to InfluxDB per interval (retried: the points "
            "wait in the spool).",
            interval="1m",
            decimals=0,
            min=0,
        ),
        timeseries(
            "Door decisions",
            Query(
                """
                SELECT non_negative_derivative(max("decisions"), 1s) AS "decisions"
                FROM "server_stats" WHERE $timeFilter
                GROUP BY time($__interval), "host", "process" fill(none)
                """,
                alias="$tag_process decisions/s",
            ),
            description="Online door decisions per second.",
            interval="1m",
            min=0,
        ),
    ),
)
