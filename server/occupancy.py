"""Desk sessions in SQL, and bookings meeting reality: the pure rules of
`ruche.server.sessions` over stored events.

`refresh_site` recomputes one site's sessions from its stored presence and desk-badge
events, attributes them (desk badge, else booking, else nobody), replaces the site's
rows, and releases the bookings nobody turned up for (no presence at the desk by the
booking's start plus the site's no-show minutes), all in one transaction. Sessions
depend only on the set of events, so running it again (or after late events arrive)
gives the same rows: idempotent by construction. `OccupancyWorker` runs it for every
site periodically in `ruche server run`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Channel, DeskBadge, Presence, decode_payload
from ruche.server.models import (
    Agent,
    Badge,
    Booking,
    BookingStatus,
    Desk,
    DeskSessionRow,
    Site,
    StoredEvent,
)
from ruche.server.ports import RegistryListener
from ruche.server.sessions import (
    BookingSpan,
    DeskEvent,
    attribute,
    derive_desk_sessions,
    no_shows,
)

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=15)
"""A session whose sensor has said nothing for this long closes at its last evidence:
about three of the agent's default heartbeats (5 minutes)."""
STUCK_AFTER = timedelta(hours=12)
"""A desk occupied longer than this without a break is suspect (a sensor stuck)."""


def load_desk_events(session: Session, site: str) -> list[DeskEvent]:
    """The site's stored presence and desk-badge events, as the rules' values."""
    rows = session.execute(
        select(StoredEvent.agent, StoredEvent.device, StoredEvent.channel, StoredEvent.payload)
        .where(StoredEvent.site == site)
        .where(StoredEvent.channel.in_([Channel.PRESENCE.value, Channel.DESK_BADGE.value]))
    ).all()
    events: list[DeskEvent] = []
    for agent, desk, channel, raw in rows:
        payload = decode_payload(Channel(channel), raw.encode())
        if isinstance(payload, Presence):
            events.append(DeskEvent.from_presence(site, agent, desk, payload))
        elif isinstance(payload, DeskBadge):
            events.append(DeskEvent.from_badge(site, agent, desk, payload))
    return events


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


@dataclass(frozen=True)
class SiteRefresh:
    """What one refresh did."""

    sessions: int
    released: tuple[int, ...]
    """Ids of the bookings released as no-shows."""


def refresh_site(
    session: Session,
    site: str,
    *,
    now: datetime,
    stale_after: timedelta = STALE_AFTER,
    stuck_after: timedelta = STUCK_AFTER,
) -> SiteRefresh:
    """Recompute the site's desk sessions and release its no-shows, in the caller's
    transaction."""
    events = load_desk_events(session, site)
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
    session.execute(delete(DeskSessionRow).where(DeskSessionRow.site == site))
    session.add_all(
        DeskSessionRow(
            site=a.session.desk[0],
            agent=a.session.desk[1],
            desk=a.session.desk[2],
            opened_seq=a.session.opened_seq,
            start=a.session.start,
            end=a.session.end,
            closed_by=a.session.closed_by,
            suspect=a.session.suspect,
            reason=a.session.reason,
            member_id=a.member,
            attributed_by=a.attributed_by,
            booking_id=a.booking_id,
        )
        for a in attributed
    )
    grace = session.scalar(select(Site.no_show_minutes).where(Site.slug == site)) or 0
    booked = load_desk_bookings(session, site, only=BookingStatus.BOOKED)
    released = tuple(no_shows(booked, sessions, grace_minutes=grace, now=now))
    if released:
        session.execute(
            update(Booking).where(Booking.id.in_(released)).values(status=BookingStatus.NO_SHOW)
        )
    session.flush()
    return SiteRefresh(sessions=len(attributed), released=released)


class OccupancyWorker:
    """Refreshes every site's sessions and no-shows every `interval` seconds.

    Released bookings change who may open the doors, so the listener (the allow-list
    publisher and the decision cache) hears about the site.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        listener: RegistryListener | None = None,
        interval: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.refreshes = 0
        self.failures = 0
        self.listener = listener
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:  # noqa: ARG002 - same shape as the others
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="occupancy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def refresh_all(self) -> None:
        with self.sessions() as session:
            sites = list(session.scalars(select(Site.slug)))
        for site in sites:
            try:
                with self.sessions.begin() as session:
                    result = refresh_site(session, site, now=self._clock())
            except Exception:
                self.failures += 1
                log.exception("refreshing occupancy at %s failed; retrying next round", site)
                continue
            self.refreshes += 1
            if result.released:
                log.info("site %s: bookings %s released as no-shows", site, list(result.released))
                if self.listener is not None:
                    self.listener.site_changed(site)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.refresh_all()
