"""Bookings of a desk or a whole zone, and day passes.

A desk, or a whole zone (a room), is booked over the half-open interval
[starts_at, ends_at). Two active (`booked`) bookings of one resource may not intersect;
touching ones (10:00-11:00 then 11:00-12:00) may. Grace minutes are not part of the rule:
they widen when the booking opens the doors, and letting someone in ten minutes early must
not forbid the booking before theirs. The check and the insert are made atomic by locking
the booked resource: `SELECT ... FOR UPDATE` on its desk or zone row on PostgreSQL (the
second of two concurrent bookers waits, then sees the first one's row: READ COMMITTED
takes a fresh snapshot per statement), and SQLite's single write lock, which the storage
takes at `BEGIN IMMEDIATE`. An exclusion constraint would need the btree_gist extension
and does not exist on SQLite; the lock keeps one rule, in Python, for both databases."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.registry.base import _aware, _now, _savepoint, get
from ruche.server.registry.sites import _check_minutes
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import (
    BookingRow,
    DayPassRow,
    DeskRow,
    MemberRow,
    SiteRow,
    ZoneRow,
)


def book(
    session: Session,
    *,
    member_id: int,
    site_id: int,
    starts_at: datetime,
    ends_at: datetime,
    desk_id: int | None = None,
    zone_id: int | None = None,
    grace_before: int = 0,
    grace_after: int = 0,
) -> BookingRow:
    """Book a desk, or a whole zone (a room), for an active member over [starts_at, ends_at).

    Conflict when an active booking of the same desk or zone intersects that interval
    (touching is fine; grace minutes do not count). Safe under concurrency: see the module
    docstring.
    """
    if (desk_id is None) == (zone_id is None):
        raise Invalid("book either a desk or a zone (a room), not both and not neither")
    starts_at, ends_at = _aware(starts_at, "start"), _aware(ends_at, "end")
    if ends_at <= starts_at:
        raise Invalid("a booking must end after it starts")
    _check_minutes(grace_before, "grace before")
    _check_minutes(grace_after, "grace after")
    if not get(session, MemberRow, member_id).active:
        raise Invalid(f"member {member_id} is inactive: re-activate them to book")
    get(session, SiteRow, site_id)

    resource: type[DeskRow] | type[ZoneRow] = DeskRow if desk_id is not None else ZoneRow
    resource_id = desk_id if desk_id is not None else zone_id
    assert resource_id is not None  # noqa: S101 - established by the first check
    # The lock that makes check-then-insert atomic (PostgreSQL; SQLite holds its write lock).
    locked = session.execute(
        select(resource.id, resource.site_id).where(resource.id == resource_id).with_for_update()
    ).one_or_none()
    if locked is None:
        raise NotFound(resource.__name__, resource_id)
    if locked.site_id != site_id:
        raise Invalid(f"{resource.__name__.lower()} {resource_id} is not at site {site_id}")

    column = BookingRow.desk_id if desk_id is not None else BookingRow.zone_id
    clash = session.scalars(
        select(BookingRow.id)
        .where(
            column == resource_id,
            BookingRow.status == BookingStatus.BOOKED,
            BookingRow.starts_at < ends_at,
            BookingRow.ends_at > starts_at,
        )
        .limit(1)
    ).first()
    if clash is not None:
        raise Conflict(
            f"{resource.__name__.lower()} {resource_id} is already booked over that time "
            f"(booking {clash}): pick another time or another {resource.__name__.lower()}"
        )
    booking = BookingRow(
        member_id=member_id,
        site_id=site_id,
        desk_id=desk_id,
        zone_id=zone_id,
        starts_at=starts_at,
        ends_at=ends_at,
        grace_before=grace_before,
        grace_after=grace_after,
        status=BookingStatus.BOOKED,
        created_at=_now(),
    )
    session.add(booking)
    session.flush()
    return booking


def set_booking_status(session: Session, booking_id: int, status: BookingStatus) -> BookingRow:
    """Cancel, release or mark a booking no-show; only a `booked` booking changes."""
    booking = get(session, BookingRow, booking_id)
    if booking.status is not BookingStatus.BOOKED:
        raise Conflict(f"booking {booking_id} is already {booking.status.value}")
    booking.status = status
    session.flush()
    return booking


def cancel_booking(session: Session, booking_id: int) -> BookingRow:
    return set_booking_status(session, booking_id, BookingStatus.CANCELLED)


def list_bookings(
    session: Session,
    *,
    site_id: int | None = None,
    member_id: int | None = None,
    desk_id: int | None = None,
    status: BookingStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[BookingRow]:
    """Bookings matching every filter given; `since`/`until` keep those intersecting them."""
    query = select(BookingRow).order_by(BookingRow.starts_at, BookingRow.id)
    if site_id is not None:
        query = query.where(BookingRow.site_id == site_id)
    if member_id is not None:
        query = query.where(BookingRow.member_id == member_id)
    if desk_id is not None:
        query = query.where(BookingRow.desk_id == desk_id)
    if status is not None:
        query = query.where(BookingRow.status == status)
    if since is not None:
        query = query.where(BookingRow.ends_at > _aware(since, "since"))
    if until is not None:
        query = query.where(BookingRow.starts_at < _aware(until, "until"))
    return list(session.scalars(query))


def add_day_pass(session: Session, *, member_id: int, site_id: int, day: date) -> DayPassRow:
    """Give a member the site for local date `day`; Conflict if they already have it."""
    get(session, MemberRow, member_id)
    get(session, SiteRow, site_id)
    day_pass = DayPassRow(member_id=member_id, site_id=site_id, day=day)
    with _savepoint(session, f"member {member_id} already has a day pass for {day}"):
        session.add(day_pass)
    return day_pass


def list_day_passes(
    session: Session, *, member_id: int | None = None, site_id: int | None = None
) -> list[DayPassRow]:
    query = select(DayPassRow).order_by(DayPassRow.day, DayPassRow.id)
    if member_id is not None:
        query = query.where(DayPassRow.member_id == member_id)
    if site_id is not None:
        query = query.where(DayPassRow.site_id == site_id)
    return list(session.scalars(query))
