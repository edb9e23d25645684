"""The demo's coworking space and its day, as values: no I/O, no clock.

`demo_site(desks)` describes a site of `desks` desks in three zones, two doors on one
agent, and about three members for every four desks, each on one of the four kinds of
plan of docs/billing.md (a monthly plan counted in days, one counted in hours,
pay-as-you-go, day passes), with price versions; one member's badge is revoked.
`demo_day(site, day, seed=...)` plans the site's day with `ruche.sim.day.plan_day`,
from its opening to its closing.

The server judges bookings (no-shows) by the real clock, the demo plays the day faster
than real from the opening: `books_ahead` says which bookings may be in the registry
from the start, and the others are made once the day has been played past them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ruche.sim.day import DayPlan, DeskSpot, DoorSpot, Member, PlannedBooking, SiteLayout, plan_day

__all__ = [
    "MAX_DESKS",
    "MIN_DESKS",
    "DemoDay",
    "DemoDesk",
    "DemoMember",
    "DemoPlan",
    "DemoPrice",
    "DemoSite",
    "books_ahead",
    "cut",
    "deadline",
    "demo_day",
    "demo_site",
    "split_bookings",
]

MIN_DESKS = 8
MAX_DESKS = 200
SITE = "demo"
SITE_KEY = bytes.fromhex("5e1f0c2a9b3d4e5f60718293a4b5c6d7")
DOOR_AGENT = "doors"
ZONES = (("Open space", "open-space", 0.5), ("Window row", "window-row", 0.3),
         ("Quiet room", "quiet-room", 0.2))  # fmt: skip
"""Name, agent (and desk prefix), share of the desks."""
ROW = 6
"""Desks per row on the floor page."""

_FIRST = ("Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Frances",
          "Dennis", "Margaret", "Ken", "Radia", "Niklaus", "Hedy", "John", "Sophie", "Tim",
          "Annie", "Claude", "Mary", "Linus", "Karen", "Guido", "Lynn", "Bjarne", "Shafi",
          "Leslie", "Adele", "Tony", "Ida")  # fmt: skip
_LAST = ("Lovelace", "Hopper", "Turing", "Johnson", "Dijkstra", "Liskov", "Knuth", "Allen",
         "Ritchie", "Hamilton", "Thompson", "Perlman", "Wirth", "Lamarr", "Backus", "Wilson",
         "Berners-Lee", "Easley", "Shannon", "Keller", "Torvalds", "Jones", "van Rossum",
         "Conway", "Stroustrup", "Goldwasser", "Lamport", "Goldberg", "Hoare",
         "Rhodes")  # fmt: skip


@dataclass(frozen=True, slots=True)
class DemoDesk:
    """A desk, its zone and where the floor page draws it."""

    spot: DeskSpot
    zone: str
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class DemoPrice:
    """A price version: plan terms as `ruche.server.billing.close.terms_of` reads them."""

    label: str
    valid_from: date
    terms: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """A plan (every one opens the doors 24/7) and what it bills."""

    name: str
    share: float
    """Of the members."""
    terms: str
    """The terms in a few words, for the summary."""


PLANS = (
    DemoPlan("Resident", 0.4, "monthly, 12 days included"),
    DemoPlan("Part-time", 0.2, "monthly, 40 hours included"),
    DemoPlan("Pay as you go", 0.25, "by the minute, capped daily"),
    DemoPlan("Day pass", 0.15, "a pass per day used"),
)


@dataclass(frozen=True, slots=True)
class DemoMember:
    member: Member
    """`key` is the member's email."""
    name: str
    plan: str


@dataclass(frozen=True)
class DemoSite:
    """The demo's coworking space."""

    layout: SiteLayout
    name: str
    desks: tuple[DemoDesk, ...]
    members: tuple[DemoMember, ...]
    opening: time
    closing: time
    no_show_minutes: int

    @property
    def tz(self) -> ZoneInfo:
        return self.layout.tz

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.zone for d in self.desks))

    def prices(self, day: date) -> dict[str, tuple[DemoPrice, ...]]:
        """Each plan's price versions around `day`: in force since the month before, and
        a Resident price rise from the 16th of `day`'s month (the month is billed in two
        segments)."""
        since = (day.replace(day=1) - timedelta(days=1)).replace(day=1)
        rise = day.replace(day=16)

        days = {"kind": "monthly", "included": "12", "unit": "day"}
        return {
            "Resident": (
                DemoPrice("Resident", since, {**days, "fee": "290.00", "overage": "25.00"}),
                DemoPrice(f"Resident from {rise}", rise,
                          {**days, "fee": "310.00", "overage": "26.00"}),
            ),
            "Part-time": (DemoPrice("Part-time", since, {
                "kind": "monthly", "fee": "120.00", "included": "40", "unit": "hour",
                "overage": "4.50"}),),
            "Pay as you go": (DemoPrice("Pay as you go", since, {
                "kind": "pay_as_you_go", "per_minute": "0.06", "minimum_charge": "5.00",
                "daily_cap": "28.00", "monthly_cap": None}),),
            "Day pass": (DemoPrice("Day pass", since, {"kind": "day_pass", "price": "18.00"}),),
        }  # fmt: skip


def demo_site(desks: int = 40) -> DemoSite:
    """A site of `desks` desks (MIN_DESKS to MAX_DESKS): zones, doors, members, plans."""
    if not MIN_DESKS <= desks <= MAX_DESKS:
        raise ValueError(f"the demo site has {MIN_DESKS} to {MAX_DESKS} desks, not {desks}")
    spots: list[DemoDesk] = []
    left = desks
    for i, (zone, agent, share) in enumerate(ZONES):
        count = left if i == len(ZONES) - 1 else max(1, round(desks * share))
        left -= count
        spots += [
            DemoDesk(DeskSpot(agent, f"{agent.split('-')[0]}-{n + 1:02d}"), zone, n % ROW, n // ROW)
            for n in range(count)
        ]
    layout = SiteLayout(
        site=SITE,
        timezone="Europe/Paris",
        site_key=SITE_KEY,
        doors=(DoorSpot(DOOR_AGENT, "front"), DoorSpot(DOOR_AGENT, "back")),
        desks=tuple(d.spot for d in spots),
    )
    return DemoSite(
        layout=layout,
        name="Ruche demo coworking",
        desks=tuple(spots),
        members=_members(desks * 3 // 4),
        opening=time(7, 30),
        closing=time(21, 0),
        no_show_minutes=15,
    )


def _members(count: int) -> tuple[DemoMember, ...]:
    """`count` members with a valid badge, on the plans by their shares, and a former
    member whose badge was revoked."""
    plans: list[str] = []
    for plan in PLANS:
        plans += [plan.name] * round(count * plan.share)
    plans = (plans + [PLANS[0].name] * count)[:count]
    out = []
    for i, plan_name in enumerate(plans):
        # A first name per i, and a last name that differs for each pass over the first names.
        first, last = _FIRST[i % len(_FIRST)], _LAST[(7 * i + i // len(_FIRST)) % len(_LAST)]
        email = f"{first}.{last}@demo.example".lower().replace(" ", "-")
        uid = bytes([0x04, 0x5A, 0x10, i >> 8, i & 0xFF, 0x80])
        out.append(DemoMember(Member(email, uid), f"{first} {last}", plan_name))
    stale = Member("bob.stale@demo.example", bytes([0x04, 0x5A, 0x10, 0xFF, 0xFF, 0x80]),
                   revoked=True)  # fmt: skip
    out.append(DemoMember(stale, "Bob Stale", PLANS[0].name))
    return tuple(out)


@dataclass(frozen=True)
class DemoDay:
    """The day the demo plays: the plan's events up to closing, played from `begin`."""

    plan: DayPlan
    begin: datetime
    """The site's opening, UTC."""
    end: datetime
    """Its closing, UTC: the plan holds no event from then on."""


def demo_day(site: DemoSite, day: date, *, seed: int) -> DemoDay:
    """The site's `day`: a tenth of the members book and do not come, one in fifteen
    sits without checking in; the night's heartbeats come before `begin`."""
    members = [m.member for m in site.members]
    active = sum(1 for m in members if not m.revoked)
    plan = plan_day(site.layout, members, day, seed=seed,
                    no_shows=max(1, active // 10), walk_ins=max(1, active // 15))  # fmt: skip
    begin = datetime.combine(day, site.opening, tzinfo=site.tz).astimezone(UTC)
    end = datetime.combine(day, site.closing, tzinfo=site.tz).astimezone(UTC)
    return DemoDay(cut(plan, end), begin, end)


def cut(plan: DayPlan, until: datetime) -> DayPlan:
    """The plan's events before `until` (and their taps); expectations are left whole."""
    events = {
        agent: tuple(e for e in stream if e.payload.ts < until)
        for agent, stream in plan.events.items()
    }
    kept = {(agent, e.payload.seq) for agent, stream in events.items() for e in stream}
    return replace(
        plan, events=events, taps=tuple(t for t in plan.taps if (t.agent, t.seq) in kept)
    )


def deadline(booking: PlannedBooking, grace_minutes: int) -> datetime:
    """When the server judges a booking: its start plus the grace, or its end if sooner."""
    return min(booking.start + timedelta(minutes=grace_minutes), booking.end)


def books_ahead(
    booking: PlannedBooking,
    *,
    begin: datetime,
    started: datetime,
    speed: float,
    grace_minutes: int,
    margin: timedelta = timedelta(seconds=30),
) -> bool:
    """Whether the booking may be in the registry from the start of a day played from
    `begin` at `speed` since real time `started`.

    The server releases a booking with no presence by its deadline, judged by the real
    clock: the simulated clock must pass the deadline (and its events be stored,
    `margin`) before the real clock does. Otherwise the booking is made once the day has
    been played past its deadline.
    """
    due = deadline(booking, grace_minutes)
    played_at = started + (due - begin) / speed
    return played_at + margin <= due


def split_bookings(
    bookings: Sequence[PlannedBooking],
    *,
    begin: datetime,
    started: datetime,
    speed: float,
    grace_minutes: int,
) -> tuple[list[PlannedBooking], list[PlannedBooking]]:
    """(the bookings made ahead, those made once the day is played past them)."""
    ahead: list[PlannedBooking] = []
    later: list[PlannedBooking] = []
    for booking in bookings:
        made_ahead = books_ahead(
            booking, begin=begin, started=started, speed=speed, grace_minutes=grace_minutes
        )
        (ahead if made_ahead else later).append(booking)
    return ahead, later
