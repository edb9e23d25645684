"""Guest invitations in SQL: inviting, cancelling, a visitor card for the guest, and the
windows door decisions read (`guests.py` has the rule).

```python
invitation = invite_guest(session, site=lyon, day=today, name="Grace", email="g@x.org",
                          host_member_id=ada.id, invited_by=reader.actor, now=now)
enrol_visitor_card(session, invitation, bytes.fromhex("04a224b2c35e80"), now=now)
cancel_invitation(session, invitation, now=now)      # the doors refuse from the next tap
```

A guest is a member row of their own, found again by e-mail when they come back; a
person who already holds a membership is no guest (give them a day pass). A visitor
card is a badge: reception hands the same cards out day after day, so a card that last
served a guest whose visits are over moves to the new guest; a member's card, or one
whose guest is still expected, is refused. Every refusal is a `GuestRefused` whose
`code` a page translates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ruche.broker.tokens import badge_token
from ruche.server import registry
from ruche.server.access.guests import guest_window, visit_hours
from ruche.server.access.rules import Site
from ruche.server.errors import Invalid
from ruche.server.registry.booking_limits import has_plan_at as plan_overlaps
from ruche.server.registry.schedule import Interval, local_day
from ruche.server.registry.schedule_spec import opening_schedule
from ruche.server.storage import models as m
from ruche.server.storage.enums import BadgeStatus

__all__ = [
    "MAX_DAYS_AHEAD",
    "GuestRefused",
    "Invitation",
    "cancel_invitation",
    "enrol_visitor_card",
    "has_plan_at",
    "host_sites",
    "invitation_of",
    "invite_guest",
    "list_invitations",
    "load_guest_windows",
    "site_hours",
]

MAX_DAYS_AHEAD: Final = 90
"""How far ahead a guest may be invited."""
VISITOR_CARD: Final = "visitor card"


class GuestRefused(Invalid):
    """An invitation or a visitor card refused; `code` names why, for a page to say."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation with its guest, whether a visitor card is theirs, and whether the
    visit runs to the end of the day (a site open around the clock: "until 00:00" would
    read as the night before)."""

    row: m.GuestInvitationRow
    guest: m.MemberRow
    has_card: bool
    all_day: bool = False

    def live(self, now: datetime) -> bool:
        """Not cancelled and not over."""
        return self.row.cancelled_at is None and now < self.row.valid_until


# --- what door decisions read --------------------------------------------------------------


def load_guest_windows(
    session: Session,
    *,
    site_id: int,
    site: Site,
    members: Sequence[int] | sa.Select[Any],
    start: datetime,
    end: datetime,
) -> dict[int, list[Interval]]:
    """The windows live invitations at the site give `members` within reach of
    `[start, end)`, by member id; two queries, one when nobody is invited."""
    rows = session.execute(
        sa.select(
            m.GuestInvitationRow.guest_member_id,
            m.GuestInvitationRow.day,
            m.GuestInvitationRow.valid_until,
        ).where(
            m.GuestInvitationRow.site_id == site_id,
            m.GuestInvitationRow.cancelled_at.is_(None),
            m.GuestInvitationRow.guest_member_id.in_(members),
            m.GuestInvitationRow.valid_until > start,
            m.GuestInvitationRow.day <= end.astimezone(site.tz).date() + timedelta(days=1),
        )
    ).all()
    if not rows:
        return {}
    stored = session.scalar(sa.select(m.SiteRow.opening_hours).where(m.SiteRow.id == site_id))
    opening = opening_schedule(stored)
    windows: dict[int, list[Interval]] = {}
    for member_id, day, valid_until in rows:
        hours = visit_hours(opening, site.holidays, site.tz, day)
        window = guest_window(hours, local_day(day, site.tz)[0], valid_until)
        if window is not None:
            windows.setdefault(member_id, []).append(window)
    return windows


# --- invitations ---------------------------------------------------------------------------


def site_hours(session: Session, site: m.SiteRow, day: date) -> Interval | None:
    """The site's first opening and last closing on local date `day` (`visit_hours`)."""
    holidays = frozenset(
        session.scalars(sa.select(m.HolidayRow.day).where(m.HolidayRow.site_id == site.id))
    )
    return visit_hours(opening_schedule(site.opening_hours), holidays, site.tzinfo, day)


def has_plan_at(session: Session, member_id: int, site_id: int, span: Interval) -> bool:
    """Whether a membership of `member_id` whose plan includes the site overlaps `span`
    (the registry's own rule, `registry.booking_limits.has_plan_at`)."""
    return plan_overlaps(session, member_id, site_id, span[0], span[1])


def _guest_member(session: Session, name: str, email: str) -> m.MemberRow:
    """The guest's member row: theirs from an earlier visit, else a new one."""
    email = email.strip().lower()
    found = session.scalars(sa.select(m.MemberRow).where(m.MemberRow.email == email)).first()
    if found is None:
        return registry.create_member(session, name=name, email=email)
    has_membership = session.scalar(
        sa.select(m.MembershipRow.id).where(m.MembershipRow.member_id == found.id).limit(1)
    )
    if has_membership is not None:
        raise GuestRefused("already_member", f"{email} is a member: give them a day pass")
    if not found.active:
        raise GuestRefused("guest_disabled", f"{email} was disabled: ask the site's manager")
    return found


def invite_guest(
    session: Session,
    *,
    site: m.SiteRow,
    day: date,
    name: str,
    email: str,
    host_member_id: int | None,
    invited_by: str,
    now: datetime,
) -> Invitation:
    """Invite a guest to `site` for local date `day`, until the site closes that day.

    Refused (`GuestRefused`) for a day past or too far ahead, a day the site is closed
    or has already closed, a host without a plan at the site that day, a person who is
    a member, or a guest already invited there that day.
    """
    if not name.strip():
        raise GuestRefused("name_missing", "a guest needs a name")
    today = now.astimezone(site.tzinfo).date()
    if day < today:
        raise GuestRefused("day_past", f"{day} is over: invite for today or later")
    if day > today + timedelta(days=MAX_DAYS_AHEAD):
        raise GuestRefused("too_far", f"invite at most {MAX_DAYS_AHEAD} days ahead")
    hours = site_hours(session, site, day)
    if hours is None:
        raise GuestRefused("site_closed", f"site {site.slug} does not open on {day}")
    if hours[1] <= now:
        raise GuestRefused("site_closed_now", f"site {site.slug} has closed for {day}")
    if host_member_id is not None and not has_plan_at(session, host_member_id, site.id, hours):
        raise GuestRefused("host_without_plan", f"member {host_member_id} has no plan here then")
    guest = _guest_member(session, name, email)
    already = session.scalar(
        sa.select(m.GuestInvitationRow.id).where(
            m.GuestInvitationRow.guest_member_id == guest.id,
            m.GuestInvitationRow.site_id == site.id,
            m.GuestInvitationRow.day == day,
            m.GuestInvitationRow.cancelled_at.is_(None),
        )
    )
    if already is not None:
        raise GuestRefused("already_invited", f"{guest.email} is already invited that day")
    row = m.GuestInvitationRow(
        site_id=site.id,
        guest_member_id=guest.id,
        host_member_id=host_member_id,
        invited_by=invited_by[:100],
        day=day,
        valid_until=hours[1],
        created_at=now,
    )
    session.add(row)
    session.flush()
    return invitation_of(session, row)


def cancel_invitation(session: Session, invitation: m.GuestInvitationRow, *, now: datetime) -> None:
    """End the invitation now: its window is gone from the next decision on."""
    if invitation.cancelled_at is not None or invitation.valid_until <= now:
        raise GuestRefused("ended", f"invitation {invitation.id} has already ended")
    invitation.cancelled_at = now
    session.flush()


def enrol_visitor_card(
    session: Session, invitation: m.GuestInvitationRow, uid: bytes, *, now: datetime
) -> m.BadgeRow:
    """The visitor card `uid` given to the invitation's guest (moved from a past guest).

    Refused when the invitation has ended, or the card is a member's, revoked, or held
    by another guest who is still expected."""
    if invitation.cancelled_at is not None or invitation.valid_until <= now:
        raise GuestRefused("ended", f"invitation {invitation.id} has already ended")
    site = registry.get(session, m.SiteRow, invitation.site_id)
    key = registry.get(session, m.SiteKeyRow, site.key_id)
    try:
        token = badge_token(key.key, uid)
    except ValueError as exc:
        raise GuestRefused("card_unreadable", f"cannot use this card: {exc}") from exc
    badge = session.scalars(sa.select(m.BadgeRow).where(m.BadgeRow.token == token)).first()
    if badge is None:
        return registry.enrol_badge(
            session, invitation.guest_member_id, key, uid, label=VISITOR_CARD
        )
    if badge.member_id == invitation.guest_member_id:
        return badge
    if badge.status is BadgeStatus.REVOKED:
        raise GuestRefused("card_revoked", "this card is revoked: take another one")
    if not _is_past_guest(session, badge.member_id, now):
        raise GuestRefused("card_in_use", "this card belongs to a member or an expected guest")
    badge.member_id = invitation.guest_member_id
    badge.status = BadgeStatus.ACTIVE
    badge.label = VISITOR_CARD
    session.flush()
    return badge


def _is_past_guest(session: Session, member_id: int, now: datetime) -> bool:
    """A guest (no membership, at least one invitation) with no live invitation."""
    membership = session.scalar(
        sa.select(m.MembershipRow.id).where(m.MembershipRow.member_id == member_id).limit(1)
    )
    if membership is not None:
        return False
    states = session.execute(
        sa.select(m.GuestInvitationRow.cancelled_at, m.GuestInvitationRow.valid_until).where(
            m.GuestInvitationRow.guest_member_id == member_id
        )
    ).all()
    return bool(states) and all(c is not None or until <= now for c, until in states)


def _has_card(session: Session, member_id: int, key_id: int) -> bool:
    found = session.scalar(
        sa.select(m.BadgeRow.id).where(
            m.BadgeRow.member_id == member_id,
            m.BadgeRow.key_id == key_id,
            m.BadgeRow.status == BadgeStatus.ACTIVE,
        )
    )
    return found is not None


def invitation_of(session: Session, row: m.GuestInvitationRow) -> Invitation:
    """`row` with its guest and whether they hold a card of the site's key."""
    guest = registry.get(session, m.MemberRow, row.guest_member_id)
    site = registry.get(session, m.SiteRow, row.site_id)
    return Invitation(row, guest, has_card=_has_card(session, guest.id, site.key_id),
                      all_day=_to_midnight(row, site.tzinfo))  # fmt: skip


def _to_midnight(row: m.GuestInvitationRow, tz: ZoneInfo) -> bool:
    return row.valid_until == local_day(row.day, tz)[1]


def list_invitations(
    session: Session,
    *,
    site_id: int | None = None,
    host_member_id: int | None = None,
    day: date | None = None,
    since: date | None = None,
    limit: int = 200,
) -> list[Invitation]:
    """Invitations by day then id, with their guests: at most `limit`."""
    query = (
        sa.select(m.GuestInvitationRow, m.MemberRow, m.SiteRow.timezone)
        .join(m.MemberRow, m.MemberRow.id == m.GuestInvitationRow.guest_member_id)
        .join(m.SiteRow, m.SiteRow.id == m.GuestInvitationRow.site_id)
        .order_by(m.GuestInvitationRow.day, m.GuestInvitationRow.id)
        .limit(limit)
    )
    if site_id is not None:
        query = query.where(m.GuestInvitationRow.site_id == site_id)
    if host_member_id is not None:
        query = query.where(m.GuestInvitationRow.host_member_id == host_member_id)
    if day is not None:
        query = query.where(m.GuestInvitationRow.day == day)
    if since is not None:
        query = query.where(m.GuestInvitationRow.day >= since)
    found = session.execute(query).all()
    carded = set(
        session.scalars(
            sa.select(m.BadgeRow.member_id).where(
                m.BadgeRow.member_id.in_({guest.id for _, guest, _ in found}),
                m.BadgeRow.status == BadgeStatus.ACTIVE,
            )
        )
    )
    return [
        Invitation(row, guest, guest.id in carded, _to_midnight(row, ZoneInfo(tz)))
        for row, guest, tz in found
    ]


def host_sites(session: Session, member_id: int, now: datetime) -> list[m.SiteRow]:
    """The sites a member may invite guests to: those of their plans not yet over."""
    # A subquery rather than DISTINCT: PostgreSQL cannot compare the JSON columns.
    covered = (
        sa.select(m.plan_sites.c.site_id)
        .join(m.MembershipRow, m.MembershipRow.plan_id == m.plan_sites.c.plan_id)
        .where(
            m.MembershipRow.member_id == member_id,
            sa.or_(m.MembershipRow.ends_at.is_(None), m.MembershipRow.ends_at > now),
        )
    )
    query = (
        sa.select(m.SiteRow).where(m.SiteRow.id.in_(covered)).order_by(m.SiteRow.name, m.SiteRow.id)
    )
    return list(session.scalars(query))
