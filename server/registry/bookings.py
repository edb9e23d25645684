"""Bookings of a desk or a whole zone, and day passes.

A desk, or a whole zone (a room), is booked over the half-open interval
[starts_at, ends_at). Two active (`booked`) bookings of one resource may not intersect,
nor may a zone's booking and a booking of one of its desks; touching ones (10:00-11:00
then 11:00-12:00) may. Grace minutes are not part of the rule:
they widen when the booking opens the doors, and letting someone in ten minutes early must
not forbid the booking before theirs. The check and the insert are made atomic by locking
the zone the booking touches (a desk's own): `SELECT ... FOR UPDATE` on PostgreSQL (the
second of two concurrent bookers waits, then sees the first one's row: READ COMMITTED
takes a fresh snapshot per statement), and SQLite's single write lock, which the storage
takes at `BEGIN IMMEDIATE`. An exclusion constraint would need the btree_gist extension
and does not exist on SQLite; the lock keeps one rule, in Python, for both databases."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.registry.base import _aware, _now, _savepoint, get
from ruche.server.registry.booking_limits import check_booking
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
    check_booking(session, site_id=site_id, member_id=member_id, starts_at=starts_at,
                  ends_at=ends_at, now=_now())  # fmt: skip

    zone = _lock_zone(session, desk_id=desk_id, zone_id=zone_id, site_id=site_id)
    _refuse_clash(session, BookingRow.zone_id == zone, starts_at, ends_at,
                  f"zone {zone} is booked whole over that time (booking {{}}): pick another "
                  "time or another zone")  # fmt: skip
    if desk_id is not None:
        _refuse_clash(session, BookingRow.desk_id == desk_id, starts_at, ends_at,
                      f"desk {desk_id} is already booked over that time (booking {{}}): pick "
                      "another time or another desk")  # fmt: skip
    else:
        in_zone = select(DeskRow.id).where(DeskRow.zone_id == zone).scalar_subquery()
        _refuse_clash(session, BookingRow.desk_id.in_(in_zone), starts_at, ends_at,
                      f"a desk of zone {zone} is booked over that time (booking {{}}): a zone "
                      "is booked whole only when none of its desks is")  # fmt: skip
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


def _lock_zone(session: Session, *, desk_id: int | None, zone_id: int | None, site_id: int) -> int:
    """Lock the zone a booking touches (a desk's own zone) and return its id.

    Desk and zone bookings of one zone both take this one lock, zone first, then nothing
    else: a desk and its zone booked at the same moment are checked one after the other,
    never both accepted, and two bookers never wait on each other in opposite orders."""
    if desk_id is not None:
        desk = session.execute(
            select(DeskRow.zone_id, DeskRow.site_id).where(DeskRow.id == desk_id)
        ).one_or_none()
        if desk is None:
            raise NotFound("Desk", desk_id)
        if desk.site_id != site_id:
            raise Invalid(f"desk {desk_id} is not at site {site_id}")
        zone_id = desk.zone_id
    locked = session.execute(
        select(ZoneRow.id, ZoneRow.site_id).where(ZoneRow.id == zone_id).with_for_update()
    ).one_or_none()
    if locked is None:
        raise NotFound("Zone", zone_id)
    if locked.site_id != site_id:
        raise Invalid(f"zone {zone_id} is not at site {site_id}")
    return int(locked.id)


def _refuse_clash(
    session: Session,
    which: ColumnElement[bool],
    starts_at: datetime,
    ends_at: datetime,
    message: str,
) -> None:
    """Conflict (`message` with the clashing booking's id) when an active booking chosen by
    `which` intersects [starts_at, ends_at)."""
    clash = session.scalars(
        select(BookingRow.id)
        .where(
            which,
            BookingRow.status == BookingStatus.BOOKED,
            BookingRow.starts_at < ends_at,
            BookingRow.ends_at > starts_at,
        )
        .limit(1)
    ).first()
    if clash is not None:
        raise Conflict(message.format(clash))


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
