"""Members and their badges: enrolment keeps only the token (HMAC under the site's key),
never the UID; a badge is disabled for a while or revoked for good."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.broker.tokens import badge_token
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.registry.base import _EMAIL, UNSET, _now, _savepoint, _Unset, _update, get
from ruche.server.storage.enums import BadgeStatus
from ruche.server.storage.models import (
    BadgeRow,
    MemberRow,
    SiteKeyRow,
)


def _check_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise Invalid(f"{email!r} is not an email address")
    return email


def create_member(session: Session, *, name: str, email: str, active: bool = True) -> MemberRow:
    if not name.strip():
        raise Invalid("a member needs a name")
    email = _check_email(email)
    member = MemberRow(name=name.strip(), email=email, active=active)
    with _savepoint(session, f"a member with email {email!r} already exists"):
        session.add(member)
    return member


def list_members(session: Session, *, active: bool | None = None) -> list[MemberRow]:
    query = select(MemberRow).order_by(MemberRow.id)
    if active is not None:
        query = query.where(MemberRow.active == active)
    return list(session.scalars(query))


def update_member(
    session: Session,
    member_id: int,
    *,
    name: str | _Unset = UNSET,
    email: str | _Unset = UNSET,
    active: bool | _Unset = UNSET,
) -> MemberRow:
    member = get(session, MemberRow, member_id)
    if not isinstance(email, _Unset):
        email = _check_email(email)
    _update(
        session,
        member,
        f"a member with email {email!r} already exists",
        {"name": name, "email": email, "active": active},
    )
    return member


def enrol_badge(
    session: Session, member_id: int, site_key: SiteKeyRow, uid: bytes, *, label: str = ""
) -> BadgeRow:
    """Enrol a card for a member under `site_key`; only its token is stored, never `uid`.

    The badge opens the doors of every site using that key. Conflict if the card is already
    enrolled under it (whatever its status: a revoked card stays revoked).
    """
    get(session, MemberRow, member_id)
    try:
        token = badge_token(site_key.key, uid)
    except ValueError as exc:
        raise Invalid(f"cannot enrol this badge: {exc}") from exc
    badge = BadgeRow(
        member_id=member_id,
        key_id=site_key.id,
        token=token,
        status=BadgeStatus.ACTIVE,
        label=label,
        created_at=_now(),
    )
    with _savepoint(session, "this badge is already enrolled (revoke it or reuse it)"):
        session.add(badge)
    return badge


def get_badge_by_token(session: Session, token: str) -> BadgeRow:
    badge = session.scalars(select(BadgeRow).where(BadgeRow.token == token)).one_or_none()
    if badge is None:
        raise NotFound("Badge", token[:8] + "...")
    return badge


def list_badges(session: Session, *, member_id: int | None = None) -> list[BadgeRow]:
    query = select(BadgeRow).order_by(BadgeRow.id)
    if member_id is not None:
        query = query.where(BadgeRow.member_id == member_id)
    return list(session.scalars(query))


def set_badge_status(session: Session, badge_id: int, status: BadgeStatus) -> BadgeRow:
    """Disable, re-activate or revoke a badge; revocation is final."""
    badge = get(session, BadgeRow, badge_id)
    if badge.status is BadgeStatus.REVOKED and status is not BadgeStatus.REVOKED:
        raise Conflict(f"badge {badge_id} is revoked: enrol a new card instead")
    badge.status = status
    session.flush()
    return badge


def revoke_badge(session: Session, badge_id: int) -> BadgeRow:
    """Revoke a badge for good (lost, stolen, member gone)."""
    return set_badge_status(session, badge_id, BadgeStatus.REVOKED)
