"""The utilisation page: for each zone of a site, how booked and how used each hour of the
day was over a period (the API's `/sites/{id}/utilisation` figures, hour buckets, folded
onto the hours of the day by `ruche.server.occupancy.hour_of_day`).

The period is two local dates of the site, both included, at most 31 days (the hour
buckets' limit); by default the last seven days, today included. A date that is not one
is a sentence on the page, in the reader's language.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Final

from babel.dates import format_time
from babel.numbers import format_decimal, format_percent
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ruche.server.api.deps import SessionDep
from ruche.server.api.pages.guard import ManagerReader, site_choice
from ruche.server.api.pages.rendering import render
from ruche.server.i18n import N_, Formats
from ruche.server.occupancy.hour_of_day import HourOfDay, by_hour_of_day
from ruche.server.occupancy.queries import opening_of, utilisation_inputs
from ruche.server.occupancy.utilisation import MAX_DAYS, Bucket, Level, utilisation
from ruche.server.registry.schedule import local_day
from ruche.server.storage.db import READ_ONLY
from ruche.server.storage.models import SiteRow

router = APIRouter(include_in_schema=False)

PATH: Final = "/manage/utilisation"
DEFAULT_DAYS: Final = 7
LONGEST: Final = MAX_DAYS[Bucket.HOUR]
PROBLEMS: Final = {
    "from": N_("The start date is not a date: write it as YYYY-MM-DD."),
    "to": N_("The end date is not a date: write it as YYYY-MM-DD."),
    "range": N_("The start date must not be after the end date."),
    "long": N_("Choose a period of at most 31 days."),
}
DateText = Annotated[str | None, Query(max_length=32)]
_TENTH = Decimal("0.1")


@dataclass(frozen=True)
class ZoneTable:
    zone: str
    hours: list[HourOfDay]


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def read_period(first: str, last: str, today: date) -> tuple[date, date, list[str]]:
    """The period asked for (`first`, `last` included; the last seven days when both are
    empty) and the codes of what is wrong with it."""
    wrong = []
    end = _day(last) if last else today
    start = _day(first) if first else None
    if end is None:
        wrong.append("to")
        end = today
    if first and start is None:
        wrong.append("from")
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if not wrong and start > end:
        wrong.append("range")
    elif not wrong and (end - start).days + 1 > LONGEST:
        wrong.append("long")
    return start, end, wrong


# A page writes hundreds of figures, and Babel takes tens of microseconds for each: the
# few distinct ones (tenths of an hour, whole percents, 24 hours) are written once each.


def desk_hours(formats: Formats, value: timedelta) -> str:
    """Desk-hours to one decimal, with the reader's decimal sign."""
    return _tenths(formats.babel_locale, Decimal(value / timedelta(hours=1)).quantize(_TENTH))


@functools.lru_cache(maxsize=8192)
def _tenths(locale: str, value: Decimal) -> str:
    return format_decimal(value, locale=locale)


def share(formats: Formats, value: float | None) -> str:
    """A share as the reader's percentage (`25 %` in French, whole percents), or a dash
    for none."""
    return "\u2013" if value is None else _percent(formats.babel_locale, round(value * 100))


@functools.lru_cache(maxsize=4096)
def _percent(locale: str, percents: int) -> str:
    return format_percent(percents / 100, locale=locale)


def bar_width(value: float | None) -> int:
    """A share as a bar's width, in percent of its cell (0 to 100)."""
    return 0 if value is None else max(0, min(100, round(value * 100)))


def hour_label(formats: Formats, hour: int) -> str:
    """`09:00-10:00` (an en dash between), in the reader's clock."""
    return _hour_label(formats.babel_locale, hour)


@functools.lru_cache(maxsize=256)
def _hour_label(locale: str, hour: int) -> str:
    start = format_time(time(hour), "short", locale=locale)
    end = format_time(time((hour + 1) % 24), "short", locale=locale)
    return f"{start}\u2013{end}"


def zone_tables(session: SessionDep, site: SiteRow, first: date, last: date) -> list[ZoneTable]:
    """Each zone's hours over `[first, last]` (local dates)."""
    start, end = local_day(first, site.tzinfo)[0], local_day(last, site.tzinfo)[1]
    inputs = utilisation_inputs(session, site, start, end)
    series = utilisation(
        site=site.slug, desks=inputs.desks, sessions=inputs.sessions, bookings=inputs.bookings,
        visits=inputs.visits, opening=opening_of(site), first=first,
        last=last + timedelta(days=1), bucket=Bucket.HOUR, by=Level.ZONE, now=datetime.now(UTC),
    )  # fmt: skip
    return [ZoneTable(zone=one.key, hours=by_hour_of_day(one)) for one in series]


@router.get(PATH, response_class=HTMLResponse)
def utilisation_page(
    *,
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    first: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=32)] = None,
) -> HTMLResponse:
    """Booked versus used desk-time, per zone and hour of the day, over a period."""
    session.connection(execution_options=READ_ONLY)
    row, sites = site_choice(session, reader, site)
    today = datetime.now(row.tzinfo).date()
    start, end, wrong = read_period(first or "", last or "", today)
    zones = [] if wrong else zone_tables(session, row, start, end)
    return render(
        request, "utilisation/page.html", timezone=row.timezone, site=row, sites=sites,
        path=PATH, first=start, last=end, zones=zones, problems=[PROBLEMS[c] for c in wrong],
        desk_hours=desk_hours, share=share, bar_width=bar_width, hour_label=hour_label,
    )  # fmt: skip
