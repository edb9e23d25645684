"""Server-side sessions: a random id in the (signed) cookie, only its SHA-256 in SQL.

A session belongs to a person, or to an API key that logged in to the live floor page.
It ends when it expires or is revoked; every request re-reads it, so a sign-out, a new
password or a revoked key ends it at once, in every process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ruche.server.storage.enums import Role
from ruche.server.storage.models import ApiKeyRow, PersonRow, SignInSessionRow

SESSION_TTL = timedelta(days=14)
TOUCH_EVERY = timedelta(minutes=1)
"""`last_seen_at` is written at most this often: not a write per request."""


def token_hash(raw: str) -> str:
    # 256 random bits: nothing to guess, so a plain SHA-256 suffices (no stretching).
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, kw_only=True)
class Holder:
    """Who a live session belongs to, as the API's policy needs it."""

    person_id: int | None = None
    api_key_id: int | None = None
    name: str
    role: Role
    site_id: int | None = None
    member_id: int | None = None
    locale: str = "fr"


def open_session(
    session: Session, *, now: datetime, person_id: int | None = None, api_key_id: int | None = None
) -> str:
    """A new session; returns its id, to go in the cookie (only its hash is stored)."""
    # Sessions past their expiry are dead whatever they hold: forget them as new ones come.
    session.execute(delete(SignInSessionRow).where(SignInSessionRow.expires_at < now))
    raw = new_token()
    session.add(
        SignInSessionRow(
            hash=token_hash(raw),
            person_id=person_id,
            api_key_id=api_key_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    session.flush()
    return raw


@dataclass(frozen=True)
class LiveSession:
    id: int
    holder: Holder
    touch_due: bool
    """`last_seen_at` is older than `TOUCH_EVERY`: worth a write (`touch_session`)."""


def find_holder(session: Session, raw: str, now: datetime) -> LiveSession | None:
    """Session `raw`, if it is live (not expired, not revoked, its person active or its
    key not revoked), and who it belongs to. Reads only: a read-only transaction takes
    no lock, however many requests a page makes."""
    row = session.scalars(
        select(SignInSessionRow).where(SignInSessionRow.hash == token_hash(raw))
    ).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    holder: Holder | None = None
    if row.person_id is not None:
        person = session.get(PersonRow, row.person_id)
        if person is not None and person.active:
            holder = Holder(
                person_id=person.id, name=person.email, role=person.role,
                site_id=person.site_id, member_id=person.member_id, locale=person.locale,
            )  # fmt: skip
    elif row.api_key_id is not None:
        key = session.get(ApiKeyRow, row.api_key_id)
        if key is not None and key.revoked_at is None:
            holder = Holder(
                api_key_id=key.id, name=key.name, role=key.role,
                site_id=key.site_id, member_id=key.member_id,
            )  # fmt: skip
    if holder is None:
        return None
    return LiveSession(row.id, holder, touch_due=now - row.last_seen_at >= TOUCH_EVERY)


def touch_session(session: Session, session_id: int, now: datetime) -> None:
    session.execute(
        update(SignInSessionRow).where(SignInSessionRow.id == session_id).values(last_seen_at=now)
    )


def revoke_session(session: Session, raw: str, now: datetime) -> None:
    """End session `raw` (a replayed cookie then no longer works); unknown ids are ignored."""
    session.execute(
        update(SignInSessionRow)
        .where(SignInSessionRow.hash == token_hash(raw), SignInSessionRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def revoke_all(session: Session, person_id: int, now: datetime) -> int:
    """End every live session of a person; returns how many."""
    result = session.execute(
        update(SignInSessionRow)
        .where(SignInSessionRow.person_id == person_id, SignInSessionRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
