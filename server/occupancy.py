"""Desk sessions in SQL: the pure rules of `ruche.server.sessions` over stored events.

`refresh_desk_sessions` recomputes one site's sessions from its stored presence and
desk-badge events, attributes them (desk badge, else booking, else nobody), and
replaces the site's rows in one transaction. Sessions depend only on the set of
events, so running it again (or after late events arrive) gives the same rows for
the same events: idempotent by construction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

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
from ruche.server.sessions import (
    BookingSpan,
    DeskEvent,
    attribute,
    derive_desk_sessions,
)

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


def load_desk_bookings(session: Session, site: str) -> list[BookingSpan]:
    """The site's desk bookings that were not cancelled, keyed like the events."""
    rows = session.execute(
        select(
            Booking.id, Booking.member_id, Booking.starts_at, Booking.ends_at, Agent.slug, Desk.slug
        )
        .join(Desk, Desk.id == Booking.desk_id)
        .join(Agent, Agent.id == Desk.agent_id)
        .join(Site, Site.id == Booking.site_id)
        .where(Site.slug == site, Booking.status != BookingStatus.CANCELLED)
    ).all()
    return [
        BookingSpan(id=booking_id, desk=(site, agent, desk), member=member, start=start, end=end)
        for booking_id, member, start, end, agent, desk in rows
    ]


def refresh_desk_sessions(
    session: Session,
    site: str,
    *,
    now: datetime,
    stale_after: timedelta = STALE_AFTER,
    stuck_after: timedelta = STUCK_AFTER,
) -> int:
    """Recompute and replace the site's desk sessions; return how many there are."""
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
    session.flush()
    return len(attributed)
