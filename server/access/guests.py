"""Guests: someone a member or the staff let in for one day, until the site closes.

A guest is a member row of their own, with no plan. Their invitation becomes, for door
decisions, a membership of its own (`guest_plan`): the invitation's site only, open all
the time, over `[opens, closes)` of that local day (`visit_hours`). Nothing else in the
rules changes, so `decide_access` (online) and `allowlist_windows` (the agents' cached
lists) give the same answer by construction: inside the visit a tap is allowed with
reason `schedule`; from closing time on the membership no longer covers now and the
answer is `member_inactive`, and the cached entry's window ends at `closes`.

    >>> from datetime import date
    >>> from zoneinfo import ZoneInfo
    >>> paris = ZoneInfo("Europe/Paris")
    >>> opens, closes = visit_hours(Schedule.business_hours(), frozenset(), paris,
    ...                             date(2026, 12, 8))
    >>> f"{opens:%H:%M}-{closes:%H:%M} UTC"
    '07:00-18:00 UTC'
    >>> visit_hours(Schedule.business_hours(), frozenset(), paris, date(2026, 12, 12)) is None
    True
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from ruche.server.access.rules import Plan
from ruche.server.registry.schedule import Interval, Schedule, local_day, open_intervals

__all__ = ["GUEST_PLAN", "guest_plan", "guest_window", "visit_hours"]

GUEST_PLAN: Final = "guest"
"""The id of a guest's plan in door decisions (no stored plan has a text id)."""


def visit_hours(
    opening: Schedule, holidays: Collection[date], tz: ZoneInfo, day: date
) -> Interval | None:
    """When a guest may be at a site on local date `day`: from its first opening to its
    last closing that day (a lunch break does not send a guest out), in UTC; None when
    the site does not open that day (a weekend, a holiday)."""
    start, end = local_day(day, tz)
    intervals = open_intervals(opening, holidays, tz, start, end)
    if not intervals:
        return None
    return intervals[0][0], intervals[-1][1]


def guest_window(
    hours: Interval | None, day_start: datetime, valid_until: datetime
) -> Interval | None:
    """The window an invitation opens: from the day's opening (`hours`, as the site's
    opening hours say now; the day's start when they no longer open it) until the
    `valid_until` it was given; None when that leaves nothing."""
    opens = hours[0] if hours is not None and hours[0] < valid_until else day_start
    return (opens, valid_until) if opens < valid_until else None


def guest_plan(site: str) -> Plan:
    """A guest's plan: site `site` only, at any time; the membership span bounds it."""
    return Plan(GUEST_PLAN, sites=frozenset({site}), schedule=Schedule.always())
