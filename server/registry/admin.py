"""What `ruche admin ...` and `ruche server broker-config` do, over a database URL.

Each function opens its own transaction and returns plain values for the CLI to
print; domain errors (`NotFound`, `Conflict`, `Invalid`) reach the CLI unchanged.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker.accounts import AgentUser, BrokerUsers
from ruche.broker.passwords import hash_password
from ruche.server import registry
from ruche.server.errors import NotFound
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import AgentRow, MemberRow, SiteRow


def _sessions(url: str) -> sessionmaker[Session]:
    return make_sessions(make_engine(url))


def create_api_key(
    url: str, *, role: Role, name: str, site: str | None = None, member_email: str | None = None
) -> str:
    """A new API key; returns its secret, shown once (only its hash is stored)."""
    with transaction(_sessions(url)) as session:
        site_id = registry.get_site_by_slug(session, site).id if site else None
        member_id = _member_by_email(session, member_email).id if member_email else None
        _, secret = registry.create_api_key(
            session, role=role, name=name, site_id=site_id, member_id=member_id
        )
        return secret


def add_site(url: str, *, slug: str, name: str, timezone: str) -> int:
    with transaction(_sessions(url)) as session:
        return registry.create_site(session, slug=slug, name=name, timezone=timezone).id


def add_member(url: str, *, name: str, email: str) -> int:
    with transaction(_sessions(url)) as session:
        return registry.create_member(session, name=name, email=email).id


def enrol_badge(url: str, *, member_email: str, site: str, uid: bytes) -> str:
    """Enrol a badge for a member; returns its token (the UID itself is never stored)."""
    with transaction(_sessions(url)) as session:
        member = _member_by_email(session, member_email)
        key = registry.site_key_of(session, registry.get_site_by_slug(session, site).id)
        return registry.enrol_badge(session, member.id, key, uid).token


def broker_users(url: str, *, server_username: str, server_password: str) -> BrokerUsers:
    """The broker's accounts from the registry: the server's, and every agent with a password."""
    with transaction(_sessions(url)) as session:
        rows = session.execute(
            select(
                SiteRow.slug, AgentRow.slug, AgentRow.mqtt_password_hash, AgentRow.broker_disabled
            )
            .join(SiteRow, SiteRow.id == AgentRow.site_id)
            .where(AgentRow.mqtt_password_hash.is_not(None))
            .order_by(SiteRow.slug, AgentRow.slug)
        ).all()
    return BrokerUsers(
        server_username=server_username,
        server_hash=hash_password(server_password),
        agents=tuple(
            AgentUser(site, agent, digest, disabled)
            for site, agent, digest, disabled in rows
            if digest
        ),
    )


def _member_by_email(session: Session, email: str) -> MemberRow:
    member = session.scalars(
        select(MemberRow).where(MemberRow.email == email.strip().lower())
    ).first()
    if member is None:
        raise NotFound("Member", email)
    return member
