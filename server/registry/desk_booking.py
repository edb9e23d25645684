"""A member booking a desk for themself: the rules before `book`, and which desks are free.

The booking itself is `bookings.book`, the function the API's `POST /bookings` calls
(one desk, no two active bookings of it that intersect: Conflict). Before it,
`book_desk` keeps the rules a member's own booking obeys, decided by the pure `refusal`:

- `past`: the span has already ended. A span that has begun (today, booked at 14:00)
  is booked from now, the minute rounded down (`from_now`): the hours gone are nobody's.
- `too_far`: it starts more than `HORIZON` ahead.
- `outside_plan`: no membership over part of the span has a plan that lists the site,
  and the member has no day pass there for the day it starts (the site's day). The plan
  says where a member may go (`ruche.server.access.rules`): a booking at a site outside
  it would open nothing. `book` keeps the same rule; checking it here too lets the plan
  page say so before a desk is chosen.

Then `book`'s own: the site's booking limits (`booking_limits.LimitExceeded`), and the
desk being free (Conflict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ruche.server.errors import Invalid
from ruche.server.registry.base import _aware, get
from ruche.server.registry.bookings import book
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import (
    BookingRow,
    DayPassRow,
    DeskRow,
    MembershipRow,
    PlanRow,
    SiteRow,
    plan_sites,
)

HORIZON: Final = timedelta(days=90)
"""How far ahead a member may book."""


class Refusal(StrEnum):
    """Why a member may not book a span (the codes the pages put into words)."""

    ORDER = "order"
    PAST = "past"
    TOO_FAR = "too_far"
    OUTSIDE_PLAN = "outside_plan"


class BookingRefused(Invalid):
    """A member's booking breaks one of this module's rules: `refusal` says which."""

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class PlanSpan:
    """A membership as the rule reads it: the sites its plan lists over `[start, end)`."""

    start: datetime
    end: datetime | None
    site_ids: frozenset[int]

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and (self.end is None or start < self.end)


@dataclass(frozen=True, slots=True)
class Rights:
    """Where a member may book: their memberships, and their day passes as (site, day)."""

    plans: tuple[PlanSpan, ...] = ()
    passes: frozenset[tuple[int, date]] = frozenset()

    def reach(self, site_id: int, starts_at: datetime, ends_at: datetime, day: date) -> bool:
        """Whether a plan lists the site over part of the span, or a pass gives `day`."""
        return (site_id, day) in self.passes or any(
            site_id in p.site_ids and p.overlaps(starts_at, ends_at) for p in self.plans
        )


class DeskState(StrEnum):
    """A desk over a span, as the booking page shows it."""

    FREE = "free"
    TAKEN = "taken"
    YOURS = "yours"


# --- the pure rules ------------------------------------------------------------------------


def day_span(
    day: date, zone: ZoneInfo, start: time | None = None, end: time | None = None
) -> tuple[datetime, datetime]:
    """`day` at a site of timezone `zone`, whole (midnight to midnight) or from `start` to
    `end`, in UTC. An `end` not after `start` is refused (`ORDER`).

    >>> paris = ZoneInfo("Europe/Paris")
    >>> [t.isoformat() for t in day_span(date(2026, 12, 8), paris, time(9), time(12))]
    ['2026-12-08T08:00:00+00:00', '2026-12-08T11:00:00+00:00']
    """
    if (start is None) != (end is None):
        raise BookingRefused(Refusal.ORDER, "give both the start and the end, or neither")
    if start is None or end is None:
        first = datetime.combine(day, time(), tzinfo=zone)
        last = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    else:
        if end <= start:
            raise BookingRefused(Refusal.ORDER, "a booking must end after it starts")
        first = datetime.combine(day, start, tzinfo=zone)
        last = datetime.combine(day, end, tzinfo=zone)
    return first.astimezone(UTC), last.astimezone(UTC)


def from_now(starts_at: datetime, now: datetime) -> datetime:
    """The start of a span that may have begun: no earlier than `now`'s minute."""
    return max(starts_at, now.replace(second=0, microsecond=0))


def refusal(
    *,
    rights: Rights,
    site_id: int,
    zone: ZoneInfo,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> Refusal | None:
    """Why a member with `rights` may not book at `site_id` (in timezone `zone`) over
    `[starts_at, ends_at)` at `now`; None when they may (limits and the desk's being
    free are `book`'s rules)."""
    if ends_at <= now:
        return Refusal.PAST
    if ends_at <= starts_at:
        return Refusal.ORDER
    if starts_at - now > HORIZON:
        return Refusal.TOO_FAR
    if not rights.reach(site_id, starts_at, ends_at, starts_at.astimezone(zone).date()):
        return Refusal.OUTSIDE_PLAN
    return None


_DETAILS: Final = {
    Refusal.ORDER: "a booking must end after it starts",
    Refusal.PAST: "that time is over: pick a time to come",
    Refusal.TOO_FAR: f"bookings open {HORIZON.days} days ahead: pick an earlier day",
    Refusal.OUTSIDE_PLAN: "your plan does not include this site at that time",
}


# --- reading and writing ---------------------------------------------------------------------


def rights_of(session: Session, member_id: int) -> Rights:
    """The member's memberships, each with its plan's sites, and day passes."""
    rows = session.execute(
        select(MembershipRow.starts_at, MembershipRow.ends_at, plan_sites.c.site_id)
        .join(PlanRow, PlanRow.id == MembershipRow.plan_id)
        .outerjoin(plan_sites, plan_sites.c.plan_id == PlanRow.id)
        .where(MembershipRow.member_id == member_id)
        .order_by(MembershipRow.id)
    )
    spans: dict[tuple[datetime, datetime | None], set[int]] = {}
    for start, end, site_id in rows:
        sites = spans.setdefault((start, end), set())
        if site_id is not None:
            sites.add(site_id)
    passes = session.execute(
        select(DayPassRow.site_id, DayPassRow.day).where(DayPassRow.member_id == member_id)
    )
    return Rights(
        tuple(PlanSpan(start, end, frozenset(sites)) for (start, end), sites in spans.items()),
        frozenset((site_id, day) for site_id, day in passes),
    )


def bookable_sites(session: Session, member_id: int, now: datetime) -> list[SiteRow]:
    """The sites of the member's memberships that have not ended and of their day passes
    from yesterday on (a day east of UTC may still be today), by name."""
    rights = rights_of(session, member_id)
    ids = set[int]().union(
        *(p.site_ids for p in rights.plans if p.end is None or p.end > now),
        (site_id for site_id, day in rights.passes if day >= (now - timedelta(days=1)).date()),
    )
    if not ids:
        return []
    return list(session.scalars(select(SiteRow).where(SiteRow.id.in_(ids)).order_by(SiteRow.name)))


def book_desk(
    session: Session,
    *,
    member_id: int,
    site_id: int,
    desk_id: int,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> BookingRow:
    """Book `desk_id` for the member over `[starts_at, ends_at)` (from now, if it has
    begun): BookingRefused by this module's rules, then `book`'s: LimitExceeded over
    the site's limits, Conflict if the desk is taken, Invalid or NotFound for a desk not
    at the site."""
    starts_at = from_now(_aware(starts_at, "start"), now)
    ends_at = _aware(ends_at, "end")
    site = get(session, SiteRow, site_id)
    why = refusal(rights=rights_of(session, member_id), site_id=site_id, zone=site.tzinfo,
                  starts_at=starts_at, ends_at=ends_at, now=now)  # fmt: skip
    if why is not None:
        raise BookingRefused(why, _DETAILS[why])
    return book(session, member_id=member_id, site_id=site_id, desk_id=desk_id,
                starts_at=starts_at, ends_at=ends_at)  # fmt: skip


def desk_states(
    session: Session,
    *,
    desks: Sequence[DeskRow],
    member_id: int,
    starts_at: datetime,
    ends_at: datetime,
) -> dict[int, DeskState]:
    """Each of `desks` over `[starts_at, ends_at)`: the member's own booking of it (or of
    its zone) makes it theirs, anyone else's taken, none free. Only `booked` bookings
    count, as for `book`."""
    zones = {desk.zone_id for desk in desks}
    ids = {desk.id for desk in desks}
    held = session.execute(
        select(BookingRow.desk_id, BookingRow.zone_id, BookingRow.member_id).where(
            BookingRow.status == BookingStatus.BOOKED,
            BookingRow.starts_at < ends_at,
            BookingRow.ends_at > starts_at,
            or_(BookingRow.desk_id.in_(ids), BookingRow.zone_id.in_(zones)),
        )
    )
    by_desk: dict[int, DeskState] = {}
    by_zone: dict[int, DeskState] = {}
    for desk_id, zone_id, holder in held:
        state = DeskState.YOURS if holder == member_id else DeskState.TAKEN
        target, key = (by_desk, desk_id) if desk_id is not None else (by_zone, zone_id)
        if key is not None and target.get(key) is not DeskState.TAKEN:
            target[key] = state  # anyone else's booking outranks one's own
    return {
        desk.id: by_desk.get(desk.id) or by_zone.get(desk.zone_id) or DeskState.FREE
        for desk in desks
    }
