"""The SQL-to-values adapter for door decisions: registry rows in, `rules` values out.

```python
with transaction(sessions) as session:               # one token, a handful of indexed queries
    facts = load_access_facts(session, "lyon", "door-a", "front", token, now)
decision = decide_access(AccessRequest(token, "front"), facts, now)

cache = FactsCache(sessions)                         # the tap path: a snapshot per site
cache.start()
facts = cache.access_facts("lyon", "door-a", "front", token, now)
cache.invalidate("lyon")                             # RegistryListener.site_changed
```

What the rows mean as values (the rest is `access.py`'s docstring):

- A site, a door, a plan are named by their slugs (`Site.id` is the site slug, `Plan.id`
  the plan's id as text) and a member by their id as text (`Member.id`).
- A plan's schedule JSON: `24/7` is `Schedule.always()` (holidays included),
  `business_hours` is `Schedule.business_hours()` (08:00-19:00, Monday to Friday, closed
  on holidays), `custom` is `Schedule.weekly(...)` (closed on holidays). A `booking_only`
  plan has no schedule (None): bookings and day passes are its only way in.
- A badge counts at a site only if it was enrolled under the site's key: its token is
  meaningless anywhere else, so there it is an unknown badge.
- A member may hold several memberships over time. For a tap at `now`, the one that
  covers now is used (preferring a plan that includes the site, then the latest start);
  with none covering now, the latest one already started, else the next one, so that
  the decision says `member_inactive`. For an allow-list, every membership that overlaps
  the horizon contributes its own windows.
- `booked` bookings open doors, and so do `no_show` ones: a no-show release frees the
  desk for others, but a member who arrives late must still get in for the rest of their
  booking (a booking-only plan has no other way in). Cancelled and released ones (given
  up by the member) open nothing.
- A guest's live invitation (`access.guests`) is a membership of the invitation's site
  alone, from its opening that day until `valid_until`: cancelled, it opens nothing.
- A tap on a reader whose id is `out` or ends in `-out` is an exit; any other is an entry.
- A site lockdown is every door of the site locked down (`registry.set_site_lockdown`).

Speed and freshness (`FactsCache`). The tap path reads an in-memory `SiteSnapshot` per
site: every badge under the site's key with its member, memberships, plans, bookings
near now and day passes, so a decision is a few dictionary lookups (microseconds), and
never waits on SQLite's write lock, which the audit writer holds now and then.

- A snapshot is built in a background thread, after the first tap at a site and after
  every `invalidate(site)`. Until it is installed, taps at that site read SQL directly
  (`load_access_facts`: a few indexed queries for the one token), so no tap ever waits
  for a whole site to load, and none is decided on data older than the last change.
- `invalidate(site)` (wired to `RegistryListener.site_changed`) drops the site's snapshot
  at once: a badge revoked through the API is refused from the next tap on, well within
  a second. Generations make it race-free: a rebuild that started before a change is
  thrown away and done again.
- Changes made by another process (a second server, the CLI) reach this one through the
  allow-list it republishes: `DoorWorker` listens to the allow-list topics and
  invalidates the site on each one (`allowlists.py` publishes within a second of a
  change, after its commit).
- A snapshot is also rebuilt after `max_age` (5 minutes), and only serves taps within
  the time range it was loaded for, since bookings and day passes are loaded near then.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.access.guests import guest_plan
from ruche.server.access.invitations import load_guest_windows
from ruche.server.access.rules import (
    AccessFacts,
    AccessRequest,
    Badge,
    BadgeStatus,
    Booking,
    DayPass,
    Direction,
    Door,
    Member,
    MemberFacts,
    Plan,
    Site,
)
from ruche.server.errors import NotFound
from ruche.server.registry.schedule import local_day
from ruche.server.registry.schedule_spec import plan_schedule
from ruche.server.storage import models as m
from ruche.server.storage.enums import AuditKind, BookingStatus

__all__ = [
    "AllowlistInputs",
    "DoorInfo",
    "FactsCache",
    "Holder",
    "MembershipSpan",
    "SiteSnapshot",
    "access_request",
    "direction_of",
    "load_access_facts",
    "load_allowlist_inputs",
    "load_last_direction",
    "load_site_snapshot",
    "local_midnight",
    "with_direction",
]

log = logging.getLogger(__name__)

MAX_GRACE = timedelta(days=1)
"""The widest booking grace (`registry.MAX_GRACE_MINUTES`): how far around a range to look."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_PLAN = Plan("none", sites=frozenset(), schedule=None)


# --- the pure part -----------------------------------------------------------------------


def direction_of(reader: str) -> Direction:
    """Which way a tap goes: readers named `out` or `*-out` are exits, any other an entry."""
    return Direction.OUT if reader == "out" or reader.endswith("-out") else Direction.IN


def access_request(token: str, door: str, reader: str) -> AccessRequest:
    """The `AccessRequest` for a tap of `token` on `reader` at `door`."""
    return AccessRequest(token, door, direction_of(reader))


DOOR_OPENING = (BookingStatus.BOOKED, BookingStatus.NO_SHOW)
"""Booking statuses that open the site's doors within the booking (and its grace)."""


@dataclass(frozen=True, slots=True)
class MembershipSpan:
    """One membership: its plan over `[start, end)` (open-ended when `end` is None)."""

    start: datetime
    end: datetime | None
    plan: Plan

    def covers(self, now: datetime) -> bool:
        return self.start <= now and (self.end is None or now < self.end)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and (self.end is None or start < self.end)


@dataclass(frozen=True, slots=True)
class Holder:
    """A badge and everything door decisions read about its member, at one site."""

    badge: Badge
    member_id: int
    active: bool
    memberships: tuple[MembershipSpan, ...] = ()
    bookings: tuple[Booking, ...] = ()
    day_passes: tuple[DayPass, ...] = ()

    def facts_at(self, site: str, now: datetime) -> MemberFacts:
        """The `MemberFacts` for a tap at `site` at `now` (module docstring: which membership)."""
        covering = [s for s in self.memberships if s.covers(now)]
        if covering:
            span = max(covering, key=lambda s: (site in s.plan.sites, s.start))
        else:
            started = [s for s in self.memberships if s.start <= now]
            upcoming = [s for s in self.memberships if s.start > now]
            if started:
                span = max(started, key=lambda s: s.start)
            elif upcoming:
                span = min(upcoming, key=lambda s: s.start)
            else:  # no membership at all: one that ended long ago
                span = MembershipSpan(_EPOCH, _EPOCH + timedelta(seconds=1), _NO_PLAN)
        return self._facts(span)

    def facts_over(self, start: datetime, end: datetime) -> list[MemberFacts]:
        """One `MemberFacts` per membership overlapping `[start, end)`, for allow-list windows."""
        return [self._facts(s) for s in self.memberships if s.overlaps(start, end)]

    def _facts(self, span: MembershipSpan) -> MemberFacts:
        member = Member(str(self.member_id), span.start, span.end, active=self.active)
        return MemberFacts(self.badge, member, span.plan, self.bookings, self.day_passes)


@dataclass(frozen=True, slots=True)
class DoorInfo:
    """A door of the site and the agent that drives it (None: unassigned)."""

    door: Door
    agent: str | None


@dataclass(frozen=True, slots=True)
class AllowlistInputs:
    """What one agent's allow-list is computed from (`allowlists.build_allowlist`)."""

    site: Site
    doors: tuple[Door, ...]
    """The doors the agent drives."""
    holders: tuple[Holder, ...]
    """Every badge under the site's key that is active (the others are in `revoked`)."""
    revoked: tuple[str, ...]
    """Tokens of the badges under the site's key that are revoked or disabled, sorted."""


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """A site's registry as values, loaded for instants in `[start, end)`."""

    site: Site
    agents: tuple[str, ...]
    doors: Mapping[str, DoorInfo]
    holders: Mapping[str, Holder]
    start: datetime
    end: datetime

    def serves(self, now: datetime) -> bool:
        """Whether bookings and day passes were loaded for `now`."""
        return self.start <= now < self.end

    def door(self, agent: str, door: str) -> Door:
        """The door `door` driven by `agent`; NotFound when it is not one of the agent's."""
        info = self.doors.get(door)
        if info is None or info.agent != agent:
            raise NotFound("Door", f"{self.site.id}/{agent}/{door}")
        return info.door

    def access_facts(self, agent: str, door: str, token: str, now: datetime) -> AccessFacts:
        """The facts `decide_access` needs for a tap of `token` at `agent`'s `door` at `now`."""
        holder = self.holders.get(token)
        facts = None if holder is None else holder.facts_at(self.site.id, now)
        return AccessFacts(self.site, self.door(agent, door), facts)

    def allowlist_inputs(self, agent: str) -> AllowlistInputs:
        doors = tuple(i.door for i in self.doors.values() if i.agent == agent)
        active = [h for h in self.holders.values() if h.badge.status is BadgeStatus.ACTIVE]
        revoked = [t for t, h in self.holders.items() if h.badge.status is not BadgeStatus.ACTIVE]
        return AllowlistInputs(self.site, doors, tuple(active), tuple(sorted(revoked)))


# --- the SQL part ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SiteRow:
    id: int
    key_id: int
    site: Site


def _load_site(session: Session, slug: str) -> _SiteRow:
    row = session.execute(
        sa.select(m.SiteRow.id, m.SiteRow.key_id, m.SiteRow.timezone).where(m.SiteRow.slug == slug)
    ).one_or_none()
    if row is None:
        raise NotFound("Site", slug)
    holidays = session.scalars(sa.select(m.HolidayRow.day).where(m.HolidayRow.site_id == row.id))
    site = Site(slug, ZoneInfo(row.timezone), holidays=frozenset(holidays))
    return _SiteRow(row.id, row.key_id, site)


_DoorColumns = tuple[str, bool, bool, str | None, dict[str, Any] | None]


def _door_query(site: _SiteRow) -> sa.Select[*_DoorColumns]:
    return (
        sa.select(
            m.DoorRow.slug,
            m.DoorRow.anti_passback,
            m.DoorRow.locked_down,
            m.AgentRow.slug,
            m.DoorRow.wiring,
        )
        .outerjoin(m.AgentRow, m.AgentRow.id == m.DoorRow.agent_id)
        .where(m.DoorRow.site_id == site.id)
    )


def _door_info(site: _SiteRow, row: sa.Row[*_DoorColumns]) -> DoorInfo:
    slug, anti_passback, locked_down, agent, wiring = row
    unlock_ms = None if wiring is None else wiring.get("unlock_ms")
    door = Door(slug, site.site.id, locked_down, anti_passback,
                unlock_ms=unlock_ms if isinstance(unlock_ms, int) else None)  # fmt: skip
    return DoorInfo(door, agent)


def _load_holders(
    session: Session,
    site: _SiteRow,
    start: datetime,
    end: datetime,
    *,
    token: str | None = None,
) -> dict[str, Holder]:
    """The badges under the site's key (only `token`'s when given), with their members' facts.

    Bookings and day passes are those that may open the site's doors in `[start, end)`.
    Six queries whatever the number of badges.
    """
    badge_query = (
        sa.select(m.BadgeRow.token, m.BadgeRow.status, m.BadgeRow.member_id, m.MemberRow.active)
        .join(m.MemberRow, m.MemberRow.id == m.BadgeRow.member_id)
        .where(m.BadgeRow.key_id == site.key_id)
    )
    if token is not None:
        badge_query = badge_query.where(m.BadgeRow.token == token)
    badges = session.execute(badge_query).all()
    if not badges:
        return {}
    if token is not None:
        members: Sequence[int] | sa.Select[Any] = [badges[0].member_id]
    else:
        members = sa.select(m.BadgeRow.member_id).where(m.BadgeRow.key_id == site.key_id)

    spans: dict[int, list[MembershipSpan]] = defaultdict(list)
    plans: dict[int, Plan] = {}
    rows = session.execute(
        sa.select(
            m.MembershipRow.member_id,
            m.MembershipRow.starts_at,
            m.MembershipRow.ends_at,
            m.PlanRow.id,
            m.PlanRow.schedule,
            m.PlanRow.booking_only,
        )
        .join(m.PlanRow, m.PlanRow.id == m.MembershipRow.plan_id)
        .where(m.MembershipRow.member_id.in_(members))
    ).all()
    if rows:
        plan_sites: dict[int, set[str]] = defaultdict(set)
        for plan_id, slug in session.execute(
            sa.select(m.plan_sites.c.plan_id, m.SiteRow.slug)
            .join(m.SiteRow, m.SiteRow.id == m.plan_sites.c.site_id)
            .where(m.plan_sites.c.plan_id.in_({r.id for r in rows}))
        ):
            plan_sites[plan_id].add(slug)
        for row in rows:
            if row.id not in plans:
                schedule = plan_schedule(row.schedule, booking_only=row.booking_only)
                plans[row.id] = Plan(str(row.id), frozenset(plan_sites[row.id]), schedule)
            spans[row.member_id].append(MembershipSpan(row.starts_at, row.ends_at, plans[row.id]))
    # A guest's invitation is a membership of its own for the day (`access.guests`).
    for member_id, windows in load_guest_windows(session, site_id=site.id, site=site.site,
                                                 members=members, start=start,
                                                 end=end).items():  # fmt: skip
        guest = guest_plan(site.site.id)
        spans[member_id] += [MembershipSpan(opens, closes, guest) for opens, closes in windows]

    bookings: dict[int, list[Booking]] = defaultdict(list)
    for row in session.execute(
        sa.select(
            m.BookingRow.member_id,
            m.BookingRow.starts_at,
            m.BookingRow.ends_at,
            m.BookingRow.grace_before,
            m.BookingRow.grace_after,
        ).where(
            m.BookingRow.site_id == site.id,
            m.BookingRow.status.in_(DOOR_OPENING),
            m.BookingRow.member_id.in_(members),
            m.BookingRow.ends_at > start - MAX_GRACE,
            m.BookingRow.starts_at < end + MAX_GRACE,
        )
    ):
        bookings[row.member_id].append(
            Booking(
                site.site.id,
                row.starts_at,
                row.ends_at,
                timedelta(minutes=row.grace_before),
                timedelta(minutes=row.grace_after),
            )
        )

    first_day = start.astimezone(site.site.tz).date() - timedelta(days=1)
    last_day = end.astimezone(site.site.tz).date() + timedelta(days=1)
    passes: dict[int, list[DayPass]] = defaultdict(list)
    for member_id, day in session.execute(
        sa.select(m.DayPassRow.member_id, m.DayPassRow.day).where(
            m.DayPassRow.site_id == site.id,
            m.DayPassRow.member_id.in_(members),
            m.DayPassRow.day >= first_day,
            m.DayPassRow.day <= last_day,
        )
    ):
        passes[member_id].append(DayPass(site.site.id, day))

    return {
        row.token: Holder(
            badge=Badge(row.token, BadgeStatus(row.status.value)),
            member_id=row.member_id,
            active=row.active,
            memberships=tuple(spans[row.member_id]),
            bookings=tuple(bookings[row.member_id]),
            day_passes=tuple(passes[row.member_id]),
        )
        for row in badges
    }


def load_access_facts(  # noqa: PLR0917 - the order a tap's topic reads in
    session: Session, site_slug: str, agent_slug: str, door_slug: str, token: str, now: datetime
) -> AccessFacts:
    """The facts for one tap, read from SQL for this token only (about eight small queries).

    NotFound when the site does not exist or the door is not one `agent_slug` drives.
    """
    site = _load_site(session, site_slug)
    row = session.execute(_door_query(site).where(m.DoorRow.slug == door_slug)).one_or_none()
    info = None if row is None else _door_info(site, row)
    if info is None or info.agent != agent_slug:
        raise NotFound("Door", f"{site_slug}/{agent_slug}/{door_slug}")
    holder = _load_holders(session, site, now, now, token=token).get(token)
    facts = None if holder is None else holder.facts_at(site_slug, now)
    return AccessFacts(site.site, info.door, facts)


def load_site_snapshot(
    session: Session, site_slug: str, start: datetime, end: datetime
) -> SiteSnapshot:
    """The whole site as values, for instants in `[start, end)`: about eight queries."""
    site = _load_site(session, site_slug)
    agents = session.scalars(
        sa.select(m.AgentRow.slug).where(m.AgentRow.site_id == site.id).order_by(m.AgentRow.slug)
    ).all()
    doors = {
        info.door.id: info
        for info in (_door_info(site, r) for r in session.execute(_door_query(site)))
    }
    holders = _load_holders(session, site, start, end)
    return SiteSnapshot(site.site, tuple(agents), doors, holders, start, end)


def load_allowlist_inputs(
    session: Session, site_slug: str, agent_slug: str, start: datetime, end: datetime
) -> AllowlistInputs:
    """What agent `agent_slug`'s allow-list over `[start, end)` is made of; NotFound: no agent."""
    snapshot = load_site_snapshot(session, site_slug, start, end)
    if agent_slug not in snapshot.agents:
        raise NotFound("Agent", f"{site_slug}/{agent_slug}")
    return snapshot.allowlist_inputs(agent_slug)


def load_last_direction(
    session: Session, site_slug: str, door_slug: str, member_id: int, since: datetime
) -> Direction | None:
    """The member's last recorded direction through a door since `since` (anti-passback state).

    The registry has no notion of a door's area, so the area is the door itself. From the
    audit log's allowed decisions: an `exit` went out, any other allowed tap in.
    """
    reason = session.scalars(
        sa.select(m.AuditRow.reason)
        .where(
            m.AuditRow.site == site_slug,
            m.AuditRow.door == door_slug,
            m.AuditRow.member_id == member_id,
            m.AuditRow.kind == AuditKind.DECISION,
            m.AuditRow.allowed.is_(True),
            m.AuditRow.decided_at >= since,
        )
        .order_by(m.AuditRow.id.desc())
        .limit(1)
    ).first()
    if reason is None:
        return None
    return Direction.OUT if reason == "exit" else Direction.IN


# --- the cache ---------------------------------------------------------------------------


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    """Taps read from SQL because the site had no fresh snapshot."""
    builds: int = 0
    discarded: int = 0
    """Builds thrown away because the site changed while they ran."""
    failures: int = 0


@dataclass
class _SiteState:
    generation: int = 0
    snapshot: SiteSnapshot | None = None
    queued: bool = False
    """Waiting for the builder, or being built."""


@dataclass
class FactsCache:
    """Door facts per site from an in-memory snapshot, rebuilt in the background on change.

    Thread-safe: taps may come from any thread. `start()` runs the builder thread; without
    it (or before it) every tap reads SQL. The module docstring has the design.
    """

    sessions: sessionmaker[Session]
    max_age: timedelta = timedelta(minutes=5)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    stats: CacheStats = field(default_factory=CacheStats)
    _sites: dict[str, _SiteState] = field(default_factory=dict, init=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, init=False)
    _queue: list[str] = field(default_factory=list, init=False)
    _stopping: bool = field(default=False, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._build_loop, name="facts-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def access_facts(
        self, site: str, agent: str, door: str, token: str, now: datetime
    ) -> AccessFacts:
        """The facts for a tap; NotFound when the site or the agent's door does not exist."""
        with self._lock:
            state = self._sites.setdefault(site, _SiteState())
            snapshot = state.snapshot
            fresh = snapshot is not None and snapshot.serves(now)
            if fresh:
                assert snapshot is not None  # noqa: S101 - for mypy, `fresh` says so
                if now - snapshot.start > self.max_age:
                    self._enqueue(site, state)  # still valid: serve it while the next is built
            else:
                state.snapshot = None
                self._enqueue(site, state)
        if snapshot is not None and fresh:
            self.stats.hits += 1
            return snapshot.access_facts(agent, door, token, now)
        self.stats.misses += 1
        with self.sessions.begin() as session:
            return load_access_facts(session, site, agent, door, token, now)

    def snapshot(self, site: str) -> SiteSnapshot | None:
        """The site's current snapshot, if one is installed."""
        with self._lock:
            state = self._sites.get(site)
            return None if state is None else state.snapshot

    def invalidate(self, site: str) -> None:
        """The registry of `site` changed: drop its snapshot now, rebuild it in the background."""
        with self._lock:
            state = self._sites.get(site)
            if state is None:
                return  # never asked about: nothing cached
            state.generation += 1
            state.snapshot = None
            self._enqueue(site, state)

    def site_changed(self, site: str) -> None:
        """`RegistryListener`: same as `invalidate`."""
        self.invalidate(site)

    def _enqueue(self, site: str, state: _SiteState) -> None:
        if not state.queued and self._thread is not None:
            state.queued = True
            self._queue.append(site)
            self._lock.notify_all()

    def _build_loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._stopping or bool(self._queue))
                if self._stopping:
                    return
                site = self._queue.pop(0)
                generation = self._sites[site].generation
            # `queued` stays set while building: taps meanwhile read SQL, and do not queue
            # a second build of the same thing.
            self._build(site, generation)

    def _build(self, site: str, generation: int) -> None:
        now = self.clock()
        try:
            with self.sessions.begin() as session:
                # Serves taps for max_age, then the next build takes over; a margin for a
                # build that comes late.
                snapshot = load_site_snapshot(session, site, now, now + 2 * self.max_age)
        except NotFound:
            snapshot = None
            log.info("no site %r: nothing to cache", site)
        except Exception:
            snapshot = None
            self.stats.failures += 1
            log.exception("loading the door facts of site %s failed; taps read SQL", site)
        with self._lock:
            state = self._sites[site]
            state.queued = False
            if snapshot is None:
                return
            if state.generation != generation:
                self.stats.discarded += 1
                self._enqueue(site, state)
                return
            state.snapshot = snapshot
            self.stats.builds += 1
        log.debug("door facts of site %s cached: %d badges", site, len(snapshot.holders))


def with_direction(facts: AccessFacts, direction: Direction | None) -> AccessFacts:
    """`facts` with the holder's anti-passback state set to `direction`."""
    if facts.holder is None:
        return facts
    return replace(facts, holder=replace(facts.holder, last_direction=direction))


def local_midnight(site: Site, now: datetime) -> datetime:
    """The start of the site's local day containing `now`, in UTC (anti-passback resets then)."""
    day: date = now.astimezone(site.tz).date()
    return local_day(day, site.tz)[0]
