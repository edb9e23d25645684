"""Enrolment by tap: "the next unknown badge tapped at this door belongs to this member".

A manager opens an enrolment for a member at a door (`open_enrolment`, for
`ENROLMENT_WINDOW`); the door worker, when a tap at that door is denied as
`unknown_badge`, hands it to `TapEnrolments.fill`, which enrols the badge under the
site's key with the token as the tap carries it (the agent has already HMAC'd the UID:
the server never sees it), closes the enrolment and says which sites share the key, so
that their allow-lists are republished after the commit.

```python
with transaction(sessions) as s:
    row = open_enrolment(s, door_id=door.id, member_id=ada.id, actor="person:3:Max", now=now)
enrolled = TapEnrolments(sessions).fill("lyon", "front", tap.token, now)  # the door worker
```

The rules are pure (`fills_enrolment`, `enrolment_to_fill`, `enrolment_state`); the SQL
below them is the adapter.

- Only an *unknown* badge fills an enrolment: a card the registry knows, even revoked or
  disabled, is never handed to someone else by a tap.
- One enrolment at a time waits at a door: a second member's is refused while the first
  is open, so nobody can tell which card went to whom. Opening one for a member closes
  that member's others (a manager who moved to another door).
- If several are open at a door all the same (two processes racing), the oldest request
  is filled first; a closed or expired one never is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.access.rules import DecisionReason
from ruche.server.errors import Conflict, Invalid
from ruche.server.storage.enums import BadgeStatus
from ruche.server.storage.models import BadgeEnrolmentRow, BadgeRow, DoorRow, SiteRow

__all__ = [
    "ENROLLED",
    "ENROLMENT_WINDOW",
    "Enrolled",
    "EnrolmentState",
    "OpenEnrolment",
    "TapEnrolments",
    "cancel_enrolment",
    "enrolment_state",
    "enrolment_to_fill",
    "fills_enrolment",
    "member_enrolments",
    "open_enrolment",
]

log = logging.getLogger(__name__)

ENROLMENT_WINDOW: Final = timedelta(minutes=2)
"""How long an enrolment waits for its tap: long enough to walk to the reader."""
ENROLLED: Final = "badge_enrolled"
"""The reason the tap that enrolled a badge is answered and audited with: the door stays
shut (the card was unknown when tapped), and the log says why it was not refused as such."""


# --- the pure part -----------------------------------------------------------------------


class EnrolmentState(StrEnum):
    PENDING = "pending"
    """Waiting for its tap."""
    DONE = "done"
    """A tap filled it: its badge is enrolled."""
    EXPIRED = "expired"
    """Its time ran out, or it was cancelled, before a tap came."""


@dataclass(frozen=True, slots=True)
class OpenEnrolment:
    """An enrolment as the rule sees it."""

    id: int
    member_id: int
    requested_at: datetime
    expires_at: datetime
    done_at: datetime | None = None


def fills_enrolment(reason: DecisionReason) -> bool:
    """Whether a tap denied for `reason` may fill an enrolment: only an unknown badge.

    >>> fills_enrolment(DecisionReason.UNKNOWN_BADGE), fills_enrolment(DecisionReason.BADGE_REVOKED)
    (True, False)
    """
    return reason is DecisionReason.UNKNOWN_BADGE


def enrolment_state(
    done_at: datetime | None, expires_at: datetime, now: datetime
) -> EnrolmentState:
    """Where an enrolment stands at `now`: done once filled, whatever the time; else
    pending until `expires_at` (exclusive)."""
    if done_at is not None:
        return EnrolmentState.DONE
    return EnrolmentState.PENDING if now < expires_at else EnrolmentState.EXPIRED


def enrolment_to_fill(enrolments: Iterable[OpenEnrolment], now: datetime) -> OpenEnrolment | None:
    """Which of a door's enrolments an unknown tap at `now` fills: the oldest request
    still pending, or none."""
    pending = [
        e
        for e in enrolments
        if enrolment_state(e.done_at, e.expires_at, now) is EnrolmentState.PENDING
    ]
    return min(pending, key=lambda e: (e.requested_at, e.id), default=None)


# --- what the pages do: open, cancel, read ------------------------------------------------


def open_enrolment(
    session: Session,
    *,
    door_id: int,
    member_id: int,
    actor: str,
    now: datetime,
    window: timedelta = ENROLMENT_WINDOW,
) -> BadgeEnrolmentRow:
    """Open an enrolment of the next unknown badge at `door_id` for `member_id`, until
    `now + window`. Conflict while another member's waits at that door; the member's
    own open ones (at any door) are closed."""
    if window <= timedelta(0):
        raise Invalid("an enrolment must stay open for some time")
    waiting = session.scalars(
        select(BadgeEnrolmentRow).where(
            BadgeEnrolmentRow.done_at.is_(None), BadgeEnrolmentRow.expires_at > now
        )
    ).all()
    for other in waiting:
        if other.member_id == member_id:
            other.expires_at = now
        elif other.door_id == door_id:
            raise Conflict("another enrolment is waiting at this door: wait until it ends")
    row = BadgeEnrolmentRow(
        door_id=door_id,
        member_id=member_id,
        requested_by=actor[:100],
        requested_at=now,
        expires_at=now + window,
    )
    session.add(row)
    session.flush()
    return row


def cancel_enrolment(session: Session, row: BadgeEnrolmentRow, now: datetime) -> None:
    """Stop `row` waiting (a done one stays done)."""
    if row.done_at is None and row.expires_at > now:
        row.expires_at = now
        session.flush()


def member_enrolments(
    session: Session, member_id: int, *, since: datetime
) -> Sequence[BadgeEnrolmentRow]:
    """The member's enrolments requested since `since`, newest first."""
    return session.scalars(
        select(BadgeEnrolmentRow)
        .where(BadgeEnrolmentRow.member_id == member_id, BadgeEnrolmentRow.requested_at >= since)
        .order_by(BadgeEnrolmentRow.requested_at.desc(), BadgeEnrolmentRow.id.desc())
    ).all()


# --- what the door worker does: fill one -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A badge a tap enrolled."""

    enrolment_id: int
    member_id: int
    badge_id: int
    sites: tuple[str, ...]
    """The sites sharing the badge's key, whose allow-lists now carry it."""


class _Taken(Exception):  # noqa: N818 - a signal inside `fill`, never seen outside
    """Another worker filled the enrolment, or enrolled the token, first."""


class TapEnrolments:
    """The SQL behind enrolment by tap, for the door worker: `fill` runs in its own
    transaction and commits before it returns."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def fill(self, site: str, door: str, token: str, now: datetime) -> Enrolled | None:
        """Enrol `token` for the member of the enrolment pending at `site`/`door`, if
        any, and close it; None when none waits, or when another worker got there first
        (the enrolment is filled once, the token enrolled once)."""
        try:
            with self.sessions.begin() as session:
                return self._fill(session, site, door, token, now)
        except _Taken:
            return None

    def _fill(
        self, session: Session, site: str, door: str, token: str, now: datetime
    ) -> Enrolled | None:
        rows = session.execute(
            select(BadgeEnrolmentRow, SiteRow.key_id)
            .join(DoorRow, DoorRow.id == BadgeEnrolmentRow.door_id)
            .join(SiteRow, SiteRow.id == DoorRow.site_id)
            .where(
                SiteRow.slug == site,
                DoorRow.slug == door,
                BadgeEnrolmentRow.done_at.is_(None),
                BadgeEnrolmentRow.expires_at > now,
            )
        ).all()
        if not rows:
            return None
        key_ids = {row.id: key_id for row, key_id in rows}
        chosen = enrolment_to_fill(
            (
                OpenEnrolment(r.id, r.member_id, r.requested_at, r.expires_at, r.done_at)
                for r, _ in rows
            ),
            now,
        )
        if chosen is None:
            return None
        key_id = key_ids[chosen.id]
        badge = BadgeRow(
            member_id=chosen.member_id, key_id=key_id, token=token,
            status=BadgeStatus.ACTIVE, label="", created_at=now,
        )  # fmt: skip
        try:
            with session.begin_nested():
                session.add(badge)
        except IntegrityError as exc:
            raise _Taken from exc  # the token was enrolled meanwhile: it is not unknown
        # Conditional, so that of two workers racing for one enrolment only one fills it.
        filled = session.execute(
            update(BadgeEnrolmentRow)
            .where(BadgeEnrolmentRow.id == chosen.id, BadgeEnrolmentRow.done_at.is_(None))
            .values(badge_id=badge.id, done_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(filled, "rowcount", 0) != 1:
            raise _Taken
        sites = tuple(
            session.scalars(
                select(SiteRow.slug).where(SiteRow.key_id == key_id).order_by(SiteRow.id)
            )
        )
        log.info(
            "badge %s enrolled by tap for member %s at %s/%s",
            badge.id, chosen.member_id, site, door,
            extra={"site": site, "door": door, "member_id": chosen.member_id,
                   "badge": token[:8], "enrolment": chosen.id},
        )  # fmt: skip
        return Enrolled(chosen.id, chosen.member_id, badge.id, sites)
