"""Desk sessions in SQL, and bookings meeting reality: the pure rules of
`ruche.server.occupancy.sessions` over stored events.

`refresh_site` recomputes one site's sessions from its stored presence and desk-badge
events, attributes them (desk badge, else booking, else nobody), recomputes the site's
door visits from its stored taps and their decisions, replaces the site's rows, and
releases the bookings nobody turned up for (no presence at the desk by the booking's
start plus the site's no-show minutes), all in one transaction. Sessions and visits
depend only on the set of events and decisions, so running it again (or after late
events arrive) gives the same rows: idempotent by construction. `OccupancyWorker` runs
it for every site periodically in `ruche server run`.

Which taps were granted: an agent that decided offline reports an `offline_decision`
event naming the tap (`tap_seq`), and the door did what that said, so it wins;
otherwise the server's online decision in the audit log (`agent_seq` is the tap's seq).
A tap with neither yet (its decision row is a few milliseconds behind it, or the
offline decision is still in the agent's outbox) is not a granted entry until the next
refresh finds its decision. Exits count whatever was decided: the handle lets people out.

The read side (the API's booked-vs-used views and utilisation) loads what it needs here
too, as the pure modules' values: `unused_bookings`, `unbooked_sessions` and
`utilisation_inputs`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Channel, DeskBadge, OfflineDecision, PresenceState, Tap, decode_payload
from ruche.server.access.facts import direction_of, schedule_of
from ruche.server.occupancy.sessions import (
    AttributedBy,
    AttributedSession,
    BookingSpan,
    DeskEvent,
    DeskKey,
    DeskSession,
    Direction,
    DoorTap,
    EventKind,
    SessionClose,
    Visit,
    attribute,
    booked_unused,
    derive_desk_sessions,
    derive_visits,
    no_shows,
    used_unbooked,
)
from ruche.server.occupancy.utilisation import DeskBooking, DeskPlace, DeskTime, Opening, VisitTime
from ruche.server.registry.listener import RegistryListener
from ruche.server.storage.db import READ_ONLY, make_engine, make_sessions
from ruche.server.storage.models import (
    Agent,
    AuditKind,
    AuditRow,
    AuditSource,
    Badge,
    Base,
    Booking,
    BookingStatus,
    Desk,
    DeskSessionRow,
    OccupancyDirty,
    Site,
    StoredEvent,
    VisitRow,
    Zone,
)
from ruche.server.timeseries.points import ChartedBooking, PointWriter, booking_point
from ruche.stoppable import StoppableThread

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=15)
"""A session whose sensor has said nothing for this long closes at its last evidence:
about three of the agent's default heartbeats (5 minutes)."""
STUCK_AFTER = timedelta(hours=12)
"""A desk occupied longer than this without a break is suspect (a sensor stuck)."""
MAX_VISIT = timedelta(hours=12)
"""A visit with no exit tap and no desk evidence ends this long after its entry."""
BADGE_WINDOW = timedelta(minutes=10)
"""How long before a session a desk badge check-in still attributes it (`attribute`)."""
VISIT_MERGE = timedelta(minutes=5)
"""Entry taps this close together make one visit (`derive_visits`)."""
DECISION_LATENCY = timedelta(minutes=10)
"""How long after its tap an online decision may reach the audit log (it is queued)."""
DECISION_SLACK = timedelta(hours=1)
"""A tap's decision is looked for this far before the tap (clocks of agent and server)."""
FULL_REFRESH_EVERY = timedelta(hours=1)
"""The worker recomputes a site whole this often, and incrementally in between: a
booking made after the fact (which attribution reads) is taken in within the hour."""
REFRESH_NICENESS = 19
"""How much lower the refresh process's CPU priority is than the server's (see
`_in_background`)."""
BOOKING_LOOKBACK = timedelta(days=7)
"""How far back a refresh charts started bookings (`booking` points): a server stopped
for longer leaves the bookings of the gap out of the dashboards; SQL keeps them all."""


@dataclass(frozen=True)
class DeskWindow:
    """Which desks a refresh recomputes, each from when: `base` for every desk (None:
    none by default), earlier for a desk whose stored session reaches back further."""

    base: datetime | None
    anchors: dict[tuple[str, str], datetime]
    """(agent, desk) -> the start of its stored session that is open or reaches `base`."""

    def cut(self, agent: str, desk: str) -> datetime | None:
        anchor = self.anchors.get((agent, desk))
        if anchor is None:
            return self.base
        return anchor if self.base is None else min(anchor, self.base)

    @property
    def lowest(self) -> datetime | None:
        cuts = [*self.anchors.values(), *([self.base] if self.base is not None else [])]
        return min(cuts) if cuts else None


def load_desk_events(
    session: Session, site: str, window: DeskWindow | None = None
) -> list[DeskEvent]:
    """The site's stored presence and desk-badge events, as the rules' values; with a
    window, only the presence each desk's cut lets in, and the badges that may attribute
    it (`badge_window` earlier)."""
    e = cast(sa.Table, StoredEvent.__table__).c
    # Presence is built from columns: decoding each payload again cost more than all the
    # rest of a refresh, and a busy site stores hundreds of thousands between refreshes.
    # Only a badge's token needs its payload.
    query = (
        select(e.agent, e.device, e.channel, e.seq, e.ts, e.kind, _heartbeat(session), e.payload)
        .where(e.site == site)
        .where(e.channel.in_([Channel.PRESENCE.value, Channel.DESK_BADGE.value]))
    )
    if window is None:
        rows = list(session.connection().execute(query))
    else:
        # Badges attribute sessions at their own desk only, so each desk's events from its
        # cut less the badge window are all it needs.
        rows = []
        if window.base is not None:
            rows += session.connection().execute(query.where(e.ts >= window.base - BADGE_WINDOW))
        for (agent, desk), anchor in sorted(window.anchors.items()):
            if window.base is not None and anchor >= window.base:
                continue
            earlier = query.where(e.agent == agent, e.device == desk)
            earlier = earlier.where(e.ts >= anchor - BADGE_WINDOW)
            if window.base is not None:
                earlier = earlier.where(e.ts < window.base - BADGE_WINDOW)
            rows += session.connection().execute(earlier)
    kinds = {
        (PresenceState.OCCUPIED.value, False): EventKind.OCCUPIED,
        (PresenceState.VACANT.value, False): EventKind.VACANT,
        (PresenceState.OCCUPIED.value, True): EventKind.HEARTBEAT_OCCUPIED,
        (PresenceState.VACANT.value, True): EventKind.HEARTBEAT_VACANT,
    }
    events: list[DeskEvent] = []
    presence = Channel.PRESENCE.value
    for agent, desk, channel, seq, ts, kind, heartbeat, raw in rows:
        if channel == presence:
            cut = None if window is None else window.cut(agent, desk)
            if window is not None and (cut is None or ts < cut):
                continue
            events.append(DeskEvent((site, agent, desk), seq, ts, kinds[kind, bool(heartbeat)]))
            continue
        payload = decode_payload(Channel.DESK_BADGE, raw.encode())
        if isinstance(payload, DeskBadge):
            events.append(DeskEvent.from_badge(site, agent, desk, payload))
    return events


def _heartbeat(session: Session) -> sa.ColumnElement[object]:
    """Whether a stored event's payload says `"heartbeat": true`, read by the database
    (the contract's strict JSON boolean; absent is false)."""
    payload = cast(sa.Table, StoredEvent.__table__).c.payload
    if session.get_bind().dialect.name == "postgresql":
        flag: sa.ColumnElement[object] = sa.cast(payload, JSONB)["heartbeat"].as_boolean()
        return flag
    return sa.func.json_extract(payload, "$.heartbeat")


def load_desk_bookings(
    session: Session, site: str, *, only: BookingStatus | None = None
) -> list[BookingSpan]:
    """The site's desk bookings that were not cancelled (or of status `only`)."""
    rows = session.execute(
        select(
            Booking.id, Booking.member_id, Booking.starts_at, Booking.ends_at, Agent.slug, Desk.slug
        )
        .join(Desk, Desk.id == Booking.desk_id)
        .join(Agent, Agent.id == Desk.agent_id)
        .join(Site, Site.id == Booking.site_id)
        .where(Site.slug == site)
        .where(Booking.status == only if only else Booking.status != BookingStatus.CANCELLED)
    ).all()
    return [
        BookingSpan(id=booking_id, desk=(site, agent, desk), member=member, start=start, end=end)
        for booking_id, member, start, end, agent, desk in rows
    ]


def load_tap_decisions(
    session: Session, site: str, *, since: datetime | None = None
) -> dict[tuple[str, int], bool]:
    """Whether each decided tap of the site was granted, keyed by the tap's `(agent, seq)`
    (with `since`: the taps from then on, with an hour's slack for clocks)."""
    query = (
        select(AuditRow.agent, AuditRow.agent_seq, AuditRow.allowed)
        .where(AuditRow.site == site)
        .where(AuditRow.kind == AuditKind.DECISION)
        .where(AuditRow.source == AuditSource.ONLINE)
        .where(AuditRow.agent_seq.is_not(None))
    )
    offline_query = (
        select(StoredEvent.agent, StoredEvent.payload)
        .where(StoredEvent.site == site)
        .where(StoredEvent.channel == Channel.DOOR_EVENT.value)
        .where(StoredEvent.kind == "offline_decision")
    )
    if since is not None:
        query = query.where(AuditRow.decided_at >= since - DECISION_SLACK)
        offline_query = offline_query.where(StoredEvent.ts >= since - DECISION_SLACK)
    online = session.execute(query).all()
    decided = {
        (agent, seq): bool(allowed)
        for agent, seq, allowed in online
        if agent is not None and seq is not None
    }
    offline = session.execute(offline_query).all()
    for agent, raw in offline:
        payload = decode_payload(Channel.DOOR_EVENT, raw.encode())
        if isinstance(payload, OfflineDecision):
            # The door did what the agent decided, whatever the server said too late.
            decided[(agent, payload.tap_seq)] = payload.allowed
    return decided


def load_door_taps(
    session: Session, site: str, members: dict[str, int], *, since: datetime | None = None
) -> list[DoorTap]:
    """The site's stored taps by known badges, each with its member, direction and decision.

    Taps by a token no badge holds are left out: there is nobody to give the visit to.
    """
    decided = load_tap_decisions(session, site, since=since)
    query = (
        select(StoredEvent.agent, StoredEvent.payload)
        .where(StoredEvent.site == site)
        .where(StoredEvent.channel == Channel.TAP.value)
    )
    if since is not None:
        query = query.where(StoredEvent.ts >= since)
    rows = session.execute(query).all()
    taps: list[DoorTap] = []
    for agent, raw in rows:
        payload = decode_payload(Channel.TAP, raw.encode())
        if not isinstance(payload, Tap) or payload.token not in members:
            continue
        direction = Direction(direction_of(payload.reader).value)
        taps.append(
            DoorTap(
                site=site,
                agent=agent,
                seq=payload.seq,
                ts=payload.ts,
                member=members[payload.token],
                direction=direction,
                allowed=decided.get((agent, payload.seq), False),
            )
        )
    return taps


@dataclass(frozen=True)
class SiteRefresh:
    """What one refresh did."""

    sessions: int
    released: tuple[int, ...]
    """Ids of the bookings released as no-shows."""
    visits: int = 0


def refresh_site(
    session: Session,
    site: str,
    *,
    now: datetime,
    stale_after: timedelta = STALE_AFTER,
    stuck_after: timedelta = STUCK_AFTER,
    max_visit: timedelta = MAX_VISIT,
    full: bool = True,
) -> SiteRefresh:
    """Recompute the site's desk sessions and door visits and release its no-shows, in the
    caller's transaction: `plan_refresh` then `apply_refresh`.

    `full=False` recomputes only what events stored since the last refresh can change
    (from their earliest time, less the margins the rules look back over, extended to
    the start of any stored session or visit reaching that far) and what time alone
    changes (open sessions and visits). The rows are the same as a full refresh's.
    """
    plan = plan_refresh(
        session, site, now=now, stale_after=stale_after, stuck_after=stuck_after,
        max_visit=max_visit, full=full,
    )  # fmt: skip
    return apply_refresh(session, plan)


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh will write, worked out from a read of the site (`plan_refresh`)."""

    site: str
    mark: tuple[datetime, int] | None
    """The site's dirty mark (since, version) as the plan read it."""
    desks: DeskWindow | None
    """None: every desk, whole."""
    sessions: list[AttributedSession]
    visit_cut: datetime | None
    """None: every visit."""
    visits: list[Visit]
    released: tuple[int, ...]


def plan_refresh(
    session: Session,
    site: str,
    *,
    now: datetime,
    stale_after: timedelta = STALE_AFTER,
    stuck_after: timedelta = STUCK_AFTER,
    max_visit: timedelta = MAX_VISIT,
    full: bool = True,
) -> RefreshPlan:
    """Read what the refresh needs and apply the rules; writes nothing, so the worker runs
    it outside the write transaction (on SQLite, with no write lock held)."""
    mark = _read_mark(session, site)
    dirty = None if mark is None else mark[0]
    desks = None if full else _desk_window(session, site, dirty, stale_after)
    events = load_desk_events(session, site, desks)
    sessions = derive_desk_sessions(
        [e for e in events if e.token is None],
        now=now,
        stale_after=stale_after,
        stuck_after=stuck_after,
    )
    members = dict(session.execute(select(Badge.token, Badge.member_id)).all())
    attributed = attribute(
        sessions,
        [e for e in events if e.token is not None],
        load_desk_bookings(session, site),
        members=members,
        now=now,
    )
    visit_cut = (
        None
        if desks is None
        else _visit_cut(session, site, dirty, now, sessions_from=desks.lowest, max_visit=max_visit)
    )
    reaching = (
        attributed
        if visit_cut is None or desks is None
        else _sessions_after(session, site, desks, attributed, visit_cut)
    )
    visits = derive_visits(
        load_door_taps(session, site, members, since=visit_cut),
        max_visit=max_visit,
        now=now,
        sessions=reaching,
    )
    grace = session.scalar(select(Site.no_show_minutes).where(Site.slug == site)) or 0
    booked = load_desk_bookings(session, site, only=BookingStatus.BOOKED)
    if desks is not None and booked:
        earliest = min(b.start for b in booked)
        sessions = [a.session for a in _sessions_after(session, site, desks, attributed, earliest)]
    released = tuple(no_shows(booked, sessions, grace_minutes=grace, now=now))
    return RefreshPlan(site, mark, desks, attributed, visit_cut, visits, released)


def apply_refresh(session: Session, plan: RefreshPlan) -> SiteRefresh:
    """Write a plan in the caller's (short) transaction."""
    site = plan.site
    # One write of a site at a time (the worker's and a manual refresh would both replace
    # the same rows); SQLite's BEGIN IMMEDIATE already serialises writers.
    session.execute(select(Site.id).where(Site.slug == site).with_for_update())
    _settle_mark(session, site, plan.mark)
    _replace_sessions(session, site, plan.desks, plan.sessions)
    stale = delete(VisitRow).where(VisitRow.site == site)
    if plan.visit_cut is not None:
        stale = stale.where(VisitRow.start >= plan.visit_cut)
    session.execute(stale)
    _insert_all(
        session,
        VisitRow,
        [
            {
                "site": v.site,
                "member_id": v.member,
                "entry_agent": v.entry_seqs[0][0],
                "entry_seq": v.entry_seqs[0][1],
                "entries": len(v.entry_seqs),
                "start": v.start,
                "end": v.end,
                "closed_by": v.closed_by,
            }
            for v in plan.visits
        ],
    )
    released: tuple[int, ...] = ()
    if plan.released:
        # Only bookings still held: another refresh, or a person, may have moved them.
        released = tuple(
            session.scalars(
                update(Booking)
                .where(Booking.id.in_(plan.released), Booking.status == BookingStatus.BOOKED)
                .values(status=BookingStatus.NO_SHOW)
                .returning(Booking.id)
            ).all()
        )
    session.flush()
    return SiteRefresh(
        sessions=len(plan.sessions), released=tuple(sorted(released)), visits=len(plan.visits)
    )


def _read_mark(session: Session, site: str) -> tuple[datetime, int] | None:
    row = session.execute(
        select(OccupancyDirty.since, OccupancyDirty.version).where(OccupancyDirty.site == site)
    ).one_or_none()
    return None if row is None else (row[0], int(row[1]))


def _settle_mark(session: Session, site: str, seen: tuple[datetime, int] | None) -> None:
    """Clear the site's mark if it is still the one the plan read; if events were stored
    since (the version moved), keep it, lowered to what the plan read, for the next round."""
    current = session.get(OccupancyDirty, site, with_for_update=True)
    if current is None:
        if seen is not None:  # another refresh took it meanwhile: ours may be older
            session.add(OccupancyDirty(site=site, since=seen[0], version=seen[1]))
        return
    if seen is not None and current.version == seen[1]:
        session.delete(current)
    elif seen is not None and seen[0] < current.since:
        current.since = seen[0]


def _sessions_after(
    session: Session,
    site: str,
    desks: DeskWindow,
    recomputed: list[AttributedSession],
    since: datetime,
) -> list[AttributedSession]:
    """The site's sessions reaching `since`, as they will be once the plan is written:
    the stored ones the plan keeps, and the recomputed ones."""
    kept = []
    for stored in _stored_sessions(session, site, since):
        _, agent, desk = stored.session.desk
        cut = desks.cut(agent, desk)
        if cut is None or stored.session.start < cut:
            kept.append(stored)
    return kept + [a for a in recomputed if a.session.end is None or a.session.end >= since]


def _desk_window(
    session: Session, site: str, dirty: datetime | None, stale_after: timedelta
) -> DeskWindow:
    """From where each desk's sessions must be recomputed.

    New events from `dirty` on can extend a session that ended up to `stale_after`
    before them; a session reaching that far, or still open (time alone may close it),
    is recomputed from its start, so no session is ever cut in two.
    """
    base = None if dirty is None else dirty - stale_after
    reaching: sa.ColumnElement[bool] = DeskSessionRow.end.is_(None)
    if base is not None:
        reaching = sa.or_(reaching, DeskSessionRow.end >= base)
    anchors: dict[tuple[str, str], datetime] = {}
    for agent, desk, start in session.execute(
        select(DeskSessionRow.agent, DeskSessionRow.desk, DeskSessionRow.start)
        .where(DeskSessionRow.site == site)
        .where(reaching)
    ):
        key = (agent, desk)
        anchors[key] = min(start, anchors.get(key, start))
    return DeskWindow(base=base, anchors=anchors)


def _replace_sessions(
    session: Session, site: str, window: DeskWindow | None, attributed: list[AttributedSession]
) -> None:
    if window is None:
        session.execute(delete(DeskSessionRow).where(DeskSessionRow.site == site))
    else:
        if window.base is not None:
            session.execute(
                delete(DeskSessionRow)
                .where(DeskSessionRow.site == site)
                .where(DeskSessionRow.start >= window.base)
            )
        for (agent, desk), anchor in sorted(window.anchors.items()):
            if window.base is None or anchor < window.base:
                session.execute(
                    delete(DeskSessionRow)
                    .where(DeskSessionRow.site == site)
                    .where(DeskSessionRow.agent == agent, DeskSessionRow.desk == desk)
                    .where(DeskSessionRow.start >= anchor)
                )
    _insert_all(
        session,
        DeskSessionRow,
        [
            {
                "site": a.session.desk[0],
                "agent": a.session.desk[1],
                "desk": a.session.desk[2],
                "opened_seq": a.session.opened_seq,
                "start": a.session.start,
                "end": a.session.end,
                "closed_by": a.session.closed_by,
                "suspect": a.session.suspect,
                "reason": a.session.reason,
                "member_id": a.member,
                "attributed_by": a.attributed_by,
                "booking_id": a.booking_id,
            }
            for a in attributed
        ],
    )


def _insert_all(session: Session, model: type[Base], rows: list[dict[str, object]]) -> None:
    """Insert rows in one executemany: the refresh holds the write lock meanwhile, and the
    ORM's unit of work took 2.5 s for a busy site's 30,000 sessions (ingestion waiting)."""
    if rows:
        session.execute(sa.insert(cast(sa.Table, model.__table__)), rows)


def _visit_cut(
    session: Session,
    site: str,
    dirty: datetime | None,
    now: datetime,
    *,
    sessions_from: datetime | None,
    max_visit: timedelta,
) -> datetime:
    """From where visits must be recomputed.

    Changes start at the earliest of: new taps (less `VISIT_MERGE`, as close entries
    merge), recomputed desk sessions (a visit with no exit ends with its member's desk
    evidence), and the last `DECISION_LATENCY` (a tap's online decision reaches the
    audit log a little after the tap, with no new event). A visit is shaped by what
    happens up to `max_visit` after its start, so visits from that much earlier are
    redone, and any visit reaching the cut or still open is redone from its start.
    """
    changes = [now - DECISION_LATENCY]
    if dirty is not None:
        changes.append(dirty - VISIT_MERGE)
    if sessions_from is not None:
        changes.append(sessions_from)
    base = min(changes) - max_visit
    earliest = session.scalar(
        select(sa.func.min(VisitRow.start))
        .where(VisitRow.site == site)
        .where(sa.or_(VisitRow.end.is_(None), VisitRow.end >= base))
    )
    return base if earliest is None else min(base, earliest)


def _stored_sessions(session: Session, site: str, since: datetime) -> list[AttributedSession]:
    """The site's stored sessions reaching `since` or later, as the rules' values."""
    rows = session.scalars(
        select(DeskSessionRow)
        .where(DeskSessionRow.site == site)
        .where(sa.or_(DeskSessionRow.end.is_(None), DeskSessionRow.end >= since))
    )
    return [
        AttributedSession(
            _session_value(site, row, (site, row.agent, row.desk)),
            row.member_id,
            cast("AttributedBy", row.attributed_by),
            booking_id=row.booking_id,
        )
        for row in rows
    ]


# --- the read side: bookings against reality, utilisation --------------------------------


def _desk_key(site: str, desk: str) -> DeskKey:
    # Matched by the desk's id alone: a desk keeps its id when another agent reads it.
    return (site, "", desk)


def _session_value(site: str, row: DeskSessionRow, desk: DeskKey | None = None) -> DeskSession:
    """A stored session as the rules' value; keyed by `desk`, else by the desk's id alone."""
    return DeskSession(
        desk=_desk_key(site, row.desk) if desk is None else desk,
        start=row.start,
        end=row.end,
        opened_seq=row.opened_seq,
        closed_by=cast("SessionClose", row.closed_by),
        suspect=row.suspect,
        reason=row.reason,
    )


def _site_bookings(site: Site) -> sa.Select[Booking, str]:
    """The site's desk bookings that hold their desk (not cancelled), with the desk's id."""
    return (
        select(Booking, Desk.slug)
        .join(Desk, Desk.id == Booking.desk_id)
        .where(Booking.site_id == site.id)
        .where(Booking.status != BookingStatus.CANCELLED)
    )


def _site_sessions(site: Site, start: datetime, end: datetime) -> sa.Select[DeskSessionRow]:
    """The site's desk sessions touching `[start, end]` (an open one reaches to now)."""
    return (
        select(DeskSessionRow)
        .where(DeskSessionRow.site == site.slug)
        .where(DeskSessionRow.start <= end)
        .where(sa.or_(DeskSessionRow.end.is_(None), DeskSessionRow.end >= start))
    )


def unused_bookings(
    session: Session, site: Site, start: datetime, end: datetime, *, now: datetime
) -> list[Booking]:
    """The site's desk bookings starting in `[start, end)` whose desk saw no occupied time
    inside them (`sessions.booked_unused`), in start order."""
    rows = session.execute(
        _site_bookings(site)
        .where(Booking.starts_at >= start, Booking.starts_at < end)
        .order_by(Booking.starts_at, Booking.id)
    ).all()
    if not rows:
        return []
    spans = [
        BookingSpan(b.id, _desk_key(site.slug, desk), b.member_id, b.starts_at, b.ends_at)
        for b, desk in rows
    ]
    desks = sorted({desk for _, desk in rows})
    first, last = min(s.start for s in spans), max(s.end for s in spans)
    around = _site_sessions(site, first, last).where(DeskSessionRow.desk.in_(desks))
    sessions = [_session_value(site.slug, row) for row in session.scalars(around)]
    unused = set(booked_unused(spans, sessions, now=now))
    return [b for b, _ in rows if b.id in unused]


def unbooked_sessions(
    session: Session, site: Site, start: datetime, end: datetime, *, now: datetime
) -> list[DeskSessionRow]:
    """The site's desk sessions starting in `[start, end)` that no booking of their desk
    overlaps (`sessions.used_unbooked`), in start order."""
    rows = list(
        session.scalars(
            select(DeskSessionRow)
            .where(DeskSessionRow.site == site.slug)
            .where(DeskSessionRow.start >= start, DeskSessionRow.start < end)
            .order_by(DeskSessionRow.start, DeskSessionRow.desk, DeskSessionRow.id)
        )
    )
    if not rows:
        return []
    values = [_session_value(site.slug, row) for row in rows]
    reach = max(v.until(now) for v in values)
    bookings = [
        BookingSpan(b.id, _desk_key(site.slug, desk), b.member_id, b.starts_at, b.ends_at)
        for b, desk in session.execute(
            _site_bookings(site)
            .where(Booking.ends_at > min(v.start for v in values))
            .where(Booking.starts_at <= reach)
        )
    ]
    unbooked = used_unbooked(values, bookings, now=now)
    keys = {(v.desk[2], v.opened_seq) for v in unbooked}
    return [row for row in rows if (row.desk, row.opened_seq) in keys]


def opening_of(site: Site) -> Opening:
    """The site's opening hours (business hours when it has none) and its holidays."""
    hours = site.opening_hours or {"kind": "business_hours"}
    schedule = schedule_of(hours, booking_only=False)
    assert schedule is not None  # noqa: S101 - only booking-only plans have none
    return Opening(schedule, site.tzinfo, frozenset(h.day for h in site.holidays))


@dataclass(frozen=True)
class UtilisationInputs:
    """What `utilisation.utilisation` reads about a site over a span, and the desks' and
    zones' row ids, to name them in the answer."""

    desks: list[DeskPlace]
    sessions: list[DeskTime]
    bookings: list[DeskBooking]
    visits: list[VisitTime]
    desk_ids: dict[str, int]
    zone_ids: dict[str, int]


def utilisation_inputs(
    session: Session, site: Site, start: datetime, end: datetime
) -> UtilisationInputs:
    """The site's desks, and its desk sessions, desk bookings and visits touching
    `[start, end)`."""
    places = session.execute(
        select(Desk.id, Desk.slug, Zone.id, Zone.name)
        .join(Zone, Zone.id == Desk.zone_id)
        .where(Desk.site_id == site.id)
        .order_by(Zone.id, Desk.id)
    ).all()
    sessions = [
        DeskTime(row.desk, row.start, row.end, row.suspect)
        for row in session.scalars(_site_sessions(site, start, end))
    ]
    bookings = [
        DeskBooking(desk, b.starts_at, b.ends_at, no_show=b.status is BookingStatus.NO_SHOW)
        for b, desk in session.execute(
            _site_bookings(site).where(Booking.starts_at < end, Booking.ends_at > start)
        )
    ]
    visits = [
        VisitTime(v.member_id, v.start, v.end)
        for v in session.scalars(
            select(VisitRow)
            .where(VisitRow.site == site.slug)
            .where(VisitRow.start < end)
            .where(sa.or_(VisitRow.end.is_(None), VisitRow.end > start))
        )
    ]
    return UtilisationInputs(
        desks=[DeskPlace(desk, zone) for _, desk, _, zone in places],
        sessions=sessions,
        bookings=bookings,
        visits=visits,
        desk_ids={desk: desk_id for desk_id, desk, _, _ in places},
        zone_ids={zone: zone_id for _, _, zone_id, zone in places},
    )


def started_bookings(
    session: Session, site: str, *, since: datetime, now: datetime
) -> list[ChartedBooking]:
    """The site's desk bookings (not cancelled) that started in `[since, now]`, to chart."""
    rows = session.execute(
        select(Booking.id, Booking.starts_at, Booking.ends_at, Booking.status, Desk.slug)
        .join(Desk, Desk.id == Booking.desk_id)
        .join(Site, Site.id == Booking.site_id)
        .where(Site.slug == site)
        .where(Booking.status != BookingStatus.CANCELLED)
        .where(Booking.starts_at >= since, Booking.starts_at <= now)
    ).all()
    return [
        ChartedBooking(id=i, site=site, desk=desk, start=start, end=end, status=status.value)
        for i, start, end, status, desk in rows
    ]


class OccupancyWorker:
    """Refreshes every site's sessions and no-shows every `interval` seconds.

    Released bookings change who may open the doors, so the listener (the allow-list
    publisher and the decision cache) hears about the site. With `points` (the InfluxDB
    writer), each started desk booking is charted as a `booking` point, again whenever
    its status changes.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        listener: RegistryListener | None = None,
        points: PointWriter | None = None,
        interval: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        apart: str | None = None,
    ) -> None:
        """`apart`: a database URL; recompute in a process of its own connected to it
        (spawned on first use), so a long refresh never holds this process's GIL while
        ingestion and the API wait."""
        self.sessions = sessions
        self.points = points
        self._charted: dict[int, ChartedBooking] = {}
        self.refreshes = 0
        self.failures = 0
        self.listener = listener
        self._interval = interval
        self._clock = clock
        self._full_at: dict[str, datetime] = {}
        """When each site was last recomputed whole."""
        self.busy_s = 0.0
        """Seconds spent refreshing, in all."""
        # An in-memory SQLite database lives in this process only.
        self._url = None if apart is None or ":memory:" in apart or apart == "sqlite://" else apart
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._thread = StoppableThread(self._loop, name="occupancy")

    def start(self, timeout: float = 10.0) -> None:  # noqa: ARG002 - same shape as the others
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def refresh_all(self) -> None:
        with self.sessions() as session:
            sites = list(session.scalars(select(Site.slug)))
        for site in sites:
            now = self._clock()
            last_full = self._full_at.get(site)
            full = last_full is None or now - last_full >= FULL_REFRESH_EVERY
            started_at = time.monotonic()
            try:
                result = self._refresh(site, now=now, full=full)
                with self.sessions.begin() as session:
                    started = (
                        []
                        if self.points is None
                        else started_bookings(session, site, since=now - BOOKING_LOOKBACK, now=now)
                    )
            except Exception:
                self.failures += 1
                log.exception("refreshing occupancy at %s failed; retrying next round", site)
                self._reset_pool()
                continue
            finally:
                self.busy_s += time.monotonic() - started_at
            self.refreshes += 1
            if full:
                self._full_at[site] = now
            self._chart(started, now)
            if result.released:
                log.info("site %s: bookings %s released as no-shows", site, list(result.released))
                if self.listener is not None:
                    self.listener.site_changed(site)

    def _chart(self, bookings: list[ChartedBooking], now: datetime) -> None:
        """Write the `booking` points that changed since they were last written (all of
        them after a restart: rewriting a point changes nothing)."""
        if self.points is None:
            return
        fresh = [b for b in bookings if self._charted.get(b.id) != b]
        if fresh:
            try:
                self.points.write([booking_point(b) for b in fresh])
            except Exception:
                self.failures += 1
                log.exception("charting %d bookings failed; retrying next round", len(fresh))
                return
            self._charted.update((b.id, b) for b in fresh)
        horizon = now - BOOKING_LOOKBACK
        self._charted = {i: b for i, b in self._charted.items() if b.start >= horizon}

    def _refresh(self, site: str, *, now: datetime, full: bool) -> SiteRefresh:
        if self._url is None:
            return refresh_in_two(self.sessions, site, now=now, full=full)
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_in_background,
            )
        return self._pool.submit(_refresh_apart, self._url, site, now, full).result()

    def _reset_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _loop(self, stopping: threading.Event) -> None:
        wait = self._interval
        while not stopping.wait(wait):
            before = self.busy_s
            self.refresh_all()
            # Under heavy load a round can take seconds: wait long enough that refreshing
            # keeps to about a fifth of the time, and ingestion to the rest.
            wait = max(self._interval, 4 * (self.busy_s - before))


_ENGINES: dict[str, Engine] = {}


def _in_background() -> None:
    """Make the refresh process yield the CPU to everything else: recomputing sessions
    can wait a few seconds, but while it competed as an equal for a busy machine's
    cores, ingestion fell behind at 10,000 events/s and never caught up. Linux's
    SCHED_IDLE runs it on what the other processes leave (with a small share still, so
    it is never starved outright); elsewhere, the lowest nice level."""
    os.nice(REFRESH_NICENESS)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _refresh_apart(url: str, site: str, now: datetime, full: bool) -> SiteRefresh:  # noqa: FBT001
    """`refresh_site` in the occupancy process (see `OccupancyWorker`'s `apart`)."""
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = make_engine(url)
    return refresh_in_two(make_sessions(engine), site, now=now, full=full)


def refresh_in_two(
    sessions: sessionmaker[Session], site: str, *, now: datetime, full: bool
) -> SiteRefresh:
    """Plan in a read-only transaction, then write in a short one: ingestion (and the API)
    can write all through the planning, which is where the time goes."""
    with sessions() as session:
        session.connection(execution_options=READ_ONLY)
        plan = plan_refresh(session, site, now=now, full=full)
    with sessions.begin() as session:
        return apply_refresh(session, plan)
