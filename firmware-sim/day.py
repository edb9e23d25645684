"""A whole coworking day, planned: every agent event of one local day at a site, and what
the server should make of them.

Pure: no I/O and no clock. `plan_day` takes the site's layout, its members, a local date
and a seed, and returns the same `DayPlan` for the same arguments:

    >>> from datetime import date
    >>> layout = SiteLayout(
    ...     site="lab", timezone="Europe/Paris", site_key=bytes(16),
    ...     doors=(DoorSpot("agent-a", "front"),),
    ...     desks=tuple(DeskSpot("agent-a", f"desk-{i}") for i in range(3)),
    ... )
    >>> members = [Member("ada", b"\\x01"), Member("bob", b"\\x02")]
    >>> plan = plan_day(layout, members, date(2026, 11, 24), seed=7, no_shows=1, walk_ins=0)
    >>> plan == plan_day(layout, members, date(2026, 11, 24), seed=7, no_shows=1, walk_ins=0)
    True
    >>> sorted(plan.roles.values())
    ['badge', 'no_show']

## What happens in a day

Times are drawn in the site's local time (arrivals between 08:00 and 10:30, lunch from
12:00, departures from 17:00), so a 23- or 25-hour day (a DST change) is planned like any
other. Each member who is not a no-show has one desk for the day, and nobody else sits
there. In order, the roles are:

- `no_show`: a desk booking (from 09:00, 09:30 or 10:00, for eight hours) and nobody comes.
- `walk_in`: comes in, sits at an unbooked desk and never checks in: anonymous sessions.
- `booked` and `badge` (alternately, for the rest): `booked` members sit at the desk they
  booked (the booking starts 1 to 10 minutes before they sit down, so they are on time,
  and ends after they leave); `badge` members sit at an unbooked desk and check in with
  their badge (`DeskBadge`) every time they sit down.
- `refused`: a member whose badge is revoked taps twice at a door, is refused, and goes.

A stay: an entry tap at a door (its reader `{door}-reader`, as the edge names it), the
door opened and closed a few seconds later, a walk to the desk, then sittings separated
by a morning coffee, lunch (half the members go out: exit tap, entry tap) and sometimes
an afternoon coffee, and an exit tap (reader `{door}-out`, which the server reads as an
exit) when they leave. Door cycles at one door never overlap.

## Events, as the edge agent would send them

- A desk turns `occupied` `arrive_s` after someone sits down and `vacant` `leave_s`
  after they stand up (the debouncer's delays, `ruche.edge.presence`).
- Every desk repeats its state every `heartbeat_s` (`heartbeat=True`), vacant ones too,
  all day: the schedule restarts at each change, as the debouncer's does.
- Per agent, `seq` counts up from `first_seq` in time order, event times are strictly
  increasing (so no two points of an agent share a time in InfluxDB), `ts` carries the
  site's UTC offset of the moment (a fixed offset, as on the wire) with millisecond
  precision, and `mono` is seconds since the agent booted, consistent with `ts`.

## Expectations

Derived from the plan's own intentions, not from the server's rules:

- one desk session per sitting, from its `occupied` event to its `vacant` event, of the
  member who sat there, attributed `badge` (a badge member), `booking` (a booked member)
  or `none` (a walk-in); this assumes the server keeps a session alive between
  heartbeats, which is why `heartbeat_s` is at most 10 minutes;
- one visit per trip through the doors, from the entry tap to the exit tap;
- the no-show bookings released, the others kept;
- one InfluxDB point per event, counted per measurement (`points`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Literal, NamedTuple, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruche.broker import (
    Channel,
    DeskBadge,
    DoorClosed,
    DoorOpened,
    Presence,
    PresenceState,
    RawSummary,
    Tap,
    Topic,
    badge_token,
)
from ruche.broker.tokens import MIN_SITE_KEY_BYTES
from ruche.broker.topics import check_id

__all__ = [
    "MEASUREMENTS",
    "AgentTiming",
    "DayEvent",
    "DayPlan",
    "DeskSpot",
    "DoorSpot",
    "ExpectedSession",
    "ExpectedVisit",
    "Member",
    "PlannedBooking",
    "PlannedEvent",
    "PlannedTap",
    "Role",
    "SiteLayout",
    "entry_reader",
    "exit_reader",
    "plan_day",
]

Role: TypeAlias = Literal["badge", "booked", "walk_in", "no_show", "refused"]
Attribution: TypeAlias = Literal["badge", "booking", "none"]
DayEvent: TypeAlias = Presence | DeskBadge | Tap | DoorOpened | DoorClosed
"""The payloads a planned day holds."""

MEASUREMENTS: Mapping[Channel, str] = {
    Channel.PRESENCE: "presence",
    Channel.DESK_BADGE: "desk_badge",
    Channel.TAP: "door_tap",
    Channel.DOOR_EVENT: "door_event",
}
"""The InfluxDB measurement each event channel is written to (docs/occupancy.md)."""

MAX_HEARTBEAT_S = 600.0
"""The expected sessions assume the server's stale limit (15 minutes) is never reached."""

_MS = timedelta(milliseconds=1)
_DOOR_CYCLE = timedelta(seconds=13)
"""Longer than a tap and the door's cycle after it (opened, closed, a second's margin)."""
_NO_GAP = timedelta(milliseconds=50)
"""A heartbeat this close to a change is not planned: the change restarts the schedule."""


def entry_reader(door: str) -> str:
    """The reader outside a door, named as the edge agent names it."""
    return f"{door}-reader"


def exit_reader(door: str) -> str:
    """The reader inside a door: a name ending in `-out` is an exit to the server."""
    return f"{door}-out"


# --- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeskSpot:
    """A desk and the agent whose radar watches it."""

    agent: str
    desk: str


@dataclass(frozen=True, slots=True)
class DoorSpot:
    """A door and the agent that drives it (both its readers)."""

    agent: str
    door: str


@dataclass(frozen=True, slots=True)
class SiteLayout:
    """Where things are: the site, its timezone and badge key, its doors and desks."""

    site: str
    timezone: str
    site_key: bytes
    doors: tuple[DoorSpot, ...]
    desks: tuple[DeskSpot, ...]

    def __post_init__(self) -> None:
        check_id(self.site, "site")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}: use an IANA name") from exc
        if len(self.site_key) < MIN_SITE_KEY_BYTES:
            raise ValueError(f"the site key needs at least {MIN_SITE_KEY_BYTES} bytes")
        if not self.doors or not self.desks:
            raise ValueError("a day needs at least one door and one desk")
        for door in self.doors:
            check_id(door.agent, "agent")
            check_id(entry_reader(door.door), "door id (with '-reader')")
        for desk in self.desks:
            check_id(desk.agent, "agent")
            check_id(desk.desk, "desk id")
        if len({d.door for d in self.doors}) != len(self.doors):
            raise ValueError("door ids must be unique at a site")
        if len({d.desk for d in self.desks}) != len(self.desks):
            raise ValueError("desk ids must be unique at a site")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def agents(self) -> tuple[str, ...]:
        """Every agent of the layout, sorted."""
        return tuple(sorted({d.agent for d in self.doors} | {d.agent for d in self.desks}))


@dataclass(frozen=True, slots=True)
class Member:
    """Someone with a badge; `key` names them in the plan's expectations."""

    key: str
    uid: bytes
    revoked: bool = False
    """Their badge is revoked: doors refuse it, so they are `refused` for the day."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTiming:
    """How the simulated agents' desk sensors behave: the edge's `[[desks]]` settings."""

    arrive_s: float = 5.0
    leave_s: float = 60.0
    heartbeat_s: float = 300.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.arrive_s) and 0 <= self.arrive_s <= 60):
            raise ValueError(f"arrive_s must be 0 to 60 seconds, not {self.arrive_s}")
        if not (math.isfinite(self.leave_s) and 0 <= self.leave_s <= 300):
            raise ValueError(f"leave_s must be 0 to 300 seconds, not {self.leave_s}")
        if not (math.isfinite(self.heartbeat_s) and 1 <= self.heartbeat_s <= MAX_HEARTBEAT_S):
            raise ValueError(
                f"heartbeat_s must be 1 to {MAX_HEARTBEAT_S:g} seconds, not {self.heartbeat_s}: "
                "the expected sessions assume a desk speaks well within the server's stale limit"
            )


# --- outputs -----------------------------------------------------------------------------


class PlannedEvent(NamedTuple):
    """One agent event: where it is published and what it says."""

    topic: Topic
    payload: DayEvent


@dataclass(frozen=True, slots=True)
class PlannedBooking:
    """A desk booking to create before the day is played; `no_show` if nobody comes."""

    member: str
    agent: str
    desk: str
    start: datetime
    end: datetime
    no_show: bool


@dataclass(frozen=True, slots=True)
class ExpectedSession:
    """A desk session the server should derive: `[start, end)`, closed by its vacant event."""

    agent: str
    desk: str
    opened_seq: int
    start: datetime
    end: datetime
    member: str | None
    attributed_by: Attribution
    booking: int | None
    """The index of the booking in `DayPlan.bookings`, for `booking` attribution."""


@dataclass(frozen=True, slots=True)
class ExpectedVisit:
    """A member's trip through the doors, from the entry tap to the exit tap."""

    member: str
    start: datetime
    end: datetime
    entry_agent: str
    entry_seq: int


@dataclass(frozen=True, slots=True)
class PlannedTap:
    """A badge at a door reader, and whether the server should let it through."""

    agent: str
    seq: int
    door: str
    member: str
    exit: bool
    granted: bool


@dataclass(frozen=True)
class DayPlan:
    """One local day of a site: the events per agent and what should come of them.

    `start` and `end` are the day's first instant and the next day's (23 or 25 hours apart
    on a DST change). They and the events' `ts` carry the site's UTC offset of the moment
    as a fixed offset, as on the wire; expected times are in UTC.
    """

    site: str
    timezone: str
    day: date
    seed: int
    start: datetime
    end: datetime
    roles: Mapping[str, Role]
    events: Mapping[str, tuple[PlannedEvent, ...]]
    """Per agent, in seq order."""
    bookings: tuple[PlannedBooking, ...]
    sessions: tuple[ExpectedSession, ...]
    visits: tuple[ExpectedVisit, ...]
    taps: tuple[PlannedTap, ...]
    points: Mapping[str, int]
    """Expected InfluxDB points per measurement: one per event."""

    @property
    def total(self) -> int:
        return sum(len(events) for events in self.events.values())

    def timeline(self) -> list[tuple[str, PlannedEvent]]:
        """Every `(agent, event)` of the day in time order (ties: agent, then seq)."""
        merged = [(agent, e) for agent, events in self.events.items() for e in events]
        merged.sort(
            key=lambda item: (item[1].payload.ts.astimezone(UTC), item[0], item[1].payload.seq)
        )
        return merged


# --- the planner -------------------------------------------------------------------------


@dataclass
class _Draft:
    """An event before its seq is known: `build(seq, ts, mono)` makes its payload."""

    key: int
    agent: str
    at: datetime
    topic: Topic
    build: Callable[[int, datetime, float], DayEvent]


@dataclass
class _Sitting:
    member: Member
    spot: DeskSpot
    occupied: _Draft
    vacant: _Draft
    attributed_by: Attribution
    booking: int | None = None


@dataclass
class _Trip:
    member: Member
    entry: _Draft
    exit: _Draft


@dataclass
class _Day:
    """The planner's working state: drafts, reserved instants, door cycles."""

    layout: SiteLayout
    day: date
    rng: random.Random
    timing: AgentTiming
    drafts: list[_Draft] = field(default_factory=list)
    taken: dict[str, set[datetime]] = field(default_factory=lambda: defaultdict(set))
    door_busy: dict[str, list[tuple[datetime, datetime]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    changes: dict[DeskSpot, list[tuple[datetime, PresenceState, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    sittings: list[_Sitting] = field(default_factory=list)
    trips: list[_Trip] = field(default_factory=list)
    taps: list[tuple[_Draft, DoorSpot, Member, bool, bool]] = field(default_factory=list)
    keys: Iterator[int] = field(default_factory=itertools.count)

    # --- time -------------------------------------------------------------------------

    def local(self, hour: int, minute: int = 0) -> datetime:
        """A wall-clock time of the day, as a UTC instant."""
        naive = datetime.combine(self.day, time()) + timedelta(hours=hour, minutes=minute)
        return naive.replace(tzinfo=self.layout.tz).astimezone(UTC)

    def after(self, moment: datetime, low_s: float, high_s: float) -> datetime:
        """A moment `low_s` to `high_s` seconds after `moment`, to the millisecond."""
        return _ms(moment + timedelta(seconds=self.rng.uniform(low_s, high_s)))

    def take(self, agent: str, at: datetime) -> datetime:
        """`at` (or the next free millisecond): an agent's events never share a time."""
        at = _ms(at)
        taken = self.taken[agent]
        while at in taken:
            at += _MS
        taken.add(at)
        return at

    # --- drafts -----------------------------------------------------------------------

    def add(
        self,
        agent: str,
        at: datetime,
        topic: Topic,
        build: Callable[[int, datetime, float], DayEvent],
    ) -> _Draft:
        draft = _Draft(next(self.keys), agent, self.take(agent, at), topic, build)
        self.drafts.append(draft)
        return draft

    def presence(
        self,
        spot: DeskSpot,
        at: datetime,
        state: PresenceState,
        confidence: float,
        *,
        heartbeat: bool = False,
    ) -> _Draft:
        raw = self.raw(state)
        topic = Topic.presence(self.layout.site, spot.agent, spot.desk)

        def build(seq: int, ts: datetime, mono: float) -> DayEvent:
            return Presence(seq=seq, ts=ts, mono=mono, state=state, confidence=confidence,
                            sensor="radar", heartbeat=heartbeat, raw=raw)  # fmt: skip

        return self.add(spot.agent, at, topic, build)

    def raw(self, state: PresenceState) -> RawSummary:
        """What the radar saw: a person at arm's length, or next to nothing."""
        if state is PresenceState.OCCUPIED:
            return RawSummary(
                distance_cm=self.rng.randint(45, 110), energy=self.rng.randint(25, 90)
            )
        return RawSummary(energy=self.rng.randint(0, 8))

    def desk_badge(self, spot: DeskSpot, at: datetime, member: Member) -> _Draft:
        token = badge_token(self.layout.site_key, member.uid)
        topic = Topic.desk_badge(self.layout.site, spot.agent, spot.desk)

        def build(seq: int, ts: datetime, mono: float) -> DayEvent:
            return DeskBadge(seq=seq, ts=ts, mono=mono, token=token)

        return self.add(spot.agent, at, topic, build)

    def tap(self, door: DoorSpot, at: datetime, member: Member, *, leaving: bool) -> _Draft:
        token = badge_token(self.layout.site_key, member.uid)
        reader = exit_reader(door.door) if leaving else entry_reader(door.door)
        request_id = f"{self.rng.getrandbits(128):032x}"
        topic = Topic.tap(self.layout.site, door.agent, door.door)

        def build(seq: int, ts: datetime, mono: float) -> DayEvent:
            return Tap(seq=seq, ts=ts, mono=mono, token=token, reader=reader,
                       request_id=request_id)  # fmt: skip

        draft = self.add(door.agent, at, topic, build)
        self.taps.append((draft, door, member, leaving, not member.revoked))
        return draft

    def through(self, door: DoorSpot, at: datetime, member: Member, *, leaving: bool) -> _Draft:
        """A granted tap and the door cycle after it; the door is free when it starts."""
        at = self.reserve(door, at)
        tap = self.tap(door, at, member, leaving=leaving)
        opened = self.after(tap.at, 1.5, 3.5)
        closed = self.after(opened, 3.0, 8.0)
        topic = Topic.door_event(self.layout.site, door.agent, door.door)
        self.add(door.agent, opened, topic,
                 lambda seq, ts, mono: DoorOpened(seq=seq, ts=ts, mono=mono))  # fmt: skip
        self.add(door.agent, closed, topic,
                 lambda seq, ts, mono: DoorClosed(seq=seq, ts=ts, mono=mono))  # fmt: skip
        self.door_busy[door.door].append((tap.at, closed + timedelta(seconds=1)))
        return tap

    def reserve(self, door: DoorSpot, at: datetime) -> datetime:
        """The first moment from `at` when the door is not in someone else's cycle."""
        at = _ms(at)
        moved = True
        while moved:
            moved = False
            for start, end in self.door_busy[door.door]:
                if start - _DOOR_CYCLE < at < end:
                    at = self.after(end, 2.0, 10.0)
                    moved = True
        return at


def _offset(moment: datetime, tz: ZoneInfo) -> datetime:
    """`moment` in `tz`'s offset of that instant, as a fixed offset (what the wire carries).

    Not `tz` itself: Python compares and subtracts two datetimes sharing one tzinfo by their
    wall clocks, which is wrong across a DST change (the repeated hour sorts before the
    first, a 23-hour day is 24 hours long).
    """
    local = moment.astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None  # noqa: S101 - a ZoneInfo always has an offset
    return local.replace(tzinfo=timezone(offset), fold=0)


def _ms(moment: datetime) -> datetime:
    """`moment` truncated to the millisecond, in UTC."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _assign_roles(
    members: Sequence[Member], rng: random.Random, *, no_shows: int, walk_ins: int
) -> dict[str, Role]:
    active = [m for m in members if not m.revoked]
    if no_shows < 0 or walk_ins < 0:
        raise ValueError("no_shows and walk_ins cannot be negative")
    if no_shows + walk_ins > len(active):
        raise ValueError(
            f"{len(active)} members with a valid badge cannot make {no_shows} no-shows and "
            f"{walk_ins} walk-ins: add members or ask for fewer"
        )
    order = list(active)
    rng.shuffle(order)
    roles: dict[str, Role] = {m.key: "refused" for m in members if m.revoked}
    for i, member in enumerate(order):
        if i < no_shows:
            roles[member.key] = "no_show"
        elif i < no_shows + walk_ins:
            roles[member.key] = "walk_in"
        else:
            roles[member.key] = "booked" if (i - no_shows - walk_ins) % 2 else "badge"
    return roles


def plan_day(
    layout: SiteLayout,
    members: Sequence[Member],
    day: date,
    *,
    seed: int,
    timing: AgentTiming | None = None,
    no_shows: int = 1,
    walk_ins: int = 2,
    first_seqs: Mapping[str, int] | None = None,
) -> DayPlan:
    """Plan one local day of `layout`'s site; see the module docstring.

    `first_seqs` gives an agent's first seq (default 1), to continue a stream the server
    already holds. Raises ValueError when the members do not fit (more members than desks,
    more no-shows and walk-ins than members, two members with one key or badge).
    """
    timing = timing or AgentTiming()
    if len({m.key for m in members}) != len(members):
        raise ValueError("member keys must be unique")
    if len({m.uid for m in members}) != len(members):
        raise ValueError("two members share a badge")
    if any(not m.uid for m in members):
        raise ValueError("a member's badge UID is empty")
    rng = random.Random(f"ruche-day:{seed}:{day.isoformat()}")  # noqa: S311 - a simulation
    roles = _assign_roles(members, rng, no_shows=no_shows, walk_ins=walk_ins)
    seated = [m for m in members if roles[m.key] != "refused"]
    if len(seated) > len(layout.desks):
        raise ValueError(
            f"{len(seated)} members need a desk each but the site has {len(layout.desks)}"
        )
    plan = _Day(layout, day, rng, timing)
    desks = list(layout.desks)
    rng.shuffle(desks)
    bookings: list[PlannedBooking] = []
    for member, spot in zip(seated, desks, strict=False):
        role = roles[member.key]
        if role == "no_show":
            start = plan.local(9, rng.choice((0, 30, 60)))
            bookings.append(PlannedBooking(member.key, spot.agent, spot.desk, start,
                                           start + timedelta(hours=8), no_show=True))  # fmt: skip
        else:
            _plan_stay(plan, member, spot, role, bookings)
    for member in members:
        if roles[member.key] == "refused":
            _plan_refusal(plan, member)
    for spot in layout.desks:
        _plan_heartbeats(plan, spot)
    return _finish(plan, seed, roles, bookings, first_seqs or {})


def _plan_stay(
    plan: _Day, member: Member, spot: DeskSpot, role: Role, bookings: list[PlannedBooking]
) -> None:
    """One member's day at their desk: in, sittings between breaks, out."""
    rng, timing = plan.rng, plan.timing
    arrival = plan.after(plan.local(8), 0, 150 * 60)
    door = rng.choice(plan.layout.doors)
    entry = plan.through(door, arrival, member, leaving=False)
    sit = plan.after(entry.at, 90, 300)
    # Breaks: (stand up around, away for seconds, goes out through a door).
    breaks: list[tuple[datetime, float, bool]] = [
        (plan.after(plan.local(10, 15), 0, 3600), rng.uniform(8 * 60, 20 * 60), False),
        (plan.after(plan.local(12), 0, 75 * 60), rng.uniform(40 * 60, 80 * 60), rng.random() < 0.5),
    ]
    if rng.random() < 0.6:
        breaks.append((plan.after(plan.local(15), 0, 3600), rng.uniform(8 * 60, 20 * 60), False))
    leave = plan.after(plan.local(17), 0, 120 * 60)

    spans: list[tuple[datetime, datetime]] = []
    for stand, away_s, goes_out in breaks:
        if stand - sit < timedelta(minutes=20):
            continue  # came in late: skipped this break
        spans.append((sit, stand))
        back = _ms(stand + timedelta(seconds=away_s))
        if goes_out:
            out = plan.through(door, plan.after(stand, 60, 180), member, leaving=True)
            plan.trips.append(_Trip(member, entry, out))
            door = rng.choice(plan.layout.doors)
            entry = plan.through(door, plan.after(back, -240, -120), member, leaving=False)
        sit = back
    spans.append((sit, leave))
    out = plan.through(door, plan.after(leave, 60, 240), member, leaving=True)
    plan.trips.append(_Trip(member, entry, out))

    booking: int | None = None
    if role == "booked":
        first = spans[0][0] + timedelta(seconds=timing.arrive_s)
        start = (first - timedelta(seconds=rng.uniform(60, 600))).replace(second=0, microsecond=0)
        last = spans[-1][1] + timedelta(seconds=timing.leave_s)
        end = last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        bookings.append(PlannedBooking(member.key, spot.agent, spot.desk, start, end,
                                       no_show=False))  # fmt: skip
        booking = len(bookings) - 1
    attributed_by: Attribution = "none"
    if role == "badge":
        attributed_by = "badge"
    elif role == "booked":
        attributed_by = "booking"
    for sat, stood in spans:
        confidence = round(rng.uniform(0.8, 1.0), 2)
        occupied_at = sat + timedelta(seconds=timing.arrive_s)
        occupied = plan.presence(spot, occupied_at, PresenceState.OCCUPIED, confidence)
        if role == "badge":
            plan.desk_badge(spot, plan.after(sat, 3, 45), member)
        vacant = plan.presence(spot, stood + timedelta(seconds=timing.leave_s),
                               PresenceState.VACANT, 1.0)  # fmt: skip
        plan.changes[spot] += [(occupied.at, PresenceState.OCCUPIED, confidence),
                               (vacant.at, PresenceState.VACANT, 1.0)]  # fmt: skip
        plan.sittings.append(_Sitting(member, spot, occupied, vacant, attributed_by, booking))


def _plan_refusal(plan: _Day, member: Member) -> None:
    """A revoked badge at a door, twice, then the member gives up."""
    door = plan.rng.choice(plan.layout.doors)
    first = plan.tap(door, plan.after(plan.local(9), 0, 7200), member, leaving=False)
    plan.tap(door, plan.after(first.at, 5, 30), member, leaving=False)


def _plan_heartbeats(plan: _Day, spot: DeskSpot) -> None:
    """A desk repeats its state every `heartbeat_s`, the schedule restarting at each change.

    Desks were vacant overnight: the day begins partway through a vacant schedule.
    """
    every = timedelta(seconds=plan.timing.heartbeat_s)
    start, end = plan.local(0), _next_midnight(plan)
    changes = sorted(plan.changes.get(spot, []), key=lambda c: c[0])
    state, confidence = PresenceState.VACANT, 1.0
    beat = _ms(start + timedelta(seconds=plan.rng.uniform(0, plan.timing.heartbeat_s)))
    i = 0
    while True:
        upcoming = changes[i][0] if i < len(changes) else None
        if upcoming is not None and upcoming <= beat:
            _, state, confidence = changes[i]
            beat = upcoming + every
            i += 1
            continue
        if beat >= end:
            return
        if upcoming is None or upcoming - beat > _NO_GAP:
            plan.presence(spot, beat, state, confidence, heartbeat=True)
        beat += every


def _next_midnight(plan: _Day) -> datetime:
    naive = datetime.combine(plan.day + timedelta(days=1), time())
    return naive.replace(tzinfo=plan.layout.tz).astimezone(UTC)


def _finish(
    plan: _Day,
    seed: int,
    roles: dict[str, Role],
    bookings: list[PlannedBooking],
    first_seqs: Mapping[str, int],
) -> DayPlan:
    """Number each agent's events in time order and build the payloads and expectations."""
    tz = plan.layout.tz
    start, end = plan.local(0), _next_midnight(plan)
    by_agent: dict[str, list[_Draft]] = defaultdict(list)
    for draft in plan.drafts:
        if not start <= draft.at < end:
            raise ValueError(
                f"the day at {plan.layout.site} runs past midnight ({draft.at.isoformat()}): "
                "a stay must fit in one local day"
            )
        by_agent[draft.agent].append(draft)
    seqs: dict[int, int] = {}
    events: dict[str, tuple[PlannedEvent, ...]] = {}
    for agent in plan.layout.agents:
        drafts = sorted(by_agent.get(agent, []), key=lambda d: d.at)
        first = first_seqs.get(agent, 1)
        if first < 1:
            raise ValueError(f"first seq of {agent} must be 1 or more, not {first}")
        # The agent booted some hours before the day; `mono` counts from then.
        booted = start - timedelta(seconds=plan.rng.uniform(3600, 3 * 86400))
        built = []
        for i, draft in enumerate(drafts):
            seq = first + i
            seqs[draft.key] = seq
            mono = round((draft.at - booted).total_seconds(), 3)
            built.append(PlannedEvent(draft.topic, draft.build(seq, _offset(draft.at, tz), mono)))
        events[agent] = tuple(built)

    sessions = sorted(
        (
            ExpectedSession(
                agent=s.spot.agent,
                desk=s.spot.desk,
                opened_seq=seqs[s.occupied.key],
                start=s.occupied.at,
                end=s.vacant.at,
                member=None if s.attributed_by == "none" else s.member.key,
                attributed_by=s.attributed_by,
                booking=s.booking,
            )
            for s in plan.sittings
        ),
        key=lambda s: (s.start, s.desk),
    )
    visits = sorted(
        (
            ExpectedVisit(t.member.key, t.entry.at, t.exit.at, t.entry.agent, seqs[t.entry.key])
            for t in plan.trips
        ),
        key=lambda v: (v.start, v.member),
    )
    taps = sorted(
        (
            PlannedTap(d.agent, seqs[d.key], door.door, m.key, exit=leaving, granted=granted)
            for d, door, m, leaving, granted in plan.taps
        ),
        key=lambda t: (t.agent, t.seq),
    )
    counts = Counter(
        MEASUREMENTS[e.topic.channel] for agent_events in events.values() for e in agent_events
    )
    return DayPlan(
        site=plan.layout.site,
        day=plan.day,
        seed=seed,
        timezone=plan.layout.timezone,
        start=_offset(start, tz),
        end=_offset(end, tz),
        roles=roles,
        events=events,
        bookings=tuple(bookings),
        sessions=tuple(sessions),
        visits=tuple(visits),
        taps=tuple(taps),
        points={m: counts.get(m, 0) for m in MEASUREMENTS.values()},
    )
