"""One-time tokens for sign-in links and password resets: random, only their SHA-256
stored, used once (an atomic UPDATE, so two processes cannot both redeem one) and
only before they expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ruche.server.people.sessions import new_token, token_hash
from ruche.server.storage.models import OneTimeTokenRow, PersonRow

Purpose = Literal["signin", "reset"]


def issue_token(
    session: Session, *, person_id: int, purpose: Purpose, now: datetime, ttl: timedelta
) -> str:
    """A new token for the person; returns it, to go in the link."""
    session.execute(delete(OneTimeTokenRow).where(OneTimeTokenRow.expires_at < now))
    raw = new_token()
    session.add(
        OneTimeTokenRow(
            hash=token_hash(raw),
            person_id=person_id,
            purpose=purpose,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    session.flush()
    return raw


def redeem_token(
    session: Session, raw: str, *, purpose: Purpose, now: datetime
) -> PersonRow | None:
    """The active person token `raw` was issued to, marking it used; None when it is
    unknown, for another purpose, used already or expired."""
    digest = token_hash(raw)
    claimed = session.execute(
        update(OneTimeTokenRow)
        .where(
            OneTimeTokenRow.hash == digest,
            OneTimeTokenRow.purpose == purpose,
            OneTimeTokenRow.used_at.is_(None),
            OneTimeTokenRow.expires_at > now,
        )
        .values(used_at=now)
    )
    if int(getattr(claimed, "rowcount", 0) or 0) != 1:
        return None
    person_id = session.scalars(
        select(OneTimeTokenRow.person_id).where(OneTimeTokenRow.hash == digest)
    ).one()
    person = session.get(PersonRow, person_id)
    return person if person is not None and person.active else None
