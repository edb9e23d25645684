"""Bookings against actual use: bookings and no-shows, booked against occupied hours.

Bookings live in SQL; the server's occupancy refresh charts each desk booking once it
has started as a `booking` point at its start (docs/dashboards.md), rewritten in place
when it turns into a no-show or is released.
"""

from __future__ import annotations

from ruche.dashboards.model import Dashboard, Query, bars, stat, table, timeseries
from ruche.dashboards.variables import SITE, TZ

DASHBOARD = Dashboard(
    uid="ruche-bookings",
    title="Ruche · Bookings and no-shows",
    description="Desk bookings that started in the range, what became of them, and the "
    "desk-hours booked against those occupied.",
    variables=(SITE, TZ),
    time_from="now-30d",
    panels=(
        stat(
            "Bookings",
            Query("""
                SELECT count("booking_id") AS "bookings", sum("no_show") AS "no-shows"
                FROM "booking" WHERE "site" = '$site' AND $timeFilter
            """),
            description="Desk bookings that started in the range, and how many of them "
            "nobody turned up for.",
            decimals=0,
            width=8,
        ),
        stat(
            "No-show rate",
            Query("""
                SELECT mean("no_show") AS "no-show rate"
                FROM "booking" WHERE "site" = '$site' AND $timeFilter
            """),
            description="Share of the bookings released as no-shows.",
            unit="percentunit",
            decimals=1,
            width=4,
        ),
        bars(
            "Bookings and no-shows per day",
            Query("""
                SELECT count("booking_id") AS "bookings", sum("no_show") AS "no-shows"
                FROM "booking" WHERE "site" = '$site' AND $timeFilter
                GROUP BY time(1d) fill(0) tz('$tz')
            """),
            description="By the day each booking started, in the chosen timezone.",
            decimals=0,
        ),
        timeseries(
            "Booked and occupied desk-hours per day",
            Query(
                """
                SELECT sum("minutes") / 60 AS "booked"
                FROM "booking" WHERE "site" = '$site' AND $timeFilter
                GROUP BY time(1d) fill(0) tz('$tz')
                """,
                alias="booked",
            ),
            Query(
                """
                SELECT sum("minutes") / 60 AS "no-show" FROM "booking"
                WHERE "site" = '$site' AND "status" = 'no_show' AND $timeFilter
                GROUP BY time(1d) fill(0) tz('$tz')
                """,
                alias="booked, nobody came",
            ),
            Query(
                """
                SELECT sum("occupied") AS "occupied" FROM (
                    SELECT mean("occupied") AS "occupied" FROM "presence"
                    WHERE "site" = '$site' AND $timeFilter GROUP BY time(1h), "desk" fill(none)
                ) WHERE $timeFilter GROUP BY time(1d) fill(0) tz('$tz')
                """,
                alias="occupied",
            ),
            description="Desk-hours booked (each booking on the day it starts) against "
            "desk-hours occupied, booked or not (walk-ins too).",
            unit="h",
            min=0,
            width=24,
        ),
        table(
            "No-shows",
            Query(
                """
                SELECT "booking_id", "desk", "minutes" FROM "booking"
                WHERE "site" = '$site' AND "status" = 'no_show' AND $timeFilter
                ORDER BY time DESC LIMIT 200
                """,
                result_format="table",
            ),
            description="Bookings released because nobody was at the desk by the start "
            "plus the site's no-show minutes; the time is the booking's start.",
            width=24,
        ),
    ),
)
