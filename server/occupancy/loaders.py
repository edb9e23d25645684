"""Stored events, bookings and decisions read from SQL as the pure rules' values
(`ruche.server.occupancy.sessions`): what a refresh reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from ruche.broker import Channel, DeskBadge, OfflineDecision, PresenceState, Tap, decode_payload
from ruche.server.access.facts import direction_of
from ruche.server.occupancy.limits import BADGE_WINDOW, DECISION_SLACK
from ruche.server.occupancy.sessions import (
    AttributedSession,
    BookingSpan,
    DeskEvent,
    DeskKey,
    DeskSession,
    Direction,
    DoorTap,
    EventKind,
    SessionClose,
)
from ruche.server.storage.enums import AuditKind, AuditSource, BookingStatus
from ruche.server.storage.models import (
    AgentRow,
    AuditRow,
    BookingRow,
    DeskCheckInRow,
    DeskRow,
    DeskSessionRow,
    SiteRow,
    StoredEventRow,
)

log = logging.getLogger(__name__)


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
    e = cast(sa.Table, StoredEventRow.__table__).c
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
    payload = cast(sa.Table, StoredEventRow.__table__).c.payload
    if session.get_bind().dialect.name == "postgresql":
        flag: sa.ColumnElement[object] = sa.cast(payload, JSONB)["heartbeat"].as_boolean()
        return flag
    return sa.func.json_extract(payload, "$.heartbeat")


def load_desk_bookings(
    session: Session,
    site: str,
    *,
    only: BookingStatus | None = None,
    ending_after: datetime | None = None,
) -> list[BookingSpan]:
    """The site's desk bookings that were not cancelled (or of status `only`), all of them
    or those ending after `ending_after`."""
    rows = session.execute(
        select(
            BookingRow.id,
            BookingRow.member_id,
            BookingRow.starts_at,
            BookingRow.ends_at,
            AgentRow.slug,
            DeskRow.slug,
        )
        .join(DeskRow, DeskRow.id == BookingRow.desk_id)
        .join(AgentRow, AgentRow.id == DeskRow.agent_id)
        .join(SiteRow, SiteRow.id == BookingRow.site_id)
        .where(SiteRow.slug == site)
        .where(BookingRow.status == only if only else BookingRow.status != BookingStatus.CANCELLED)
        .where(sa.true() if ending_after is None else BookingRow.ends_at > ending_after)
    ).all()
    return [
        BookingSpan(id=booking_id, desk=(site, agent, desk), member=member, start=start, end=end)
        for booking_id, member, start, end, agent, desk in rows
    ]


def load_checkins(session: Session, site: str, *, since: datetime) -> list[AttributedSession]:
    """The site's QR check-ins from `since` on, each as an instant of presence at its desk
    by the member who scanned it: arrival evidence for the no-show rules (`reclaims`)."""
    rows = session.execute(
        select(AgentRow.slug, DeskRow.slug, DeskCheckInRow.member_id,
               DeskCheckInRow.checked_in_at, DeskCheckInRow.id)
        .join(DeskRow, DeskRow.id == DeskCheckInRow.desk_id)
        .join(AgentRow, AgentRow.id == DeskRow.agent_id)
        .join(SiteRow, SiteRow.id == DeskRow.site_id)
        .where(SiteRow.slug == site, DeskCheckInRow.checked_in_at >= since)
    ).all()  # fmt: skip
    return [
        AttributedSession(
            DeskSession(
                desk=(site, agent, desk), start=at, end=at, opened_seq=-checkin, closed_by="vacant"
            ),
            member,
            "badge",
        )
        for agent, desk, member, at, checkin in rows
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
        select(StoredEventRow.agent, StoredEventRow.payload)
        .where(StoredEventRow.site == site)
        .where(StoredEventRow.channel == Channel.DOOR_EVENT.value)
        .where(StoredEventRow.kind == "offline_decision")
    )
    if since is not None:
        query = query.where(AuditRow.decided_at >= since - DECISION_SLACK)
        offline_query = offline_query.where(StoredEventRow.ts >= since - DECISION_SLACK)
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
        select(StoredEventRow.agent, StoredEventRow.payload)
        .where(StoredEventRow.site == site)
        .where(StoredEventRow.channel == Channel.TAP.value)
    )
    if since is not None:
        query = query.where(StoredEventRow.ts >= since)
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


def desk_key(site: str, desk: str) -> DeskKey:
    # Matched by the desk's id alone: a desk keeps its id when another agent reads it.
    return (site, "", desk)


def session_value(site: str, row: DeskSessionRow, desk: DeskKey | None = None) -> DeskSession:
    """A stored session as the rules' value; keyed by `desk`, else by the desk's id alone."""
    return DeskSession(
        desk=desk_key(site, row.desk) if desk is None else desk,
        start=row.start,
        end=row.end,
        opened_seq=row.opened_seq,
        closed_by=cast("SessionClose", row.closed_by),
        suspect=row.suspect,
        reason=row.reason,
    )
