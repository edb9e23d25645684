"""Door decisions: who may open which door, when, and why not; a pure function over values.

The shell loads the facts (badge, member, plan, door, site, bookings, day passes,
anti-passback state) and the time, and `decide_access` answers with a `Decision`: no
SQL, no MQTT, no clock. `allowlist_windows` gives the same answer ahead of time, as the
intervals an agent's cached allow-list holds for one badge.

    >>> from datetime import UTC, datetime
    >>> from zoneinfo import ZoneInfo
    >>> site = Site("paris-11", ZoneInfo("Europe/Paris"))
    >>> door = Door("front", site_id="paris-11")
    >>> plan = Plan("resident", sites=frozenset({"paris-11"}), schedule=Schedule.always())
    >>> member = Member("m1", start=datetime(2026, 1, 1, tzinfo=UTC))
    >>> holder = MemberFacts(Badge("ab" * 32), member, plan)
    >>> now = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    >>> decide_access(AccessRequest("ab" * 32, "front"), AccessFacts(site, door, holder), now)
    Decision(reason=<DecisionReason.SCHEDULE: 'schedule'>)

The rules. An entry is allowed when the badge is active, the member
is active and their membership covers now, the door's site is one of the plan's sites,
and now is inside the plan's schedule (site timezone and holidays), or inside one of the
member's bookings at that site widened by its grace minutes, or on the local date of a
day pass for that site. The plan says *where*; the schedule, a booking or a day pass
says *when*: a booking or a day pass at a site outside the plan opens nothing.

Checks run in this order, and the first that fails gives the reason:

1. `unknown_badge`: no enrolled badge has the token.
2. `badge_revoked`, `badge_disabled`: the badge is not active. The credential comes
   first so that a revoked badge is recorded as such whatever else is true.
3. `door_locked_down`: the door, or its whole site, is locked down; no badge opens it.
4. For an exit (a tap on the door's `out` reader), only anti-passback is checked next:
   a member is never kept inside because their membership ended or the schedule closed
   while they were in. Allowed with reason `exit`.
5. `member_inactive`: the member is disabled, or now is before their membership starts
   or at or after it ends.
6. `wrong_site`: the door's site is not one of the plan's sites.
7. When: `schedule`, else `booking`, else `day_pass`, the first that covers now. The
   standing right is named before the specific ones, and a day pass last because it is
   the one that may cost the member something. If none covers now: `outside_schedule`
   when the plan has a schedule (the member came outside its hours and had no booking
   or pass for now), `no_booking` when the plan has none (booking-only: bookings and day
   passes are the only way in).
8. `anti_passback`: the door enforces it and the member's last recorded direction in
   its area is the direction of this tap (in after in, out after out). Last, because it
   is about the sequence of taps, not the member's rights: a tap refused for a right is
   refused for that right. An unknown last direction lets the tap through; the shell
   clears the state (to None) when it resets anti-passback, say at local midnight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from ruche.server.registry.schedule import (
    Interval,
    Schedule,
    is_open,
    local_day,
    merge_intervals,
    open_intervals,
)
from ruche.server.storage.enums import BadgeStatus

__all__ = [
    "ALLOW_REASONS",
    "AccessFacts",
    "AccessRequest",
    "Badge",
    "BadgeStatus",
    "Booking",
    "DayPass",
    "Decision",
    "DecisionReason",
    "Direction",
    "Door",
    "Member",
    "MemberFacts",
    "Plan",
    "Site",
    "allowlist_windows",
    "decide_access",
]


class DecisionReason(StrEnum):
    """Why a tap was allowed or denied; the value is the wire reason code (`Deny.reason`)."""

    # allowed
    SCHEDULE = "schedule"
    BOOKING = "booking"
    DAY_PASS = "day_pass"  # noqa: S105 (a reason code: ruff reads "pass" as a password)
    EXIT = "exit"
    # denied, in the order the checks run
    UNKNOWN_BADGE = "unknown_badge"
    BADGE_REVOKED = "badge_revoked"
    BADGE_DISABLED = "badge_disabled"
    DOOR_LOCKED_DOWN = "door_locked_down"
    MEMBER_INACTIVE = "member_inactive"
    WRONG_SITE = "wrong_site"
    OUTSIDE_SCHEDULE = "outside_schedule"
    NO_BOOKING = "no_booking"
    ANTI_PASSBACK = "anti_passback"


ALLOW_REASONS = frozenset(
    {DecisionReason.SCHEDULE, DecisionReason.BOOKING, DecisionReason.DAY_PASS, DecisionReason.EXIT}
)


class Direction(StrEnum):
    """Which way a tap goes through a door: the reader it was made on."""

    IN = "in"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class Badge:
    """An enrolled badge; its holder comes with it in `MemberFacts`."""

    token: str
    """HMAC of the badge UID under the site key (`ruche.broker.badge_token`), never the UID."""
    status: BadgeStatus = BadgeStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Member:
    """A member and the span of their membership: `[start, end)`, open-ended when `end` is None."""

    id: str
    start: datetime
    end: datetime | None = None
    active: bool = True

    def __post_init__(self) -> None:
        _require_aware(self.start, "membership start")
        if self.end is not None:
            _require_aware(self.end, "membership end")
            if self.end <= self.start:
                raise ValueError(f"membership of {self.id} ends before it starts")

    def covers(self, now: datetime) -> bool:
        """Whether the member is active and `now` is inside their membership."""
        return self.active and self.start <= now and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a plan's members may go (`sites`) and when (`schedule`).

    A `schedule` of None makes the plan booking-only: its members come in on a booking
    or a day pass, never on hours of their own.
    """

    id: str
    sites: frozenset[str]
    schedule: Schedule | None


@dataclass(frozen=True, slots=True)
class Site:
    """A coworking site: its timezone, its holidays, and whether it is locked down."""

    id: str
    tz: ZoneInfo
    """Where the site is: schedules, holidays and day passes are in its local time."""
    holidays: frozenset[date] = frozenset()
    """Local dates on which schedules use their `on_holidays` ranges (closed, for most)."""
    locked_down: bool = False


@dataclass(frozen=True, slots=True)
class Door:
    """A door of a site; `anti_passback` refuses in after in and out after out."""

    id: str
    site_id: str
    locked_down: bool = False
    anti_passback: bool = False
    unlock_ms: int | None = None
    """How long an allowed tap releases its strike (its wiring's); None: the server's."""


@dataclass(frozen=True, slots=True)
class Booking:
    """A member's booking at a site (a desk or a room), with grace before and after.

    It opens the site's doors from `start - grace_before` until `end + grace_after`.
    """

    site_id: str
    start: datetime
    end: datetime
    grace_before: timedelta = timedelta(0)
    grace_after: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        _require_aware(self.start, "booking start")
        _require_aware(self.end, "booking end")
        if self.end <= self.start:
            raise ValueError("a booking must end after it starts")
        if self.grace_before < timedelta(0) or self.grace_after < timedelta(0):
            raise ValueError("booking grace must be zero or more minutes")

    @property
    def window(self) -> Interval:
        """When the booking opens doors: `[start - grace_before, end + grace_after)`."""
        return (self.start - self.grace_before, self.end + self.grace_after)


@dataclass(frozen=True, slots=True)
class DayPass:
    """A pass for one local date at one site: the whole local day, 23 to 25 hours."""

    site_id: str
    day: date


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What the shell loads about the holder of a badge: everything `decide_access` asks."""

    badge: Badge
    member: Member
    plan: Plan
    bookings: tuple[Booking, ...] = ()
    """The member's bookings; those at other sites are ignored."""
    day_passes: tuple[DayPass, ...] = ()
    last_direction: Direction | None = None
    """Anti-passback state: the member's last recorded direction in the door's area."""


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A tap: which badge, at which door, which way."""

    token: str
    door_id: str
    direction: Direction = Direction.IN


@dataclass(frozen=True, slots=True)
class AccessFacts:
    """The facts for one tap: the door, its site, and the badge's holder (None: unknown badge)."""

    site: Site
    door: Door
    holder: MemberFacts | None

    def __post_init__(self) -> None:
        if self.door.site_id != self.site.id:
            raise ValueError(
                f"door {self.door.id} is at site {self.door.site_id}, not {self.site.id}"
            )


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a tap: allowed exactly when `reason` is one of `ALLOW_REASONS`."""

    reason: DecisionReason

    @property
    def allowed(self) -> bool:
        return self.reason in ALLOW_REASONS


def decide_access(request: AccessRequest, facts: AccessFacts, now: datetime) -> Decision:
    """Allow or deny `request` at `now`, with the reason; the module docstring has the rules.

    Raises ValueError when the facts are not about the request (another door, another
    badge) or `now` is naive: a bug in the shell, not a reason to deny.
    """
    _require_aware(now, "now")
    site, door, holder = facts.site, facts.door, facts.holder
    if request.door_id != door.id:
        raise ValueError(f"facts are about door {door.id}, the tap was at {request.door_id}")
    if holder is None:
        return Decision(DecisionReason.UNKNOWN_BADGE)
    if holder.badge.token != request.token:
        raise ValueError("facts are about another badge than the one tapped")
    if holder.badge.status is BadgeStatus.REVOKED:
        return Decision(DecisionReason.BADGE_REVOKED)
    if holder.badge.status is not BadgeStatus.ACTIVE:
        return Decision(DecisionReason.BADGE_DISABLED)
    if door.locked_down or site.locked_down:
        return Decision(DecisionReason.DOOR_LOCKED_DOWN)
    if request.direction is Direction.OUT:
        return _passback(door, holder, request.direction) or Decision(DecisionReason.EXIT)
    if not holder.member.covers(now):
        return Decision(DecisionReason.MEMBER_INACTIVE)
    if site.id not in holder.plan.sites:
        return Decision(DecisionReason.WRONG_SITE)
    when = _entitlement(holder, site, now)
    if when is None:
        if holder.plan.schedule is None:
            return Decision(DecisionReason.NO_BOOKING)
        return Decision(DecisionReason.OUTSIDE_SCHEDULE)
    return _passback(door, holder, request.direction) or Decision(when)


def allowlist_windows(
    holder: MemberFacts, site: Site, doors: Sequence[Door], start: datetime, end: datetime
) -> list[Interval]:
    """When `holder`'s badge opens `doors` (at `site`) for an entry in `[start, end)`, in UTC.

    The union of the plan's open schedule intervals, the bookings at the site with their
    grace and the day passes' local days, within the membership: sorted, merged, clipped
    to `[start, end)`. For any instant in that range, an entry tap at one of the doors
    that are not locked down is allowed by `decide_access` exactly when the instant is
    in one of the windows (anti-passback aside: it depends on taps yet to come). Empty
    when the badge is not active, the member is disabled, the plan does not cover the
    site, or every door is locked down.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    for door in doors:
        if door.site_id != site.id:
            raise ValueError(f"door {door.id} is at site {door.site_id}, not {site.id}")
    if (
        holder.badge.status is not BadgeStatus.ACTIVE
        or not holder.member.active
        or site.locked_down
        or site.id not in holder.plan.sites
        or all(door.locked_down for door in doors)
    ):
        return []
    member = holder.member
    lo = max(start, member.start)
    hi = end if member.end is None else min(end, member.end)
    if hi <= lo:
        return []
    windows: list[Interval] = []
    if holder.plan.schedule is not None:
        windows += open_intervals(holder.plan.schedule, site.holidays, site.tz, lo, hi)
    windows += [b.window for b in holder.bookings if b.site_id == site.id]
    windows += [local_day(p.day, site.tz) for p in holder.day_passes if p.site_id == site.id]
    return merge_intervals(windows, lo, hi)


def _entitlement(holder: MemberFacts, site: Site, now: datetime) -> DecisionReason | None:
    """What lets the member in at `site` at `now`, if anything: schedule, booking, day pass."""
    schedule = holder.plan.schedule
    if schedule is not None and is_open(schedule, site.holidays, site.tz, now):
        return DecisionReason.SCHEDULE
    for booking in holder.bookings:
        start, end = booking.window
        if booking.site_id == site.id and start <= now < end:
            return DecisionReason.BOOKING
    for day_pass in holder.day_passes:
        if day_pass.site_id == site.id:
            start, end = local_day(day_pass.day, site.tz)
            if start <= now < end:
                return DecisionReason.DAY_PASS
    return None


def _passback(door: Door, holder: MemberFacts, direction: Direction) -> Decision | None:
    if door.anti_passback and holder.last_direction is direction:
        return Decision(DecisionReason.ANTI_PASSBACK)
    return None


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), not {value!r}")
