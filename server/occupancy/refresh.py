"""Desk sessions in SQL, and bookings meeting reality: the pure rules of
`ruche.server.occupancy.sessions` over stored events.

`refresh_site` recomputes one site's sessions from its stored presence and desk-badge
events, attributes them (desk badge, else booking, else nobody), recomputes the site's
door visits from its stored taps and their decisions, replaces the site's rows, and
releases the bookings nobody turned up for (no presence at the desk by the booking's
start plus the site's no-show minutes), all in one transaction. Sessions and visits
depend only on the set of events and decisions, so running it again (or after late
events arrive) gives the same rows: idempotent by construction.
`ruche.server.occupancy.worker.OccupancyWorker` runs it for every site periodically in
`ruche server run`; `refresh_in_two` plans in a read-only transaction and writes in a
short one. What it reads comes through `loaders`, its parameters from `limits`.

Which taps were granted: an agent that decided offline reports an `offline_decision`
event naming the tap (`tap_seq`), and the door did what that said, so it wins;
otherwise the server's online decision in the audit log (`agent_seq` is the tap's seq).
A tap with neither yet (its decision row is a few milliseconds behind it, or the
offline decision is still in the agent's outbox) is not a granted entry until the next
refresh finds its decision. Exits count whatever was decided: the handle lets people out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.occupancy.limits import (
    DECISION_LATENCY,
    MAX_VISIT,
    STALE_AFTER,
    STUCK_AFTER,
    VISIT_MERGE,
)
from ruche.server.occupancy.loaders import (
    DeskWindow,
    load_checkins,
    load_desk_bookings,
    load_desk_events,
    load_door_taps,
    session_value,
)
from ruche.server.occupancy.sessions import (
    AttributedBy,
    AttributedSession,
    Visit,
    attribute,
    derive_desk_sessions,
    derive_visits,
    no_shows,
    reclaims,
)
from ruche.server.storage.db import READ_ONLY
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import (
    BadgeRow,
    Base,
    BookingRow,
    DeskRow,
    DeskSessionRow,
    OccupancyDirtyRow,
    SiteRow,
    VisitRow,
    ZoneRow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteRefresh:
    """What one refresh did."""

    sessions: int
    released: tuple[int, ...]
    """Ids of the bookings released as no-shows."""
    visits: int = 0
    reclaimed: tuple[int, ...] = ()
    """Ids of no-show bookings given back to members who came after all."""


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
    reclaimed: tuple[int, ...] = ()
    """No-show bookings whose member came back to a desk still free (`reclaims`)."""


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
    members = dict(session.execute(select(BadgeRow.token, BadgeRow.member_id)).all())
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
    grace = session.scalar(select(SiteRow.no_show_minutes).where(SiteRow.slug == site)) or 0
    booked = load_desk_bookings(session, site, only=BookingStatus.BOOKED)
    if desks is not None and booked:
        earliest = min(b.start for b in booked)
        sessions = [a.session for a in _sessions_after(session, site, desks, attributed, earliest)]
    late = no_shows(booked, sessions, grace_minutes=grace, now=now)
    released_before = load_desk_bookings(session, site, only=BookingStatus.NO_SHOW,
                                         ending_after=now)  # fmt: skip
    judged = [b for b in booked if b.id in set(late)] + released_before
    back: set[int] = set()
    if judged:
        earliest = min(b.start for b in judged)
        around = (attributed if desks is None
                  else _sessions_after(session, site, desks, attributed, earliest))  # fmt: skip
        scanned = load_checkins(session, site, since=earliest)
        back = set(reclaims(judged, booked, [*around, *scanned], now=now))
    # A member late past the grace whose desk is still free keeps it: never released, or
    # given back if an earlier round released it.
    released = tuple(i for i in late if i not in back)
    reclaimed = tuple(sorted(b.id for b in released_before if b.id in back))
    return RefreshPlan(site, mark, desks, attributed, visit_cut, visits, released, reclaimed)


def apply_refresh(session: Session, plan: RefreshPlan) -> SiteRefresh:
    """Write a plan in the caller's (short) transaction."""
    site = plan.site
    # One write of a site at a time (the worker's and a manual refresh would both replace
    # the same rows); SQLite's BEGIN IMMEDIATE already serialises writers.
    session.execute(select(SiteRow.id).where(SiteRow.slug == site).with_for_update())
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
                update(BookingRow)
                .where(BookingRow.id.in_(plan.released), BookingRow.status == BookingStatus.BOOKED)
                .values(status=BookingStatus.NO_SHOW)
                .returning(BookingRow.id)
            ).all()
        )
    reclaimed = _reclaim(session, plan.reclaimed)
    session.flush()
    return SiteRefresh(
        sessions=len(plan.sessions), released=tuple(sorted(released)), visits=len(plan.visits),
        reclaimed=reclaimed,
    )  # fmt: skip


def _reclaim(session: Session, ids: tuple[int, ...]) -> tuple[int, ...]:
    """Give no-show bookings back to their members, each only if it is still a no-show
    and no booking of its desk was made meanwhile: under its zone's lock, the one
    `registry.book` takes, so a booking being made now and a reclaim never both win."""
    done: list[int] = []
    for booking in session.scalars(
        select(BookingRow).where(BookingRow.id.in_(ids)).order_by(BookingRow.id)
    ):
        if booking.status is not BookingStatus.NO_SHOW or booking.desk_id is None:
            continue
        zone = select(DeskRow.zone_id).where(DeskRow.id == booking.desk_id).scalar_subquery()
        session.execute(select(ZoneRow.id).where(ZoneRow.id == zone).with_for_update())
        clash = session.scalar(
            select(BookingRow.id)
            .where(
                BookingRow.id != booking.id,
                BookingRow.status == BookingStatus.BOOKED,
                BookingRow.starts_at < booking.ends_at,
                BookingRow.ends_at > booking.starts_at,
                sa.or_(BookingRow.desk_id == booking.desk_id, BookingRow.zone_id == zone),
            )
            .limit(1)
        )
        if clash is None:
            booking.status = BookingStatus.BOOKED
            done.append(booking.id)
    return tuple(done)


def _read_mark(session: Session, site: str) -> tuple[datetime, int] | None:
    row = session.execute(
        select(OccupancyDirtyRow.since, OccupancyDirtyRow.version).where(
            OccupancyDirtyRow.site == site
        )
    ).one_or_none()
    return None if row is None else (row[0], int(row[1]))


def _settle_mark(session: Session, site: str, seen: tuple[datetime, int] | None) -> None:
    """Clear the site's mark if it is still the one the plan read; if events were stored
    since (the version moved), keep it, lowered to what the plan read, for the next round."""
    current = session.get(OccupancyDirtyRow, site, with_for_update=True)
    if current is None:
        if seen is not None:  # another refresh took it meanwhile: ours may be older
            session.add(OccupancyDirtyRow(site=site, since=seen[0], version=seen[1]))
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
            session_value(site, row, (site, row.agent, row.desk)),
            row.member_id,
            cast("AttributedBy", row.attributed_by),
            booking_id=row.booking_id,
        )
        for row in rows
    ]


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
