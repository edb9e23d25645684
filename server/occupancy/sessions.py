"""Desk sessions, door visits and bookings against reality: pure functions over stored events.

The SQL shell loads a desk's (or a site's) stored events, calls these functions and
writes what comes back. Nothing here reads a clock, a database or the network: `now` is
always a parameter, instants are timezone-aware and what comes back is in UTC.
Intervals are half-open, `[start, end)`.

    >>> from datetime import UTC, datetime, timedelta
    >>> desk = ("lyon", "pi-1", "desk-1")
    >>> at = lambda h, m=0: datetime(2026, 11, 23, h, m, tzinfo=UTC)
    >>> events = [
    ...     DeskEvent(desk, 1, at(9), EventKind.OCCUPIED),
    ...     DeskEvent(desk, 2, at(9, 5), EventKind.HEARTBEAT_OCCUPIED),
    ...     DeskEvent(desk, 3, at(9, 7), EventKind.VACANT),
    ... ]
    >>> [(s.start.time(), s.end and s.end.time()) for s in derive_desk_sessions(
    ...     events, now=at(12), stale_after=timedelta(minutes=15), stuck_after=timedelta(hours=12))]
    [(datetime.time(9, 0), datetime.time(9, 7))]

## Events

`DeskEvent` is this module's own value type: a desk key `(site, agent, desk)`, the
agent's `seq`, the event time `ts` and a kind (`occupied`, `vacant`,
`heartbeat-occupied`, `heartbeat-vacant`, `badge` with its token). The shell builds them
from stored rows, or from contract payloads with `DeskEvent.from_presence` and
`DeskEvent.from_badge`, so the rules never depend on pydantic models.

Events are deduplicated on `(site, agent, seq)` (the contract's `(agent, seq)`; agent
ids are unique within a site), then ordered by event time, ties by seq. Two *different*
events under one key break the contract; the smallest by `(ts, desk, kind, token)` is
kept, so the outcome still depends only on the set of events. Every result therefore
depends only on the **set** of events: duplicates and arrival order never change it.

## Desk sessions (`derive_desk_sessions`)

- `occupied` (or `heartbeat-occupied`, when the change itself is missing) on a free desk
  opens a session at its time. Every further occupied event or heartbeat is *evidence*
  that keeps it alive.
- `vacant` closes the open session at the vacant event's time (`closed_by="vacant"`).
  A `heartbeat-vacant` with a session open means the change was never recorded: the
  session closes at its last evidence (`closed_by="quiet"`), not at the heartbeat.
- **Quiet sensor.** Agents repeat the state every `heartbeat_s`, so evidence arrives at
  least that often while a desk is occupied. When more than `stale_after` (2 to 3
  heartbeats) passes without evidence, the sensor (or its agent) went quiet: the session
  is closed **at its last evidence** (`closed_by="quiet"`), so silence is never billed.
  This applies in the middle of the events too (a gap longer than `stale_after` before
  the next event splits the session there) and at the end: a session whose last evidence
  is within `stale_after` of `now` stays open (`end=None`, `closed_by="open"`).
  A quiet session may be zero-length (one occupied event, then nothing): it is still
  presence (for no-shows) and bills nothing.
- **Stuck sensor.** A session longer than `stuck_after` (an open one measured to `now`)
  is `suspect=True` with `reason="stuck_occupied"`: billing holds it for review.

## Attribution (`attribute`)

In order, the first that applies:

1. **badge**: a `badge` event at the session's desk whose token maps to a member, at a
   time in `[start - badge_window, end]` (no upper bound while the session is open);
   the earliest such badge wins.
2. **booking**: a booking of the desk overlapping the session (an open one up to
   `now`); the largest overlap wins, ties to the earlier booking, then the smaller id.
   A zero-length session counts bookings that contain its instant.
3. **none**: anonymous.

## Door visits (`derive_visits`)

Per member per site, from door taps in time order (ties by agent, seq):

- an **allowed entry** tap starts a visit; another entry within `merge_within` of the
  visit's latest entry is the same visit (a re-tap, a second door);
- an **exit** tap closes the open visit at its time (`closed_by="exit"`), allowed or not:
  the exit button and the handle let people out whatever the reader said. An exit with
  no open visit is ignored; so are refused entries.
- a visit with no exit ends, with `horizon = min(next entry, start + max_visit)`:
  1. at the end of the member's last attributed desk session at that site that starts
     within `[start, horizon)`, capped at the horizon (`closed_by="desk_session"`); an
     open desk session keeps the visit open;
  2. else at the next entry, if it comes within `max_visit` (`closed_by="next_entry"`);
  3. else at `start + max_visit` (`closed_by="max_visit"`) once `now` is past it, and
     open (`end=None`) before.

## Bookings meet reality

A booking is a `BookingSpan` of one desk (zone bookings and cancelled ones are left out
by the shell). Presence is any desk session at the booked desk, whoever sat there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Literal, TypeAlias
from zoneinfo import ZoneInfo

from ruche.broker.payloads import DeskBadge, Presence, PresenceState
from ruche.server.access.rules import Direction
from ruche.server.registry.schedule import Interval, local_day

__all__ = [
    "AttributedSession",
    "BookingSpan",
    "DeskEvent",
    "DeskKey",
    "DeskSession",
    "Direction",
    "DoorTap",
    "EventKind",
    "Interval",
    "Visit",
    "attribute",
    "booked_unused",
    "clip_to_local_days",
    "derive_desk_sessions",
    "derive_visits",
    "merge_intervals",
    "no_shows",
    "used_unbooked",
]

DeskKey: TypeAlias = tuple[str, str, str]
"""A desk as the wire names it: `(site, agent, desk)`."""

MemberId: TypeAlias = int
SessionClose: TypeAlias = Literal["vacant", "quiet", "open"]
VisitClose: TypeAlias = Literal["exit", "desk_session", "next_entry", "max_visit", "open"]
AttributedBy: TypeAlias = Literal["badge", "booking", "none"]

STUCK_OCCUPIED = "stuck_occupied"
_ZERO = timedelta(0)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), not {value!r}")
    return value.astimezone(UTC)


def _positive(value: timedelta, name: str) -> None:
    if value <= _ZERO:
        raise ValueError(f"{name} must be a positive duration, not {value}")


# --- values ------------------------------------------------------------------------------


class EventKind(StrEnum):
    """What a desk event says."""

    OCCUPIED = "occupied"
    VACANT = "vacant"
    HEARTBEAT_OCCUPIED = "heartbeat-occupied"
    HEARTBEAT_VACANT = "heartbeat-vacant"
    BADGE = "badge"


_OCCUPIED_KINDS = frozenset({EventKind.OCCUPIED, EventKind.HEARTBEAT_OCCUPIED})


@dataclass(frozen=True, slots=True)
class DeskEvent:
    """One stored agent event about a desk: a presence change, a heartbeat or a badge."""

    desk: DeskKey
    seq: int
    ts: datetime
    """The agent's event time; stored in UTC."""
    kind: EventKind
    token: str | None = None
    """The badge token, for `badge` events only."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", _utc(self.ts, "ts"))
        if (self.kind is EventKind.BADGE) != (self.token is not None):
            raise ValueError("a badge event carries a token, and only a badge event does")

    @property
    def event_id(self) -> tuple[str, str, int]:
        """What the server dedupes on: `(site, agent, seq)`."""
        return (self.desk[0], self.desk[1], self.seq)

    @classmethod
    def from_presence(cls, site: str, agent: str, desk: str, payload: Presence) -> DeskEvent:
        """A contract `Presence` (change or heartbeat) as a desk event."""
        occupied = payload.state is PresenceState.OCCUPIED
        if payload.heartbeat:
            kind = EventKind.HEARTBEAT_OCCUPIED if occupied else EventKind.HEARTBEAT_VACANT
        else:
            kind = EventKind.OCCUPIED if occupied else EventKind.VACANT
        return cls((site, agent, desk), payload.seq, payload.ts, kind)

    @classmethod
    def from_badge(cls, site: str, agent: str, desk: str, payload: DeskBadge) -> DeskEvent:
        """A contract `DeskBadge` check-in as a desk event."""
        return cls((site, agent, desk), payload.seq, payload.ts, EventKind.BADGE, payload.token)


def _event_order(event: DeskEvent) -> tuple[datetime, int, DeskKey, str, str]:
    return (event.ts, event.seq, event.desk, event.kind.value, event.token or "")


def _dedupe(events: Iterable[DeskEvent]) -> list[DeskEvent]:
    """One event per `(site, agent, seq)`, the smallest if they conflict; in time order."""
    kept: dict[tuple[str, str, int], DeskEvent] = {}
    for event in events:
        other = kept.get(event.event_id)
        if other is None or _event_order(event) < _event_order(other):
            kept[event.event_id] = event
    return sorted(kept.values(), key=_event_order)


@dataclass(frozen=True, slots=True)
class DeskSession:
    """An occupied interval of one desk, `[start, end)`; `end` is None while it is open."""

    desk: DeskKey
    start: datetime
    end: datetime | None
    opened_seq: int
    """The seq of the event that opened it: with `desk`, a stable key for invoice lines."""
    closed_by: SessionClose
    suspect: bool = False
    reason: str | None = None
    """Why it is suspect (`stuck_occupied`), else None."""

    def until(self, now: datetime) -> datetime:
        """The end, or `now` while open (never before the start)."""
        return self.end if self.end is not None else max(self.start, _utc(now, "now"))

    def duration(self, now: datetime) -> timedelta:
        return self.until(now) - self.start


@dataclass(frozen=True, slots=True)
class BookingSpan:
    """A desk booking as the rules see it: `[start, end)` of one desk for one member."""

    id: int
    desk: DeskKey
    member: MemberId
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "start"))
        object.__setattr__(self, "end", _utc(self.end, "end"))
        if self.end <= self.start:
            raise ValueError(f"booking {self.id} ends before it starts")


@dataclass(frozen=True, slots=True)
class AttributedSession:
    """A desk session and whom it belongs to, with the evidence."""

    session: DeskSession
    member: MemberId | None
    attributed_by: AttributedBy
    badge_seq: int | None = None
    """The seq of the badge event, when `attributed_by == "badge"`."""
    booking_id: int | None = None
    """The booking, when `attributed_by == "booking"`."""


@dataclass(frozen=True, slots=True)
class DoorTap:
    """A badge tap at a door reader, resolved by the shell to a member and a direction."""

    site: str
    agent: str
    seq: int
    ts: datetime
    member: MemberId
    direction: Direction
    allowed: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", _utc(self.ts, "ts"))


@dataclass(frozen=True, slots=True)
class Visit:
    """A member's stay at a site, `[start, end)`; `end` is None while it is open."""

    site: str
    member: MemberId
    start: datetime
    end: datetime | None
    closed_by: VisitClose
    entry_seqs: tuple[tuple[str, int], ...] = field(default=())
    """The `(agent, seq)` of the entry taps merged into it."""


# --- desk sessions -----------------------------------------------------------------------


def derive_desk_sessions(
    events: Iterable[DeskEvent],
    *,
    now: datetime,
    stale_after: timedelta,
    stuck_after: timedelta,
) -> list[DeskSession]:
    """Occupied intervals per desk, by the rules in the module docstring, ordered by start.

    Badge events are accepted and ignored (they matter to `attribute`).
    """
    now = _utc(now, "now")
    _positive(stale_after, "stale_after")
    _positive(stuck_after, "stuck_after")
    by_desk: dict[DeskKey, list[DeskEvent]] = defaultdict(list)
    for event in _dedupe(events):
        if event.kind is not EventKind.BADGE:
            by_desk[event.desk].append(event)
    sessions: list[DeskSession] = []
    for desk, desk_events in by_desk.items():
        sessions.extend(_desk_sessions(desk, desk_events, now, stale_after, stuck_after))
    sessions.sort(key=lambda s: (s.start, s.opened_seq, s.desk))
    return sessions


def _desk_sessions(
    desk: DeskKey,
    events: list[DeskEvent],
    now: datetime,
    stale_after: timedelta,
    stuck_after: timedelta,
) -> list[DeskSession]:
    """The sessions of one desk from its events in time order."""
    out: list[DeskSession] = []
    opener: DeskEvent | None = None
    evidence: datetime | None = None

    def close(end: datetime | None, how: SessionClose) -> None:
        assert opener is not None  # noqa: S101 - only called with a session open
        length = (end if end is not None else max(now, opener.ts)) - opener.ts
        stuck = length > stuck_after
        out.append(
            DeskSession(
                desk=desk,
                start=opener.ts,
                end=end,
                opened_seq=opener.seq,
                closed_by=how,
                suspect=stuck,
                reason=STUCK_OCCUPIED if stuck else None,
            )
        )

    for event in events:
        if opener is not None and evidence is not None and event.ts - evidence > stale_after:
            close(evidence, "quiet")
            opener = evidence = None
        if event.kind in _OCCUPIED_KINDS:
            if opener is None:
                opener = event
            evidence = event.ts
        elif opener is not None and evidence is not None:
            if event.kind is EventKind.VACANT:
                close(event.ts, "vacant")
            else:  # a heartbeat says vacant but the change is missing
                close(evidence, "quiet")
            opener = evidence = None
    if opener is not None and evidence is not None:
        if now - evidence > stale_after:
            close(evidence, "quiet")
        else:
            close(None, "open")
    return out


# --- attribution -------------------------------------------------------------------------


def attribute(
    sessions: Iterable[DeskSession],
    badges: Iterable[DeskEvent],
    bookings: Iterable[BookingSpan],
    *,
    members: Mapping[str, MemberId],
    now: datetime,
    badge_window: timedelta = timedelta(minutes=10),
) -> list[AttributedSession]:
    """Each session with its member: by badge, else by booking, else anonymous.

    `members` maps badge tokens to member ids (unknown tokens are skipped); `badges` may
    hold any desk events, only `badge` ones count. Sessions come back in their order.
    """
    now = _utc(now, "now")
    if badge_window < _ZERO:
        raise ValueError(f"badge_window must not be negative, not {badge_window}")
    badges_at: dict[DeskKey, list[DeskEvent]] = defaultdict(list)
    for event in _dedupe(badges):
        if event.kind is EventKind.BADGE and event.token in members:
            badges_at[event.desk].append(event)
    bookings_at: dict[DeskKey, list[BookingSpan]] = defaultdict(list)
    for booking in bookings:
        bookings_at[booking.desk].append(booking)

    out: list[AttributedSession] = []
    for session in sessions:
        badge = _badge_for(session, badges_at.get(session.desk, []), badge_window)
        if badge is not None and badge.token is not None:
            out.append(
                AttributedSession(session, members[badge.token], "badge", badge_seq=badge.seq)
            )
            continue
        booked = _booking_for(session, bookings_at.get(session.desk, []), now)
        if booked is not None:
            out.append(AttributedSession(session, booked.member, "booking", booking_id=booked.id))
            continue
        out.append(AttributedSession(session, None, "none"))
    return out


def _badge_for(
    session: DeskSession, badges: list[DeskEvent], window: timedelta
) -> DeskEvent | None:
    """The earliest badge (badges are in time order) in `[start - window, end]`."""
    lo = session.start - window
    for badge in badges:
        if badge.ts >= lo and (session.end is None or badge.ts <= session.end):
            return badge
    return None


def _booking_for(
    session: DeskSession, bookings: list[BookingSpan], now: datetime
) -> BookingSpan | None:
    start, end = session.start, session.until(now)
    best: tuple[timedelta, datetime, int] | None = None
    chosen: BookingSpan | None = None
    for booking in bookings:
        if start == end:
            if not booking.start <= start < booking.end:
                continue
        elif not (booking.start < end and start < booking.end):
            continue
        overlap = min(end, booking.end) - max(start, booking.start)
        # Largest overlap first, then the earlier booking, then the smaller id.
        key = (-overlap, booking.start, booking.id)
        if best is None or key < best:
            best, chosen = key, booking
    return chosen


# --- door visits -------------------------------------------------------------------------


def derive_visits(
    taps: Iterable[DoorTap],
    *,
    max_visit: timedelta,
    now: datetime,
    merge_within: timedelta = timedelta(minutes=5),
    sessions: Iterable[AttributedSession] = (),
) -> list[Visit]:
    """Member visits per site from door taps, by the rules in the module docstring.

    `sessions` are the attributed desk sessions used to end a visit with no exit tap.
    Visits come back ordered by start, then site and member.
    """
    now = _utc(now, "now")
    _positive(max_visit, "max_visit")
    if merge_within < _ZERO:
        raise ValueError(f"merge_within must not be negative, not {merge_within}")
    unique: dict[tuple[str, str, int], DoorTap] = {}
    for tap in taps:
        key = (tap.site, tap.agent, tap.seq)
        other = unique.get(key)
        if other is None or _tap_order(tap) < _tap_order(other):
            unique[key] = tap
    by_member: dict[tuple[str, MemberId], list[DoorTap]] = defaultdict(list)
    for tap in sorted(unique.values(), key=_tap_order):
        by_member[(tap.site, tap.member)].append(tap)
    desk_time: dict[tuple[str, MemberId], list[DeskSession]] = defaultdict(list)
    for attributed in sessions:
        if attributed.member is not None:
            site = attributed.session.desk[0]
            desk_time[(site, attributed.member)].append(attributed.session)

    visits: list[Visit] = []
    for (site, member), member_taps in by_member.items():
        visits.extend(
            _member_visits(
                site,
                member,
                member_taps,
                desk_time.get((site, member), []),
                max_visit=max_visit,
                merge_within=merge_within,
                now=now,
            )
        )
    visits.sort(key=lambda v: (v.start, v.site, v.member))
    return visits


def _tap_order(tap: DoorTap) -> tuple[datetime, str, int, str, int, str, bool]:
    return (tap.ts, tap.agent, tap.seq, tap.site, tap.member, tap.direction.value, tap.allowed)


def _member_visits(
    site: str,
    member: MemberId,
    taps: list[DoorTap],
    desk_sessions: list[DeskSession],
    *,
    max_visit: timedelta,
    merge_within: timedelta,
    now: datetime,
) -> list[Visit]:
    out: list[Visit] = []
    start: datetime | None = None
    last_entry: datetime | None = None
    entries: list[tuple[str, int]] = []

    for tap in taps:
        if tap.direction is Direction.OUT:
            if start is not None:
                out.append(Visit(site, member, start, tap.ts, "exit", tuple(entries)))
                start = last_entry = None
                entries = []
            continue
        if not tap.allowed:
            continue
        if start is not None and last_entry is not None:
            if tap.ts - last_entry <= merge_within:
                last_entry = tap.ts
                entries.append((tap.agent, tap.seq))
                continue
            out.append(
                _unexited(
                    site,
                    member,
                    start,
                    tuple(entries),
                    next_entry=tap.ts,
                    desk_sessions=desk_sessions,
                    max_visit=max_visit,
                    now=now,
                )
            )
        start = last_entry = tap.ts
        entries = [(tap.agent, tap.seq)]
    if start is not None:
        out.append(
            _unexited(
                site,
                member,
                start,
                tuple(entries),
                next_entry=None,
                desk_sessions=desk_sessions,
                max_visit=max_visit,
                now=now,
            )
        )
    return out


def _unexited(
    site: str,
    member: MemberId,
    start: datetime,
    entries: tuple[tuple[str, int], ...],
    *,
    next_entry: datetime | None,
    desk_sessions: list[DeskSession],
    max_visit: timedelta,
    now: datetime,
) -> Visit:
    """A visit with no exit tap, ended by desk evidence, the next entry or `max_visit`."""
    cap = start + max_visit
    horizon = cap if next_entry is None else min(next_entry, cap)
    inside = [s for s in desk_sessions if start <= s.start < horizon]
    if inside:
        last = max(inside, key=lambda s: (s.start, s.end is None, s.end or s.start))
        if last.end is None:
            if now < horizon:
                return Visit(site, member, start, None, "open", entries)
            return Visit(site, member, start, horizon, "desk_session", entries)
        end = max(min(last.end, horizon), start)
        return Visit(site, member, start, end, "desk_session", entries)
    if next_entry is not None and next_entry <= cap:
        return Visit(site, member, start, next_entry, "next_entry", entries)
    if now < cap:
        return Visit(site, member, start, None, "open", entries)
    return Visit(site, member, start, cap, "max_visit", entries)


# --- interval helpers --------------------------------------------------------------------


def merge_intervals(intervals: Iterable[Interval], *, join_gap: timedelta) -> list[Interval]:
    """The union of `intervals` in UTC, joining gaps shorter than `join_gap`.

    Sorted and disjoint; empty intervals (`end <= start`) are dropped; touching ones join.
    """
    if join_gap < _ZERO:
        raise ValueError(f"join_gap must not be negative, not {join_gap}")
    spans = sorted(
        (_utc(s, "start"), _utc(e, "end"))
        for s, e in intervals
        if _utc(e, "end") > _utc(s, "start")
    )
    merged: list[Interval] = []
    for s, e in spans:
        if merged and (s <= merged[-1][1] or s - merged[-1][1] < join_gap):
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def clip_to_local_days(interval: Interval, tz: ZoneInfo) -> list[tuple[date, datetime, datetime]]:
    """`interval` cut at the local midnights of `tz`: `(local date, start, end)` pieces in UTC.

    A local day runs from one local midnight to the next, so a DST day holds 23 or 25
    hours. The pieces are in order, non-empty, and their lengths sum to the interval's.
    """
    start, end = _utc(interval[0], "start"), _utc(interval[1], "end")
    pieces: list[tuple[date, datetime, datetime]] = []
    if end <= start:
        return pieces
    day = start.astimezone(tz).date()
    while True:
        day_start, day_end = local_day(day, tz)
        lo, hi = max(start, day_start), min(end, day_end)
        if lo < hi:
            pieces.append((day, lo, hi))
        if day_end >= end:
            return pieces
        day += timedelta(days=1)


# --- bookings meet reality ---------------------------------------------------------------


def _present(session: DeskSession, start: datetime, end: datetime, now: datetime) -> bool:
    """Whether the session touches the closed range `[start, end]`."""
    return session.start <= end and session.until(now) >= start


def no_shows(
    bookings: Iterable[BookingSpan],
    sessions: Iterable[DeskSession],
    *,
    grace_minutes: int,
    now: datetime,
) -> list[int]:
    """Ids of bookings with no presence at their desk from their start to start + grace.

    Presence is any session at the desk touching `[start, deadline]`, where the deadline
    is `start + grace_minutes` (or the booking's end, if sooner). A booking whose deadline
    is still ahead of `now` is not judged yet. Ids come back sorted.
    """
    now = _utc(now, "now")
    if grace_minutes < 0:
        raise ValueError(f"grace_minutes must not be negative, not {grace_minutes}")
    at = _sessions_by_desk(sessions)
    out: list[int] = []
    for booking in bookings:
        deadline = min(booking.start + timedelta(minutes=grace_minutes), booking.end)
        if deadline > now:
            continue
        if not any(_present(s, booking.start, deadline, now) for s in at.get(booking.desk, [])):
            out.append(booking.id)
    return sorted(set(out))


def reclaims(
    released: Iterable[BookingSpan],
    held: Iterable[BookingSpan],
    sessions: Iterable[AttributedSession],
    *,
    now: datetime,
) -> list[int]:
    """Ids of no-show bookings whose member came after all: their desk is occupied again
    before the booking ends, by them or by someone the rules cannot name, and no other
    booking holds the desk over the rest of it. The booking is then theirs again, so a
    late arrival costs the member nothing but the minutes they were late.

    A session the rules attribute to someone else (their badge at the desk) is not the
    member coming back: the desk was taken, as a no-show release allows. Ids come back
    sorted.
    """
    now = _utc(now, "now")
    others = list(held)
    at: dict[DeskKey, list[AttributedSession]] = defaultdict(list)
    for attributed in sessions:
        at[attributed.session.desk].append(attributed)
    out: list[int] = []
    for booking in released:
        if booking.end <= now:
            continue
        back = [
            a.session.start
            for a in at.get(booking.desk, [])
            if a.member in (None, booking.member)
            and _present(a.session, booking.start, min(booking.end, now), now)
        ]
        if not back:
            continue
        since = max(booking.start, min(back))
        taken = any(
            o.desk == booking.desk and o.id != booking.id and o.start < booking.end
            and o.end > since
            for o in others
        )  # fmt: skip
        if not taken:
            out.append(booking.id)
    return sorted(set(out))


def booked_unused(
    bookings: Iterable[BookingSpan], sessions: Iterable[DeskSession], *, now: datetime
) -> list[int]:
    """Ids of bookings that have started and whose desk saw no occupied time inside them.

    A zero-length session (a single occupied event) inside the booking counts as use.
    """
    now = _utc(now, "now")
    at = _sessions_by_desk(sessions)
    out: list[int] = []
    for booking in bookings:
        if booking.start > now:
            continue
        used = any(
            (s.start < booking.end and s.until(now) > booking.start)
            or booking.start <= s.start < booking.end
            for s in at.get(booking.desk, [])
        )
        if not used:
            out.append(booking.id)
    return sorted(set(out))


def used_unbooked(
    sessions: Iterable[DeskSession], bookings: Iterable[BookingSpan], *, now: datetime
) -> list[DeskSession]:
    """The sessions that no booking of their desk overlaps (an open one up to `now`)."""
    now = _utc(now, "now")
    bookings_at: dict[DeskKey, list[BookingSpan]] = defaultdict(list)
    for booking in bookings:
        bookings_at[booking.desk].append(booking)
    return [s for s in sessions if _booking_for(s, bookings_at.get(s.desk, []), now) is None]


def _sessions_by_desk(sessions: Iterable[DeskSession]) -> dict[DeskKey, list[DeskSession]]:
    at: dict[DeskKey, list[DeskSession]] = defaultdict(list)
    for session in sessions:
        at[session.desk].append(session)
    return at
