"""Accounts: a person's e-mail, role and scope, and their password.

A person is staff (an admin, or the manager of one site) or a member, linked to the
registry member of the same e-mail. Passwords are only ever stored as argon2 hashes
(`ruche.server.people.passwords`); setting one ends every session of the person.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.people.passwords import hash_password
from ruche.server.people.sessions import revoke_all
from ruche.server.people.texts import LOCALES
from ruche.server.storage.enums import Role
from ruche.server.storage.models import MemberRow, PersonRow, SiteRow

MAX_EMAIL = 320
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    """`email` trimmed and lower-cased; Invalid unless it looks like an address."""
    cleaned = email.strip().lower()
    if len(cleaned) > MAX_EMAIL or not _EMAIL.match(cleaned):
        raise Invalid(f"{email[:100]!r} is not an e-mail address (name@example.org)")
    return cleaned


def find_person(session: Session, email: str) -> PersonRow | None:
    """The person with `email` (any case), active or not; None for a malformed address."""
    try:
        cleaned = normalize_email(email)
    except Invalid:
        return None
    return session.scalars(select(PersonRow).where(PersonRow.email == cleaned)).one_or_none()


def create_person(
    session: Session,
    *,
    email: str,
    role: Role,
    now: datetime,
    site_id: int | None = None,
    member_id: int | None = None,
    locale: str = "fr",
) -> PersonRow:
    """A new account without a password yet; Conflict when the e-mail already has one."""
    if (role is Role.MANAGER) != (site_id is not None):
        raise Invalid("a manager needs a site, and only a manager takes one")
    if (role is Role.MEMBER) != (member_id is not None):
        raise Invalid("a member account needs its registry member, and only it takes one")
    if locale not in LOCALES:
        raise Invalid(f"locale {locale!r}: Ruche speaks {', '.join(LOCALES)}")
    if site_id is not None and session.get(SiteRow, site_id) is None:
        raise NotFound("SiteRow", site_id)
    person = PersonRow(
        email=normalize_email(email),
        role=role,
        site_id=site_id,
        member_id=member_id,
        locale=locale,
        active=True,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(person)
    except IntegrityError:
        raise Conflict(f"{person.email} already has an account") from None
    return person


def member_account(session: Session, email: str, now: datetime) -> PersonRow | None:
    """The account of `email`; for an active registry member who has none yet, a new
    member account (no password: the member signs in by link, then may set one)."""
    person = find_person(session, email)
    if person is not None:
        return person
    try:
        cleaned = normalize_email(email)
    except Invalid:
        return None
    member = session.scalars(
        select(MemberRow).where(func.lower(MemberRow.email) == cleaned, MemberRow.active)
    ).first()
    if member is None:
        return None
    try:
        return create_person(session, email=cleaned, role=Role.MEMBER, member_id=member.id, now=now)
    except Conflict:  # another request made it meanwhile
        return find_person(session, cleaned)


def set_password(session: Session, person: PersonRow, password: str, now: datetime) -> None:
    """Hash and store `password` (Invalid if it breaks a rule) and end every session of
    the person: whoever knew the old password is signed out too."""
    person.password_hash = hash_password(password)
    person.password_changed_at = now
    revoke_all(session, person.id, now)
    session.flush()
