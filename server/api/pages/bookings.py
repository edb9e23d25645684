"""The manager's bookings: a day of one zone of a site (desks down, opening hours across),
and forms to book for any member, move a booking and cancel one.

Every change goes through the registry's booking functions, as `POST /bookings` does,
with `ChangesDep`, so the doors' allow-lists are republished once it is committed. A
move is the old booking cancelled and a new one made in one transaction: the same rule
(no two bookings of one desk or room at once) checks it, and a refusal leaves the old
booking as it was. The page also refuses what the API leaves to the manager's judgement
when they book by hand: a time outside the site's opening hours, a member with no plan
at the site that day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Final

import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from ruche.server import registry
from ruche.server.access.invitations import site_hours
from ruche.server.api.deps import BookingInScope, ChangesDep, SessionDep
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import ManagerReader, site_choice
from ruche.server.api.pages.rendering import render
from ruche.server.errors import Conflict, DomainError, Invalid, NotFound
from ruche.server.i18n import N_
from ruche.server.registry.booking_limits import LimitExceeded, MembershipRequired
from ruche.server.registry.schedule import Interval, local_day
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import BookingRow, DeskRow, MemberRow, SiteRow, ZoneRow

router = APIRouter(include_in_schema=False)

PATH: Final = "/manage/bookings"
DESKS_PER_PAGE: Final = 40
"""Desks shown at once: a 200-desk zone is five pages, each a few small queries."""
MEMBERS_SHOWN: Final = 50
"""Members the picker lists; the search narrows them."""
_DEFAULT_AXIS: Final = (time(8), time(19))
"""The hours drawn on a day the site does not open, or is open all day."""
_LONGEST_DRAWN: Final = timedelta(hours=16)
"""Opening hours longer than this are drawn as the usual hours (`_axis`)."""

NOTICES: Final = {
    "created": N_("The booking is made."),
    "moved": N_("The booking is moved."),
    "cancelled": N_("The booking is cancelled."),
}
ERRORS: Final = {
    "taken": N_(
        "That desk or room is already booked over that time: pick another time or another desk."
    ),
    "outside_opening": N_("The site is not open over that whole time: book within its hours."),
    "closed": N_("The site is closed that day: pick another day."),
    "no_plan": N_(
        "This member has no plan at this site that day: give them a plan or a day pass first."
    ),
    "inactive": N_("This member is disabled: re-activate them to book."),
    "limit_days_ahead": N_("This site takes bookings fewer days ahead. Pick an earlier day."),
    "limit_max_minutes": N_("This booking is longer than this site allows. Book fewer hours."),
    "limit_at_once": N_(
        "This member already holds as many bookings as this site allows at once. Cancel one first."
    ),
    "bad_times": N_("A booking must end after it starts."),
    "bad_form": N_("Choose a member, a desk or a room, a day and the times."),
    "not_booked": N_("This booking is no longer active."),
}


# --- what the day view shows ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A booking drawn on a desk's line: where it sits on the day's axis, in percent."""

    booking: BookingRow
    member: str
    left: float
    width: float


@dataclass(frozen=True, slots=True)
class Line:
    """One row of the day view: a desk, or the zone booked whole."""

    label: str
    blocks: list[Block]


@dataclass(frozen=True, slots=True)
class Axis:
    """The day's hours across the view, in UTC, with a tick at each local hour."""

    start: datetime
    end: datetime
    ticks: list[tuple[datetime, float]]

    def place(self, starts: datetime, ends: datetime) -> tuple[float, float]:
        span = (self.end - self.start).total_seconds()
        lo = max(0.0, (starts - self.start).total_seconds() / span)
        hi = min(1.0, (ends - self.start).total_seconds() / span)
        return round(lo * 100, 2), round(max(hi - lo, 0.0) * 100, 2)


def _axis(hours: Interval | None, day: date, site: SiteRow, bookings: Sequence[BookingRow]) -> Axis:
    """Whole local hours around the opening, widened to the bookings shown. A site open
    all day (or closed) is drawn over the usual working hours, widened the same way: a
    24-hour axis would leave a morning booking a sliver."""
    tz = site.tzinfo
    usual = (datetime.combine(day, _DEFAULT_AXIS[0], tzinfo=tz).astimezone(UTC),
             datetime.combine(day, _DEFAULT_AXIS[1], tzinfo=tz).astimezone(UTC))  # fmt: skip
    if hours is None or hours[1] - hours[0] > _LONGEST_DRAWN:
        hours = usual
    first, last = local_day(day, tz)
    lo = max(first, min([hours[0], *(b.starts_at for b in bookings)]))
    hi = min(last, max([hours[1], *(b.ends_at for b in bookings)]))
    start = lo.astimezone(tz).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    end = hi if hi == last else hi.astimezone(tz).replace(minute=0, second=0, microsecond=0)
    if end < hi:
        end += timedelta(hours=1)
    end = end.astimezone(UTC)
    axis = Axis(start, end, [])
    step = timedelta(hours=1 if end - start <= timedelta(hours=12) else 2)
    tick = start
    while tick < end:
        axis.ticks.append((tick, axis.place(tick, tick)[0]))
        tick += step
    return axis


def _day_bookings(session: Session, site: SiteRow, day: date) -> list[BookingRow]:
    start, end = local_day(day, site.tzinfo)
    return registry.list_bookings(
        session, site_id=site.id, status=BookingStatus.BOOKED, since=start, until=end
    )


def _names(session: Session, member_ids: set[int]) -> dict[int, str]:
    if not member_ids:
        return {}
    rows = session.execute(
        sa.select(MemberRow.id, MemberRow.name).where(MemberRow.id.in_(member_ids))
    )
    return dict(rows.all())


def _members(session: Session, search: str) -> list[MemberRow]:
    """Active members matching `search` (name or e-mail), by name: the picker's choices."""
    query = sa.select(MemberRow).where(MemberRow.active).order_by(MemberRow.name, MemberRow.id)
    if search:
        like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            sa.or_(
                MemberRow.name.ilike(like, escape="\\"), MemberRow.email.ilike(like, escape="\\")
            )
        )
    return list(session.scalars(query.limit(MEMBERS_SHOWN)))


def _targets(session: Session, site: SiteRow) -> list[tuple[ZoneRow, list[DeskRow]]]:
    """Every zone of the site with its desks: what a booking may hold."""
    zones = registry.list_zones(session, site.id)
    desks = session.scalars(
        sa.select(DeskRow).where(DeskRow.site_id == site.id).order_by(DeskRow.slug)
    ).all()
    return [(zone, [d for d in desks if d.zone_id == zone.id]) for zone in zones]


def _site_today(site: SiteRow) -> date:
    return datetime.now(UTC).astimezone(site.tzinfo).date()


def _day_or_today(text: str, site: SiteRow) -> date:
    """The form's day to go back to, or the site's today when it is not one."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return _site_today(site)


@router.get(PATH)
def bookings_page(
    *,
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    day: date | None = None,
    zone: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    q: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    """One zone's day: its desks (a page of them) and their bookings."""
    chosen, sites = site_choice(session, reader, site)
    day = day or _site_today(chosen)
    targets = _targets(session, chosen)
    current = next((z for z, _ in targets if z.id == zone), targets[0][0] if targets else None)
    desks = next((d for z, d in targets if current is not None and z.id == current.id), [])
    pages = max(1, -(-len(desks) // DESKS_PER_PAGE))
    page = min(page, pages)
    shown = desks[(page - 1) * DESKS_PER_PAGE : page * DESKS_PER_PAGE]
    hours = site_hours(session, chosen, day)
    bookings = _day_bookings(session, chosen, day)
    names = _names(session, {b.member_id for b in bookings})

    def blocks(which: Sequence[BookingRow]) -> list[Block]:
        return [Block(b, names.get(b.member_id, "?"), *axis.place(b.starts_at, b.ends_at))
                for b in which]  # fmt: skip

    on_page = {d.id for d in shown}
    zone_id = None if current is None else current.id
    drawn = [b for b in bookings if b.desk_id in on_page or (zone_id and b.zone_id == zone_id)]
    axis = _axis(hours, day, chosen, drawn)
    lines = []
    if current is not None:
        lines.append(Line("", blocks([b for b in bookings if b.zone_id == current.id])))
    lines += [Line(d.slug, blocks([b for b in bookings if b.desk_id == d.id])) for d in shown]
    return render(
        request, "bookings/day.html", timezone=chosen.timezone,
        site=chosen, sites=sites, day=day, zones=[z for z, _ in targets], zone=current,
        targets=targets, lines=lines, axis=axis, hours=hours,
        all_day=hours == local_day(day, chosen.tzinfo), page=page, pages=pages,
        q=q, members=_members(session, q.strip()), today=_site_today(chosen),
        previous_day=day - timedelta(days=1), next_day=day + timedelta(days=1),
        message=outcome(request, ERRORS, NOTICES),
    )  # fmt: skip


# --- changes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wanted:
    """A booking as a form asks for it: what, and when (UTC)."""

    desk_id: int | None
    zone_id: int | None
    starts_at: datetime
    ends_at: datetime


class Refused(Exception):  # noqa: N818 - a refusal, carried to the redirect
    """A form the page turns down, with its `ERRORS` code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise Refused("bad_form") from None
    if not 1 <= value <= 2**31 - 1:
        raise Refused("bad_form")
    return value


def _wanted(
    session: Session, site: SiteRow, *, target: str, day: str, span: str, start: str, end: str
) -> Wanted:
    """The form's target (`desk:<id>` or `zone:<id>`) and times, checked against the
    site's opening hours that day."""
    kind, _, raw_id = target.partition(":")
    if kind not in {"desk", "zone"}:
        raise Refused("bad_form")
    resource = _int(raw_id)
    try:
        local = date.fromisoformat(day)
    except ValueError:
        raise Refused("bad_form") from None
    hours = site_hours(session, site, local)
    if hours is None:
        raise Refused("closed")
    if span == "day":
        starts_at, ends_at = hours
    else:
        try:
            t0, t1 = time.fromisoformat(start), time.fromisoformat(end)
        except ValueError:
            raise Refused("bad_form") from None
        tz = site.tzinfo
        starts_at = datetime.combine(local, t0, tzinfo=tz).astimezone(UTC)
        ends_at = datetime.combine(local, t1, tzinfo=tz).astimezone(UTC)
        if ends_at <= starts_at:
            raise Refused("bad_times")
        if starts_at < hours[0] or ends_at > hours[1]:
            raise Refused("outside_opening")
    return Wanted(resource if kind == "desk" else None, resource if kind == "zone" else None,
                  starts_at, ends_at)  # fmt: skip


def _book(
    session: Session, site: SiteRow, member_id: int, wanted: Wanted, *, grace: tuple[int, int]
) -> BookingRow:
    """`registry.book`, its refusals as codes."""
    member = session.get(MemberRow, member_id)
    if member is None:
        raise Refused("bad_form")
    if not member.active:
        raise Refused("inactive")
    try:
        return registry.book(
            session, member_id=member_id, site_id=site.id, desk_id=wanted.desk_id,
            zone_id=wanted.zone_id, starts_at=wanted.starts_at, ends_at=wanted.ends_at,
            grace_before=grace[0], grace_after=grace[1],
        )  # fmt: skip
    except MembershipRequired:  # no plan at the site then, nor a day pass for the day
        raise Refused("no_plan") from None
    except LimitExceeded as limit:
        raise Refused(f"limit_{limit.kind}") from None
    except Conflict:
        raise Refused("taken") from None
    except (Invalid, NotFound):
        raise Refused("bad_form") from None


def _view(site: SiteRow, day: date | str, zone: int | None) -> str:
    return f"{PATH}?site={site.slug}&day={day}" + (f"&zone={zone}" if zone else "")


def _zone_of(session: Session, wanted: Wanted) -> int | None:
    if wanted.zone_id is not None:
        return wanted.zone_id
    return session.scalar(sa.select(DeskRow.zone_id).where(DeskRow.id == wanted.desk_id))


Field = Annotated[str, Form(max_length=100)]


@router.post(PATH)
def create_booking(
    *,
    reader: ManagerReader,
    session: SessionDep,
    changes: ChangesDep,
    site: Field,
    member_id: Field = "",
    target: Field = "",
    day: Field = "",
    span: Field = "hours",
    start: Field = "",
    end: Field = "",
    zone: Field = "",
) -> RedirectResponse:
    """Book a desk or a room for a member, then back to the day view."""
    chosen, _ = site_choice(session, reader, site)
    back_zone = int(zone) if zone.isdigit() and len(zone) < 10 else None
    try:
        member = _int(member_id)
        wanted = _wanted(session, chosen, target=target, day=day, span=span, start=start, end=end)
        _book(session, chosen, member, wanted, grace=(0, 0))
    except Refused as refused:
        session.rollback()
        return back(_view(chosen, _day_or_today(day, chosen), back_zone), error=refused.code)
    changes.site_changed(chosen.slug)
    changes.commit()
    return back(_view(chosen, day, _zone_of(session, wanted)), done="created")


@router.post(PATH + "/{booking_id}/cancel")
def cancel_booking(
    *,
    _reader: ManagerReader,
    booking: BookingInScope,
    session: SessionDep,
    changes: ChangesDep,
    zone: Field = "",
) -> RedirectResponse:
    """Cancel a booking that is still active, then back to its day."""
    site = registry.get(session, SiteRow, booking.site_id)
    day = booking.starts_at.astimezone(site.tzinfo).date()
    back_zone = int(zone) if zone.isdigit() and len(zone) < 10 else None
    try:
        registry.cancel_booking(session, booking.id)
    except Conflict:
        return back(_view(site, day, back_zone), error="not_booked")
    changes.site_changed(site.slug)
    changes.commit()
    return back(_view(site, day, back_zone), done="cancelled")


@router.get(PATH + "/{booking_id}/move")
def move_page(
    request: Request, _reader: ManagerReader, booking: BookingInScope, session: SessionDep
) -> HTMLResponse:
    """The form that moves a booking to another desk or room, day or time."""
    site = registry.get(session, SiteRow, booking.site_id)
    member = registry.get(session, MemberRow, booking.member_id)
    tz = site.tzinfo
    return render(
        request, "bookings/move.html", timezone=site.timezone, site=site, booking=booking,
        member=member, targets=_targets(session, site),
        day=booking.starts_at.astimezone(tz).date(),
        start=booking.starts_at.astimezone(tz).strftime("%H:%M"),
        end=booking.ends_at.astimezone(tz).strftime("%H:%M"),
        message=outcome(request, ERRORS, NOTICES),
    )  # fmt: skip


@router.post(PATH + "/{booking_id}/move")
def move_booking(
    *,
    _reader: ManagerReader,
    booking: BookingInScope,
    session: SessionDep,
    changes: ChangesDep,
    target: Field = "",
    day: Field = "",
    span: Field = "hours",
    start: Field = "",
    end: Field = "",
) -> RedirectResponse:
    """Cancel the booking and make its replacement in one transaction; a refusal keeps
    the booking as it was."""
    site = registry.get(session, SiteRow, booking.site_id)
    member_id, grace = booking.member_id, (booking.grace_before, booking.grace_after)
    here = f"{PATH}/{booking.id}/move"
    try:
        wanted = _wanted(session, site, target=target, day=day, span=span, start=start, end=end)
        try:
            registry.cancel_booking(session, booking.id)
        except DomainError:
            raise Refused("not_booked") from None
        _book(session, site, member_id, wanted, grace=grace)
    except Refused as refused:
        session.rollback()
        return back(here, error=refused.code)
    changes.site_changed(site.slug)
    changes.commit()
    return back(_view(site, day, _zone_of(session, wanted)), done="moved")
