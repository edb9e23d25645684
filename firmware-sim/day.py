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

How long a member stays (`stays`, by member key) is `day` unless said otherwise:
`short` comes in some time between 08:00 and 16:00 and leaves 20 to 100 minutes after
sitting down, without a break; `late` stays the day, goes for dinner around 19:00 and
leaves between 00:45 and 04:00 the next morning (absolute time: on the night the clocks
go back that can be in the repeated hour). A late stay ends in the next day, so it is
planned with `plan_days`, which plans consecutive days as one stream.

## Several days

`plan_days(layout, [DaySpec(day, members, ...), ...], seed=...)` plans consecutive days
as the agents would live them: one `DayPlan` per day, each holding the events of its
local day (a late stay's events after midnight are in the next day's plan), seqs
counting on from one day to the next, heartbeats keeping their rhythm across midnight.
A day's expectations are the sittings, trips and bookings of the people who came that
day, even when they end after midnight. With no late stays, a day's roles, sittings,
trips and bookings are those `plan_day` gives it (same seed); its heartbeats, seqs and
`mono` run on from the day before.

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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    "DaySpec",
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
    "Stay",
    "entry_reader",
    "exit_reader",
    "plan_day",
    "plan_days",
]

Role: TypeAlias = Literal["badge", "booked", "walk_in", "no_show", "refused"]
Stay: TypeAlias = Literal["day", "short", "late"]
"""How long a member stays: see the module docstring."""
STAYS: frozenset[str] = frozenset({"day", "short", "late"})
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
_DAY = timedelta(days=1)
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

    def only(self, agents: Collection[str]) -> DayPlan:
        """The day's events (and taps, and points) of `agents` alone, to play them apart:
        an agent that was offline sends its day later. Its expectations stay the whole day's.
        """
        unknown = sorted(set(agents) - set(self.events))
        if unknown:
            raise ValueError(f"no agents {unknown} in the plan of {self.day} at {self.site}")
        events = {a: e for a, e in self.events.items() if a in agents}
        counts = Counter(MEASUREMENTS[e.topic.channel] for kept in events.values() for e in kept)
        return replace(
            self,
            events=events,
            taps=tuple(t for t in self.taps if t.agent in agents),
            points={m: counts.get(m, 0) for m in MEASUREMENTS.values()},
        )


@dataclass(frozen=True)
class DaySpec:
    """One day of `plan_days`: who comes, how many of them book and do not come
    (`no_shows`) or sit without checking in (`walk_ins`), and `stays` by member key
    (`short` or `late`; `day` when not named)."""

    day: date
    members: Sequence[Member]
    no_shows: int = 0
    walk_ins: int = 0
    stays: Mapping[str, Stay] = field(default_factory=dict)


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
    day: date
    member: Member
    spot: DeskSpot
    occupied: _Draft
    vacant: _Draft
    attributed_by: Attribution
    booking: int | None = None
    """The index of its booking among its day's."""


@dataclass
class _Trip:
    day: date
    member: Member
    entry: _Draft
    exit: _Draft


@dataclass
class _Day:
    """The planner's working state: drafts, reserved instants, door cycles.

    `day` and `rng` are those of the day being planned; the rest is shared by the days
    of one `plan_days`, so door cycles and agents' instants never clash across midnight.
    """

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
    members: Sequence[Member],
    rng: random.Random,
    *,
    no_shows: int,
    walk_ins: int,
    stays: Mapping[str, Stay],
) -> dict[str, Role]:
    active = [m for m in members if not m.revoked]
    if no_shows < 0 or walk_ins < 0:
        raise ValueError("no_shows and walk_ins cannot be negative")
    if no_shows + walk_ins > len(active):
        raise ValueError(
            f"{len(active)} members with a valid badge cannot make {no_shows} no-shows and "
            f"{walk_ins} walk-ins: add members or ask for fewer"
        )
    if no_shows > sum(1 for m in active if stays.get(m.key, "day") == "day"):
        raise ValueError(
            f"{no_shows} no-shows among members staying a plain day: a member planned to "
            "stay short or late comes"
        )
    order = list(active)
    rng.shuffle(order)
    # No-shows are drawn first: from the members planned to stay a plain day (stable).
    order.sort(key=lambda m: stays.get(m.key, "day") != "day")
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
    stays: Mapping[str, Stay] | None = None,
) -> DayPlan:
    """Plan one local day of `layout`'s site; see the module docstring.

    `first_seqs` gives an agent's first seq (default 1), to continue a stream the server
    already holds. Raises ValueError when the members do not fit (more members than desks,
    more no-shows and walk-ins than members, two members with one key or badge), or when
    a `late` stay runs past midnight: plan it with `plan_days`.
    """
    spec = DaySpec(day, members, no_shows=no_shows, walk_ins=walk_ins, stays=stays or {})
    return plan_days(layout, [spec], seed=seed, timing=timing, first_seqs=first_seqs)[0]


def plan_days(
    layout: SiteLayout,
    days: Sequence[DaySpec],
    *,
    seed: int,
    timing: AgentTiming | None = None,
    first_seqs: Mapping[str, int] | None = None,
) -> tuple[DayPlan, ...]:
    """Plan consecutive local days of `layout`'s site as one stream, a `DayPlan` per day.

    `first_seqs` gives an agent's first seq on the first day (default 1). Raises
    ValueError as `plan_day` does, for days that do not follow one another, for a member
    key with two badges, and when a late stay on the last day runs past its midnight.
    """
    timing = timing or AgentTiming()
    if not days:
        raise ValueError("plan at least one day")
    for before, after in itertools.pairwise(days):
        if after.day != before.day + timedelta(days=1):
            raise ValueError(
                f"days are planned one after the other: {after.day} does not follow {before.day}"
            )
    badges: dict[str, bytes] = {}
    for spec in days:
        _check_members(spec)
        for m in spec.members:
            if badges.setdefault(m.key, m.uid) != m.uid:
                raise ValueError(f"member {m.key} has one badge per run of days, not two")
    plan = _Day(layout, days[0].day, _day_rng(seed, days[0].day), timing)
    planned: list[tuple[dict[str, Role], list[PlannedBooking]]] = []
    for spec in days:
        plan.day, plan.rng = spec.day, _day_rng(seed, spec.day)
        planned.append(_plan_people(plan, spec))
    start, end = _midnight(days[0].day, layout.tz), _midnight(days[-1].day + _DAY, layout.tz)
    for spot in layout.desks:
        _plan_heartbeats(plan, spot, start, end)
    return _finish(plan, days, seed, planned, first_seqs or {})


def _day_rng(seed: int, day: date) -> random.Random:
    """A day's draws depend on the seed and the day alone, not on the days planned with it."""
    return random.Random(f"ruche-day:{seed}:{day.isoformat()}")  # noqa: S311 - a simulation


def _check_members(spec: DaySpec) -> None:
    members = spec.members
    if len({m.key for m in members}) != len(members):
        raise ValueError("member keys must be unique")
    if len({m.uid for m in members}) != len(members):
        raise ValueError("two members share a badge")
    if any(not m.uid for m in members):
        raise ValueError("a member's badge UID is empty")
    keys = {m.key for m in members if not m.revoked}
    for key, stay in spec.stays.items():
        if key not in keys:
            raise ValueError(f"{spec.day}: a stay for {key!r}, who is not among the day's members")
        if stay not in STAYS:
            raise ValueError(f"{spec.day}: {key!r} stays {stay!r}: use one of {sorted(STAYS)}")


def _plan_people(plan: _Day, spec: DaySpec) -> tuple[dict[str, Role], list[PlannedBooking]]:
    """Roles, desks and stays of one day's members: `plan.day`, drawn from `plan.rng`."""
    rng, layout = plan.rng, plan.layout
    roles = _assign_roles(
        spec.members, rng, no_shows=spec.no_shows, walk_ins=spec.walk_ins, stays=spec.stays
    )
    seated = [m for m in spec.members if roles[m.key] != "refused"]
    if len(seated) > len(layout.desks):
        raise ValueError(
            f"{len(seated)} members need a desk each but the site has {len(layout.desks)}"
        )
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
            _plan_stay(plan, member, spot, role, bookings, stay=spec.stays.get(member.key, "day"))
    for member in spec.members:
        if roles[member.key] == "refused":
            _plan_refusal(plan, member)
    return roles, bookings


_Break: TypeAlias = tuple[datetime, float, bool]
"""A break: stand up around, away for seconds, goes out through a door."""


def _breaks(plan: _Day, sit: datetime, stay: Stay) -> tuple[list[_Break], datetime]:
    """The breaks of a stay that began with `sit`, and when the member leaves."""
    rng = plan.rng
    if stay == "short":
        return [], plan.after(sit, 20 * 60, 100 * 60)
    breaks: list[_Break] = [
        (plan.after(plan.local(10, 15), 0, 3600), rng.uniform(8 * 60, 20 * 60), False),
        (plan.after(plan.local(12), 0, 75 * 60), rng.uniform(40 * 60, 80 * 60), rng.random() < 0.5),
    ]
    if rng.random() < 0.6:
        breaks.append((plan.after(plan.local(15), 0, 3600), rng.uniform(8 * 60, 20 * 60), False))
    if stay != "late":
        return breaks, plan.after(plan.local(17), 0, 120 * 60)
    dinner = plan.after(plan.local(19), 0, 3600)
    breaks.append((dinner, rng.uniform(30 * 60, 60 * 60), rng.random() < 0.5))
    # Absolute time after midnight: the night the clocks go back has a repeated hour.
    return breaks, plan.after(plan.local(24), 45 * 60, 240 * 60)


def _plan_stay(
    plan: _Day,
    member: Member,
    spot: DeskSpot,
    role: Role,
    bookings: list[PlannedBooking],
    *,
    stay: Stay = "day",
) -> None:
    """One member's day at their desk: in, sittings between breaks, out."""
    rng, timing = plan.rng, plan.timing
    window = 8 * 3600 if stay == "short" else 150 * 60
    arrival = plan.after(plan.local(8), 0, window)
    door = rng.choice(plan.layout.doors)
    entry = plan.through(door, arrival, member, leaving=False)
    sit = plan.after(entry.at, 90, 300)
    breaks, leave = _breaks(plan, sit, stay)

    spans: list[tuple[datetime, datetime]] = []
    for stand, away_s, goes_out in breaks:
        if stand - sit < timedelta(minutes=20):
            continue  # came in late: skipped this break
        spans.append((sit, stand))
        back = _ms(stand + timedelta(seconds=away_s))
        if goes_out:
            out = plan.through(door, plan.after(stand, 60, 180), member, leaving=True)
            plan.trips.append(_Trip(plan.day, member, entry, out))
            door = rng.choice(plan.layout.doors)
            entry = plan.through(door, plan.after(back, -240, -120), member, leaving=False)
        sit = back
    spans.append((sit, leave))
    out = plan.through(door, plan.after(leave, 60, 240), member, leaving=True)
    plan.trips.append(_Trip(plan.day, member, entry, out))

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
        plan.sittings.append(
            _Sitting(plan.day, member, spot, occupied, vacant, attributed_by, booking)
        )


def _plan_refusal(plan: _Day, member: Member) -> None:
    """A revoked badge at a door, twice, then the member gives up."""
    door = plan.rng.choice(plan.layout.doors)
    first = plan.tap(door, plan.after(plan.local(9), 0, 7200), member, leaving=False)
    plan.tap(door, plan.after(first.at, 5, 30), member, leaving=False)


def _plan_heartbeats(plan: _Day, spot: DeskSpot, start: datetime, end: datetime) -> None:
    """A desk repeats its state every `heartbeat_s` from `start` to `end`, the schedule
    restarting at each change.

    Desks were vacant overnight: the days begin partway through a vacant schedule.
    """
    every = timedelta(seconds=plan.timing.heartbeat_s)
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


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    """The local midnight starting `day`, as a UTC instant."""
    return datetime.combine(day, time()).replace(tzinfo=tz).astimezone(UTC)


def _finish(
    plan: _Day,
    days: Sequence[DaySpec],
    seed: int,
    planned: Sequence[tuple[dict[str, Role], list[PlannedBooking]]],
    first_seqs: Mapping[str, int],
) -> tuple[DayPlan, ...]:
    """Number each agent's events in time order, build the payloads and expectations, and
    cut them into one plan per local day."""
    tz = plan.layout.tz
    start, end = _midnight(days[0].day, tz), _midnight(days[-1].day + _DAY, tz)
    by_agent: dict[str, list[_Draft]] = defaultdict(list)
    for draft in plan.drafts:
        if not start <= draft.at < end:
            raise ValueError(
                f"the day at {plan.layout.site} runs past midnight ({draft.at.isoformat()}): "
                "a stay must end by the last day planned (plan the next day too)"
            )
        by_agent[draft.agent].append(draft)
    seqs: dict[int, int] = {}
    built: dict[str, list[tuple[datetime, PlannedEvent]]] = {}
    for agent in plan.layout.agents:
        drafts = sorted(by_agent.get(agent, []), key=lambda d: d.at)
        first = first_seqs.get(agent, 1)
        if first < 1:
            raise ValueError(f"first seq of {agent} must be 1 or more, not {first}")
        # The agent booted some hours before the first day; `mono` counts from then.
        booted = start - timedelta(seconds=plan.rng.uniform(3600, 3 * 86400))
        built[agent] = []
        for i, draft in enumerate(drafts):
            seq = first + i
            seqs[draft.key] = seq
            mono = round((draft.at - booted).total_seconds(), 3)
            event = PlannedEvent(draft.topic, draft.build(seq, _offset(draft.at, tz), mono))
            built[agent].append((draft.at, event))
    return tuple(
        _day_plan(plan, spec, seed=seed, roles=roles, bookings=bookings, built=built, seqs=seqs)
        for spec, (roles, bookings) in zip(days, planned, strict=True)
    )


def _day_plan(
    plan: _Day,
    spec: DaySpec,
    *,
    seed: int,
    roles: dict[str, Role],
    bookings: list[PlannedBooking],
    built: Mapping[str, list[tuple[datetime, PlannedEvent]]],
    seqs: Mapping[int, int],
) -> DayPlan:
    """One day's cut of the stream: its events, and the expectations of who came."""
    tz = plan.layout.tz
    start, end = _midnight(spec.day, tz), _midnight(spec.day + _DAY, tz)
    events = {
        agent: tuple(event for at, event in stream if start <= at < end)
        for agent, stream in built.items()
    }
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
            if s.day == spec.day
        ),
        key=lambda s: (s.start, s.desk),
    )
    visits = sorted(
        (
            ExpectedVisit(t.member.key, t.entry.at, t.exit.at, t.entry.agent, seqs[t.entry.key])
            for t in plan.trips
            if t.day == spec.day
        ),
        key=lambda v: (v.start, v.member),
    )
    taps = sorted(
        (
            PlannedTap(d.agent, seqs[d.key], door.door, m.key, exit=leaving, granted=granted)
            for d, door, m, leaving, granted in plan.taps
            if start <= d.at < end
        ),
        key=lambda t: (t.agent, t.seq),
    )
    counts = Counter(
        MEASUREMENTS[e.topic.channel] for agent_events in events.values() for e in agent_events
    )
    return DayPlan(
        site=plan.layout.site,
        day=spec.day,
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
