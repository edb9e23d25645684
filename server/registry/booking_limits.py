"""How members may book at a site: how far ahead, how long, how many at once.

Only a member with a plan at the site over the booking (or a day pass for its day) may
book there. A manager sets a rule per site (`plan_id` None) and may override it per plan; a member's
rule at a site is their plan's there (the membership covering the booking's start), else
the site's, else none. `check` is the rule, pure; `limits_for` and `set_limits` read and
write the rows; `registry.book` checks every booking against them.

```python
set_limits(session, site_id, plan_id=None, days_ahead=14, max_minutes=10 * 60, at_once=3)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ruche.server.errors import Invalid
from ruche.server.registry.base import get
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import (
    BookingLimitRow,
    BookingRow,
    DayPassRow,
    MembershipRow,
    PlanRow,
    SiteRow,
    plan_sites,
)

MAX_DAYS_AHEAD = 3660
MAX_MINUTES = 366 * 24 * 60
MAX_AT_ONCE = 10_000


@dataclass(frozen=True, slots=True)
class BookingLimits:
    """One rule; None: no limit of that kind."""

    days_ahead: int | None = None
    max_minutes: int | None = None
    at_once: int | None = None

    @property
    def none(self) -> bool:
        return self.days_ahead is None and self.max_minutes is None and self.at_once is None


class LimitExceeded(Invalid):
    """A booking over one of its member's limits; `kind` says which (`days_ahead`,
    `max_minutes`, `at_once`) and `limit` its value, for a page to put into words."""

    def __init__(self, kind: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.limit = limit


def check(limits: BookingLimits, *, today: date, start_day: date, minutes: int,
          held: int) -> None:  # fmt: skip
    """LimitExceeded unless a booking starting on `start_day` (the site's date), lasting
    `minutes`, by a member who already holds `held` bookings, keeps to `limits`.

    >>> check(BookingLimits(days_ahead=7), today=date(2026, 12, 1),
    ...       start_day=date(2026, 12, 8), minutes=60, held=0)
    >>> try:
    ...     check(BookingLimits(at_once=2), today=date(2026, 12, 1),
    ...           start_day=date(2026, 12, 1), minutes=60, held=2)
    ... except LimitExceeded as refused:
    ...     print(refused.kind, refused.limit)
    at_once 2
    """
    if limits.days_ahead is not None and (start_day - today).days > limits.days_ahead:
        raise LimitExceeded("days_ahead", limits.days_ahead,
                            f"bookings open {limits.days_ahead} days ahead at this site: "
                            "pick an earlier day")  # fmt: skip
    if limits.max_minutes is not None and minutes > limits.max_minutes:
        raise LimitExceeded("max_minutes", limits.max_minutes,
                            f"a booking may last {limits.max_minutes} minutes at most at this "
                            "site: book a shorter time")  # fmt: skip
    if limits.at_once is not None and held >= limits.at_once:
        raise LimitExceeded("at_once", limits.at_once,
                            f"a member may hold {limits.at_once} bookings at once at this "
                            "site: cancel one first")  # fmt: skip


def _of(row: BookingLimitRow | None) -> BookingLimits:
    if row is None:
        return BookingLimits()
    return BookingLimits(row.days_ahead, row.max_minutes, row.at_once)


def limits_for(session: Session, site_id: int, member_id: int, at: datetime) -> BookingLimits:
    """The rule for `member_id` at `site_id` for a booking starting `at`: the plan's of
    their membership then (the lowest plan id if several cover the site), else the
    site's."""
    rows = {row.plan_id: row for row in session.scalars(
        select(BookingLimitRow).where(BookingLimitRow.site_id == site_id))}  # fmt: skip
    if not rows:
        return BookingLimits()
    plans = session.scalars(
        select(MembershipRow.plan_id)
        .join(plan_sites, plan_sites.c.plan_id == MembershipRow.plan_id)
        .where(MembershipRow.member_id == member_id, plan_sites.c.site_id == site_id,
               MembershipRow.starts_at <= at,
               (MembershipRow.ends_at.is_(None)) | (MembershipRow.ends_at > at))
        .order_by(MembershipRow.plan_id)
    ).all()  # fmt: skip
    for plan in plans:
        if plan in rows:
            return _of(rows[plan])
    return _of(rows.get(None))


def held_bookings(session: Session, site_id: int, member_id: int, now: datetime) -> int:
    """How many bookings `member_id` holds at `site_id`: booked and not yet ended."""
    count = session.scalar(
        select(func.count()).select_from(BookingRow).where(
            BookingRow.site_id == site_id, BookingRow.member_id == member_id,
            BookingRow.status == BookingStatus.BOOKED, BookingRow.ends_at > now)
    )  # fmt: skip
    return int(count or 0)


class MembershipRequired(Invalid):
    """The member has no plan at the site over the booking, nor a day pass for its day."""


def has_plan_at(session: Session, member_id: int, site_id: int, starts_at: datetime,
                ends_at: datetime) -> bool:  # fmt: skip
    """Whether a membership of `member_id` whose plan includes the site overlaps
    [starts_at, ends_at)."""
    plan = session.scalar(
        select(MembershipRow.id)
        .join(plan_sites, plan_sites.c.plan_id == MembershipRow.plan_id)
        .where(MembershipRow.member_id == member_id, plan_sites.c.site_id == site_id,
               MembershipRow.starts_at < ends_at,
               (MembershipRow.ends_at.is_(None)) | (MembershipRow.ends_at > starts_at))
        .limit(1)
    )  # fmt: skip
    return plan is not None


def may_book_at(session: Session, site_id: int, member_id: int, starts_at: datetime,
                ends_at: datetime) -> bool:  # fmt: skip
    """Whether `member_id` has a membership whose plan includes the site over part of
    [starts_at, ends_at), or a day pass there for the site's day of `starts_at`."""
    if has_plan_at(session, member_id, site_id, starts_at, ends_at):
        return True
    day = starts_at.astimezone(ZoneInfo(get(session, SiteRow, site_id).timezone)).date()
    passed = session.scalar(
        select(DayPassRow.id).where(DayPassRow.member_id == member_id,
                                    DayPassRow.site_id == site_id, DayPassRow.day == day)
    )  # fmt: skip
    return passed is not None


def check_booking(session: Session, *, site_id: int, member_id: int, starts_at: datetime,
                  ends_at: datetime, now: datetime) -> None:  # fmt: skip
    """MembershipRequired unless the member may book at the site then; LimitExceeded if
    the booking breaks their rule there."""
    if not may_book_at(session, site_id, member_id, starts_at, ends_at):
        raise MembershipRequired(f"member {member_id} has no plan at site {site_id} over that "
                                 "time, nor a day pass: give them one first")  # fmt: skip
    limits = limits_for(session, site_id, member_id, starts_at)
    if limits.none:
        return
    zone = ZoneInfo(get(session, SiteRow, site_id).timezone)
    minutes = int((ends_at - starts_at).total_seconds() // 60)
    held = held_bookings(session, site_id, member_id, now) if limits.at_once else 0
    check(limits, today=now.astimezone(zone).date(), start_day=starts_at.astimezone(zone).date(),
          minutes=minutes, held=held)  # fmt: skip


def list_limits(session: Session, site_id: int) -> list[BookingLimitRow]:
    """The site's rule first, then each plan's."""
    get(session, SiteRow, site_id)
    rows = session.scalars(select(BookingLimitRow).where(BookingLimitRow.site_id == site_id))
    return sorted(rows, key=lambda r: (r.plan_id is not None, r.plan_id or 0))


def _bounded(value: int | None, low: int, high: int, what: str) -> int | None:
    if value is not None and not low <= value <= high:
        raise Invalid(f"{what} must be between {low} and {high}, not {value}")
    return value


def set_limits(session: Session, site_id: int, *, plan_id: int | None, days_ahead: int | None,
               max_minutes: int | None, at_once: int | None) -> BookingLimitRow | None:  # fmt: skip
    """Set the site's rule (`plan_id` None) or a plan's; all None removes it (None back)."""
    site = get(session, SiteRow, site_id)
    if plan_id is not None:
        plan = get(session, PlanRow, plan_id)
        if site not in plan.sites:
            raise Invalid(f"plan {plan_id} does not include site {site_id}")
    limits = BookingLimits(
        _bounded(days_ahead, 0, MAX_DAYS_AHEAD, "days ahead"),
        _bounded(max_minutes, 1, MAX_MINUTES, "the longest booking (minutes)"),
        _bounded(at_once, 1, MAX_AT_ONCE, "bookings at once"),
    )
    same_plan = (BookingLimitRow.plan_id.is_(None) if plan_id is None
                 else BookingLimitRow.plan_id == plan_id)  # fmt: skip
    row = session.scalars(
        select(BookingLimitRow).where(BookingLimitRow.site_id == site_id, same_plan)
    ).one_or_none()
    if limits.none:
        if row is not None:
            session.delete(row)
            session.flush()
        return None
    if row is None:
        row = BookingLimitRow(site_id=site_id, plan_id=plan_id)
        session.add(row)
    row.days_ahead, row.max_minutes, row.at_once = (
        limits.days_ahead, limits.max_minutes, limits.at_once)  # fmt: skip
    session.flush()
    return row
