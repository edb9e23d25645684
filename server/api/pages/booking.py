"""A member's booking pages: `/my/book` (a floor plan of the chosen site, date and span,
a button on each free desk) and `/my/bookings` (theirs, with a cancel button).

A booking goes through `registry.desk_booking.book_desk`, the registry's `book` behind
a member's own rules (the plan lists the site, not in the past); cancelling through
`registry.cancel_booking`, on a booking loaded by the API's `BookingInScope` (another
member's id is a 403 page). After either commits, `ChangesDep` tells the listener, which
republishes the site's allow-lists to its doors and redraws the live floor.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Final, Literal, TypeVar

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from ruche.server import registry
from ruche.server.api.deps import BookingInScope, ChangesDep, SessionDep
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import MemberReader
from ruche.server.api.pages.rendering import page_locale, render, viewer_of
from ruche.server.api.policy import Principal
from ruche.server.api.schemas import MAX_ID
from ruche.server.errors import Conflict, DomainError
from ruche.server.i18n import N_, Formats
from ruche.server.registry.booking_limits import LimitExceeded, MembershipRequired
from ruche.server.registry.desk_booking import (
    HORIZON,
    BookingRefused,
    DeskState,
    Refusal,
    book_desk,
    bookable_sites,
    day_span,
    desk_states,
    from_now,
    refusal,
    rights_of,
)
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import BookingRow, DeskRow, SiteRow, ZoneRow

router = APIRouter(include_in_schema=False)

BOOK: Final = "/my/book"
BOOKINGS: Final = "/my/bookings"
DAY_START: Final = time(9)
DAY_END: Final = time(18)
RECENT: Final = timedelta(days=30)
"""How far back `/my/bookings` lists past bookings."""

ERRORS: Final = {
    "taken": N_("Someone has just booked this desk for that time. Pick another desk."),
    Refusal.PAST.value: N_("That time is over. Pick a day and hours still to come."),
    Refusal.TOO_FAR.value: N_("Bookings open 90 days ahead. Pick an earlier day."),
    Refusal.OUTSIDE_PLAN.value: N_(
        "Your plan does not include this site on that day. Ask the site's manager."
    ),
    Refusal.ORDER.value: N_("The end must come after the start."),
    "unavailable": N_("This desk cannot be booked at this site."),
    "limit_days_ahead": N_("This site takes bookings fewer days ahead. Pick an earlier day."),
    "limit_max_minutes": N_("This booking is longer than this site allows. Book fewer hours."),
    "limit_at_once": N_(
        "You already hold as many bookings as this site allows at once. Cancel one first."
    ),
    "not_active": N_("This booking was already cancelled or has ended."),
    "ended": N_("This booking has ended: it can no longer be cancelled."),
    "unreadable": N_("That day or time could not be read. Pick them again."),
}
NOTICES: Final = {
    "booked": N_("Your desk is booked. The doors will let you in with your badge."),
    "cancelled": N_("Your booking is cancelled."),
}
STATES: Final = {
    DeskState.FREE: N_("Free"),
    DeskState.TAKEN: N_("Taken"),
    DeskState.YOURS: N_("Yours"),
}
STATUSES: Final = {
    BookingStatus.BOOKED: N_("Booked"),
    BookingStatus.CANCELLED: N_("Cancelled"),
    BookingStatus.RELEASED: N_("Released"),
    BookingStatus.NO_SHOW: N_("No-show"),
}

Span = Literal["day", "hours"]
Slug = Annotated[str | None, Query(max_length=64)]
Typed = Annotated[str | None, Query(max_length=32)]
"""A date or a time as a picker sends it; read by `_read`, so an emptied field is a
message rather than an error page."""
T = TypeVar("T")


def _read(parse: Callable[[str], T], text: str | None) -> tuple[T | None, bool]:
    """`text` parsed (None when absent or empty), and whether it could be."""
    if not text:
        return None, True
    try:
        return parse(text), True
    except ValueError:
        return None, False


@dataclass(frozen=True, slots=True)
class Choice:
    """What the member picked: a site, a day, whole or from `start` to `end`."""

    site: SiteRow
    day: date
    span: Span
    start: time
    end: time

    @property
    def times(self) -> tuple[time | None, time | None]:
        return (self.start, self.end) if self.span == "hours" else (None, None)

    def params(self) -> dict[str, str | None]:
        """The query that shows this choice again (after a post)."""
        hours = self.span == "hours"
        return {"site": self.site.slug, "day": self.day.isoformat(), "span": self.span,
                "start": self.start.strftime("%H:%M") if hours else None,
                "end": self.end.strftime("%H:%M") if hours else None}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeskCell:
    id: int
    slug: str
    x: int | None
    y: int | None
    state: DeskState


@dataclass(frozen=True, slots=True)
class ZonePlan:
    """A zone as the plan draws it: placed desks on a grid of `columns`, then the rest."""

    name: str
    columns: int
    placed: list[DeskCell]
    unplaced: list[DeskCell]


def _site_today(site: SiteRow, now: datetime) -> date:
    return now.astimezone(site.tzinfo).date()


def _pick_site(session: Session, sites: Sequence[SiteRow], slug: str | None) -> SiteRow | None:
    """The site asked for (any site: the rules say if the member's plan reaches it), else
    the member's first; None when they have none. An unknown slug is a 404."""
    if slug is None:
        return sites[0] if sites else None
    return registry.get_site_by_slug(session, slug)


def zone_plans(
    zones: Sequence[ZoneRow], desks: Sequence[DeskRow], states: dict[int, DeskState]
) -> list[ZonePlan]:
    """The site's desks by zone, placed ones in row then column order."""
    plans = []
    for zone in zones:
        cells = [DeskCell(d.id, d.slug, d.x, d.y, states.get(d.id, DeskState.TAKEN))
                 for d in desks if d.zone_id == zone.id]  # fmt: skip
        placed = sorted((c for c in cells if c.x is not None and c.y is not None),
                        key=lambda c: (c.y or 0, c.x or 0, c.slug))  # fmt: skip
        unplaced = sorted((c for c in cells if c.x is None or c.y is None), key=lambda c: c.slug)
        columns = max((c.x or 0 for c in placed), default=0) + 1
        if cells:
            plans.append(ZonePlan(zone.name, columns, placed, unplaced))
    return plans


@router.get(BOOK, response_class=HTMLResponse)
def book_page(
    *,
    request: Request,
    reader: MemberReader,
    session: SessionDep,
    site: Slug = None,
    day: Typed = None,
    span: Annotated[Span, Query()] = "day",
    start: Typed = None,
    end: Typed = None,
) -> HTMLResponse:
    """The floor plan of a site for a day (or hours of it): which desks are free, a button
    on each to book it. An emptied day or time takes its default; one that cannot be
    read is said so, and today shown."""
    member_id = _member(reader)
    now = datetime.now(UTC)
    sites = bookable_sites(session, member_id, now)
    chosen = _pick_site(session, sites, site)
    if chosen is None:
        return render(request, "booking/book.html", choice=None, sites=sites, zones=[],
                      message=outcome(request, ERRORS, NOTICES), states=STATES,
                      refused=None)  # fmt: skip
    today = _site_today(chosen, now)
    picked_day, day_read = _read(date.fromisoformat, day)
    picked_start, start_read = _read(time.fromisoformat, start)
    picked_end, end_read = _read(time.fromisoformat, end)
    choice = Choice(chosen, picked_day or today, span, picked_start or DAY_START,
                    picked_end or DAY_END)  # fmt: skip
    message = outcome(request, ERRORS, NOTICES)
    if not (day_read and start_read and end_read):
        message = {"kind": "error", "text": ERRORS["unreadable"]}
        choice = Choice(chosen, today, span, DAY_START, DAY_END)
    zones: list[ZonePlan] = []
    why: Refusal | None = None
    span_start: datetime | None = None
    span_end: datetime | None = None
    try:
        span_start, span_end = day_span(choice.day, chosen.tzinfo, *choice.times)
        starts_at, ends_at = from_now(span_start, now), span_end
        why = refusal(rights=rights_of(session, member_id), site_id=chosen.id,
                      zone=chosen.tzinfo, starts_at=starts_at, ends_at=ends_at,
                      now=now)  # fmt: skip
    except BookingRefused as refused:
        why = refused.refusal
    except OverflowError:  # a day at the end of the calendar
        why = Refusal.TOO_FAR
    if why is None:
        desks = registry.list_desks(session, site_id=chosen.id)
        states = desk_states(session, desks=desks, member_id=member_id,
                             starts_at=starts_at, ends_at=ends_at)  # fmt: skip
        zones = zone_plans(registry.list_zones(session, chosen.id), desks, states)
    elif message is None:
        message = {"kind": "error", "text": ERRORS[why.value]}
    session.commit()  # nothing written: end the read before the page renders
    return render(request, "booking/book.html", timezone=chosen.timezone, choice=choice,
                  sites=sites, zones=zones, message=message, states=STATES, today=today,
                  last_day=today + HORIZON, refused=why, span_start=span_start,
                  span_end=span_end, now=now)  # fmt: skip


@router.post(BOOK)
def book_form(
    *,
    reader: MemberReader,
    session: SessionDep,
    changes: ChangesDep,
    site: Annotated[str, Form(max_length=64)],
    desk: Annotated[int, Form(ge=1, le=MAX_ID)],
    day: Annotated[date, Form()],
    span: Annotated[Span, Form()] = "day",
    start: Annotated[time | None, Form()] = None,
    end: Annotated[time | None, Form()] = None,
) -> RedirectResponse:
    """Book `desk` for the member over the chosen span; back to the plan, saying how it
    went."""
    member_id = _member(reader)
    now = datetime.now(UTC)
    chosen = registry.get_site_by_slug(session, site)
    choice = Choice(chosen, day, span, start or DAY_START, end or DAY_END)
    try:
        starts_at, ends_at = day_span(choice.day, chosen.tzinfo, *choice.times)
        book_desk(session, member_id=member_id, site_id=chosen.id, desk_id=desk,
                  starts_at=starts_at, ends_at=ends_at, now=now)  # fmt: skip
    except BookingRefused as refused:
        return back(BOOK, error=refused.refusal.value, **choice.params())
    except OverflowError:
        return back(BOOK, error=Refusal.TOO_FAR.value, **choice.params())
    except LimitExceeded as limit:
        return back(BOOK, error=f"limit_{limit.kind}", **choice.params())
    except MembershipRequired:  # book's own plan rule, should it ever see more than ours
        return back(BOOK, error=Refusal.OUTSIDE_PLAN.value, **choice.params())
    except Conflict:
        return back(BOOK, error="taken", **choice.params())
    except DomainError:  # the desk is not at this site, or no longer exists
        return back(BOOK, error="unavailable", **choice.params())
    changes.site_changed(chosen.slug)
    changes.commit()
    return back(BOOK, done="booked", **choice.params())


@dataclass(frozen=True, slots=True)
class BookingLine:
    """One booking as `/my/bookings` lists it, written in its site's timezone."""

    id: int
    site: str
    place: str
    day: str
    hours: str
    status: str
    cancellable: bool


def _lines(
    session: Session, bookings: Sequence[BookingRow], locale: str, now: datetime
) -> list[BookingLine]:
    sites: dict[int, SiteRow] = {}
    places: dict[tuple[int | None, int | None], str] = {}
    lines = []
    for booking in bookings:
        site = sites.get(booking.site_id) or registry.get(session, SiteRow, booking.site_id)
        sites[site.id] = site
        key = (booking.desk_id, booking.zone_id)
        if key not in places:
            places[key] = (
                registry.get(session, DeskRow, booking.desk_id).slug
                if booking.desk_id is not None
                else registry.get(session, ZoneRow, booking.zone_id or 0).name
            )
        formats = Formats(locale, site.timezone)
        lines.append(BookingLine(
            id=booking.id, site=site.name, place=places[key],
            day=formats.date(booking.starts_at, "full"),
            hours=f"{formats.time(booking.starts_at)}\N{EN DASH}{formats.time(booking.ends_at)}",
            status=STATUSES[booking.status],
            cancellable=booking.status is BookingStatus.BOOKED and booking.ends_at > now,
        ))  # fmt: skip
    return lines


@router.get(BOOKINGS, response_class=HTMLResponse)
def bookings_page(request: Request, reader: MemberReader, session: SessionDep) -> HTMLResponse:
    """The member's bookings still to come (with a cancel button each), then those of the
    last 30 days, most recent first."""
    now = datetime.now(UTC)
    rows = registry.list_bookings(session, member_id=_member(reader), since=now - RECENT)
    viewer = viewer_of(request)
    locale = page_locale(request, viewer)
    upcoming = [b for b in rows if b.status is BookingStatus.BOOKED and b.ends_at > now]
    shown = {b.id for b in upcoming}
    recent = sorted((b for b in rows if b.id not in shown), key=lambda b: b.starts_at,
                    reverse=True)  # fmt: skip
    page = render(request, "booking/bookings.html", viewer=viewer,
                  upcoming=_lines(session, upcoming, locale, now),
                  recent=_lines(session, list(itertools.islice(recent, 50)), locale, now),
                  message=outcome(request, ERRORS, NOTICES))  # fmt: skip
    session.commit()
    return page


@router.post(BOOKINGS + "/{booking_id}/cancel")
def cancel_form(
    reader: MemberReader, booking: BookingInScope, session: SessionDep, changes: ChangesDep
) -> RedirectResponse:
    """Cancel one of the member's bookings that has not ended (another's is a 403 page,
    as in the API)."""
    if booking.member_id != reader.member_id:  # staff reach it in the API, not here
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this booking is another member's")
    if booking.ends_at <= datetime.now(UTC):
        return back(BOOKINGS, error="ended")
    try:
        registry.cancel_booking(session, booking.id)
    except Conflict:
        return back(BOOKINGS, error="not_active")
    changes.site_changed(registry.get(session, SiteRow, booking.site_id).slug)
    changes.commit()
    return back(BOOKINGS, done="cancelled")


def _member(reader: Principal) -> int:
    assert reader.member_id is not None  # noqa: S101 - MemberReader lets members only
    return reader.member_id
