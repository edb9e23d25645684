"""What `ruche admin person add|password` do, over a database URL: each in its own
transaction; domain errors (Invalid, Conflict, NotFound) reach the CLI unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from ruche.server.errors import NotFound
from ruche.server.people import accounts
from ruche.server.people.sessions import revoke_all
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import MemberRow, SiteRow


def add_person(url: str, *, email: str, role: Role, site: str | None, locale: str) -> int:
    """A new account: an admin, a site's manager, or the member of that e-mail."""
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            site_id = member_id = None
            if site is not None:
                found = session.scalars(select(SiteRow).where(SiteRow.slug == site)).one_or_none()
                if found is None:
                    raise NotFound("site", site)
                site_id = found.id
            if role is Role.MEMBER:
                cleaned = accounts.normalize_email(email)
                member = session.scalars(
                    select(MemberRow).where(func.lower(MemberRow.email) == cleaned)
                ).first()
                if member is None:
                    raise NotFound("member", email)
                member_id = member.id
            person = accounts.create_person(
                session, email=email, role=role, site_id=site_id, member_id=member_id,
                locale=locale, now=datetime.now(UTC),
            )  # fmt: skip
            return person.id
    finally:
        engine.dispose()


def set_password(url: str, *, email: str, password: str) -> int:
    """Set the password of `email`'s account; returns how many sessions that ended."""
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            person = accounts.find_person(session, email)
            if person is None:
                raise NotFound("account", email)
            ended = revoke_all(session, person.id, datetime.now(UTC))
            accounts.set_password(session, person, password, datetime.now(UTC))
            return ended
    finally:
        engine.dispose()
