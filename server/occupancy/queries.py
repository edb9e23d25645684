"""The read side: bookings against reality and utilisation, loaded from SQL as the pure
modules' values for the API (`unused_bookings`, `unbooked_sessions`, `utilisation_inputs`),
and the started bookings the worker charts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.occupancy.loaders import desk_key, session_value
from ruche.server.occupancy.sessions import (
    BookingSpan,
    booked_unused,
    used_unbooked,
)
from ruche.server.occupancy.utilisation import DeskBooking, DeskPlace, DeskTime, Opening, VisitTime
from ruche.server.registry.schedule_spec import opening_schedule
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import (
    BookingRow,
    DeskRow,
    DeskSessionRow,
    SiteRow,
    VisitRow,
    ZoneRow,
)
from ruche.server.timeseries.points import ChartedBooking

log = logging.getLogger(__name__)


def _site_bookings(site: SiteRow) -> sa.Select[BookingRow, str]:
    """The site's desk bookings that hold their desk (not cancelled), with the desk's id."""
    return (
        select(BookingRow, DeskRow.slug)
        .join(DeskRow, DeskRow.id == BookingRow.desk_id)
        .where(BookingRow.site_id == site.id)
        .where(BookingRow.status != BookingStatus.CANCELLED)
    )


def _site_sessions(site: SiteRow, start: datetime, end: datetime) -> sa.Select[DeskSessionRow]:
    """The site's desk sessions touching `[start, end]` (an open one reaches to now)."""
    return (
        select(DeskSessionRow)
        .where(DeskSessionRow.site == site.slug)
        .where(DeskSessionRow.start <= end)
        .where(sa.or_(DeskSessionRow.end.is_(None), DeskSessionRow.end >= start))
    )


def unused_bookings(
    session: Session, site: SiteRow, start: datetime, end: datetime, *, now: datetime
) -> list[BookingRow]:
    """The site's desk bookings starting in `[start, end)` whose desk saw no occupied time
    inside them (`sessions.booked_unused`), in start order."""
    rows = session.execute(
        _site_bookings(site)
        .where(BookingRow.starts_at >= start, BookingRow.starts_at < end)
        .order_by(BookingRow.starts_at, BookingRow.id)
    ).all()
    if not rows:
        return []
    spans = [
        BookingSpan(b.id, desk_key(site.slug, desk), b.member_id, b.starts_at, b.ends_at)
        for b, desk in rows
    ]
    desks = sorted({desk for _, desk in rows})
    first, last = min(s.start for s in spans), max(s.end for s in spans)
    around = _site_sessions(site, first, last).where(DeskSessionRow.desk.in_(desks))
    sessions = [session_value(site.slug, row) for row in session.scalars(around)]
    unused = set(booked_unused(spans, sessions, now=now))
    return [b for b, _ in rows if b.id in unused]


def unbooked_sessions(
    session: Session, site: SiteRow, start: datetime, end: datetime, *, now: datetime
) -> list[DeskSessionRow]:
    """The site's desk sessions starting in `[start, end)` that no booking of their desk
    overlaps (`sessions.used_unbooked`), in start order."""
    rows = list(
        session.scalars(
            select(DeskSessionRow)
            .where(DeskSessionRow.site == site.slug)
            .where(DeskSessionRow.start >= start, DeskSessionRow.start < end)
            .order_by(DeskSessionRow.start, DeskSessionRow.desk, DeskSessionRow.id)
        )
    )
    if not rows:
        return []
    values = [session_value(site.slug, row) for row in rows]
    reach = max(v.until(now) for v in values)
    bookings = [
        BookingSpan(b.id, desk_key(site.slug, desk), b.member_id, b.starts_at, b.ends_at)
        for b, desk in session.execute(
            _site_bookings(site)
            .where(BookingRow.ends_at > min(v.start for v in values))
            .where(BookingRow.starts_at <= reach)
        )
    ]
    unbooked = used_unbooked(values, bookings, now=now)
    keys = {(v.desk[2], v.opened_seq) for v in unbooked}
    return [row for row in rows if (row.desk, row.opened_seq) in keys]


def opening_of(site: SiteRow) -> Opening:
    """The site's opening hours (business hours when it has none) and its holidays."""
    return Opening(
        opening_schedule(site.opening_hours), site.tzinfo, frozenset(h.day for h in site.holidays)
    )


@dataclass(frozen=True)
class UtilisationInputs:
    """What `utilisation.utilisation` reads about a site over a span, and the desks' and
    zones' row ids, to name them in the answer."""

    desks: list[DeskPlace]
    sessions: list[DeskTime]
    bookings: list[DeskBooking]
    visits: list[VisitTime]
    desk_ids: dict[str, int]
    zone_ids: dict[str, int]


def utilisation_inputs(
    session: Session, site: SiteRow, start: datetime, end: datetime
) -> UtilisationInputs:
    """The site's desks, and its desk sessions, desk bookings and visits touching
    `[start, end)`."""
    places = session.execute(
        select(DeskRow.id, DeskRow.slug, ZoneRow.id, ZoneRow.name)
        .join(ZoneRow, ZoneRow.id == DeskRow.zone_id)
        .where(DeskRow.site_id == site.id)
        .order_by(ZoneRow.id, DeskRow.id)
    ).all()
    sessions = [
        DeskTime(row.desk, row.start, row.end, row.suspect)
        for row in session.scalars(_site_sessions(site, start, end))
    ]
    bookings = [
        DeskBooking(desk, b.starts_at, b.ends_at, no_show=b.status is BookingStatus.NO_SHOW)
        for b, desk in session.execute(
            _site_bookings(site).where(BookingRow.starts_at < end, BookingRow.ends_at > start)
        )
    ]
    visits = [
        VisitTime(v.member_id, v.start, v.end)
        for v in session.scalars(
            select(VisitRow)
            .where(VisitRow.site == site.slug)
            .where(VisitRow.start < end)
            .where(sa.or_(VisitRow.end.is_(None), VisitRow.end > start))
        )
    ]
    return UtilisationInputs(
        desks=[DeskPlace(desk, zone) for _, desk, _, zone in places],
        sessions=sessions,
        bookings=bookings,
        visits=visits,
        desk_ids={desk: desk_id for desk_id, desk, _, _ in places},
        zone_ids={zone: zone_id for _, _, zone_id, zone in places},
    )


def started_bookings(
    session: Session, site: str, *, since: datetime, now: datetime
) -> list[ChartedBooking]:
    """The site's desk bookings (not cancelled) that started in `[since, now]`, to chart."""
    rows = session.execute(
        select(
            BookingRow.id, BookingRow.starts_at, BookingRow.ends_at, BookingRow.status, DeskRow.slug
        )
        .join(DeskRow, DeskRow.id == BookingRow.desk_id)
        .join(SiteRow, SiteRow.id == BookingRow.site_id)
        .where(SiteRow.slug == site)
        .where(BookingRow.status != BookingStatus.CANCELLED)
        .where(BookingRow.starts_at >= since, BookingRow.starts_at <= now)
    ).all()
    return [
        ChartedBooking(id=i, site=site, desk=desk, start=start, end=end, status=status.value)
        for i, start, end, status, desk in rows
    ]
