"""Desk and zone utilisation over days and weeks: a desk-by-hour heatmap, shares per
hour, day and week, and a ranking of desks.

A share is the mean of the desks' `occupied` reports (1 or 0). Every desk reports its
state at least every heartbeat (5 minutes by default) besides each change, so this is
the share of time occupied to within a few percent; the utilisation API
(`GET /sites/{site}/utilisation`) has the exact figures, against opening hours.
"""

from __future__ import annotations

from ruche.dashboards.model import Dashboard, Query, bars, heatmap, table, timeseries
from ruche.dashboards.variables import DESK, SITE, TZ

DASHBOARD = Dashboard(
    uid="ruche-utilisation",
    title="Ruche · Utilisation",
    description="How much the chosen desks (a zone, or all) are used, by hour, day and week.",
    variables=(SITE, DESK, TZ),
    time_from="now-7d",
    panels=(
        heatmap(
            "Occupancy by desk and hour",
            Query(
                """
                SELECT mean("occupied") AS "occupied" FROM "presence"
                WHERE "site" = '$site' AND "desk" =~ /^$desk$/ AND $timeFilter
                GROUP BY time(1h), "desk" fill(none)
                """,
                alias="$tag_desk",
            ),
            description="One row per desk, one cell per hour, coloured by the share of "
            "the hour it was occupied: the hours of the day read across the days.",
            width=24,
            height=10,
            unit="percentunit",
            min=0.0,
            max=1.0,
        ),
        timeseries(
            "Share occupied, hourly",
            Query(
                """
                SELECT mean("occupied") AS "occupied" FROM "presence"
                WHERE "site" = '$site' AND "desk" =~ /^$desk$/ AND $timeFilter
                GROUP BY time(1h) fill(none)
                """,
                alias="occupied",
            ),
            description="Share of the chosen desks occupied, hour by hour.",
            unit="percentunit",
            min=0.0,
            max=1.0,
        ),
        bars(
            "Share occupied, daily",
            Query(
                """
                SELECT mean("occupied") AS "occupied" FROM "presence"
                WHERE "site" = '$site' AND "desk" =~ /^$desk$/ AND $timeFilter
                GROUP BY time(1d) fill(none) tz('$tz')
                """,
                alias="occupied",
            ),
            description="Share of the chosen desks occupied per day (midnight to midnight "
            "in the chosen timezone), nights included.",
            unit="percentunit",
            min=0.0,
            max=1.0,
        ),
        bars(
            "Share occupied, weekly",
            # InfluxDB's week buckets start on Thursdays (the epoch's weekday): 4 days on.
            Query(
                """
                SELECT mean("occupied") AS "occupied" FROM "presence"
                WHERE "site" = '$site' AND "desk" =~ /^$desk$/ AND $timeFilter
                GROUP BY time(1w, 4d) fill(none) tz('$tz')
                """,
                alias="occupied",
            ),
            description="Share of the chosen desks occupied per week, Monday to Monday.",
            unit="percentunit",
            min=0.0,
            max=1.0,
        ),
        table(
            "Desks ranked",
            Query(
                """
                SELECT mean("occupied") AS "occupied" FROM "presence"
                WHERE "site" = '$site' AND "desk" =~ /^$desk$/ AND $timeFilter
                GROUP BY "desk"
                """,
                result_format="table",
            ),
            description="Each chosen desk's share occupied over the whole range.",
            unit="percentunit",
            min=0.0,
            max=1.0,
        ),
    ),
)
