"""The demo's registry: `ruche.sim.demo.plan`'s site written to SQL through the registry.

Its agents, zones, desks and doors; its plans (24/7 at the doors) with their price
versions and a 20 % tax; its members with memberships since two months, enrolled
badges (the former member's revoked); the day's bookings made ahead; a manager key for
the API; and sign-in accounts for the pages, the site's manager and one member, sharing
one random password.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server import billing, registry
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import DeskRow, MemberRow
from ruche.sim.day import PlannedBooking
from ruche.sim.demo.plan import PLANS, DemoSite
from ruche.sim.testing.sites import SiteBuilder

__all__ = ["SeededSite", "add_bookings", "seed_demo_site"]

TAX_RATE = "0.20"
DEMO_MANAGER = "manager@demo.example"
"""The demo site's manager, who signs in to the pages."""


@dataclass(frozen=True)
class SeededSite:
    """Ids the demo needs afterwards, and the manager key (its only appearance)."""

    site_id: int
    members: dict[str, int]
    """Member ids by email (`Member.key` in the plan)."""
    desks: dict[str, int]
    """Desk ids by slug."""
    manager_key: str
    manager_email: str
    member_email: str
    password: str
    """Of both people (the manager's and a member's sign-in), shown once by the demo."""


def seed_demo_site(
    url: str,
    site: DemoSite,
    *,
    day: date,
    now: datetime,
    bookings: Iterable[PlannedBooking] = (),
) -> SeededSite:
    """Migrate and fill an empty registry with `site`, priced around `day`."""
    run_migrations(url)
    engine = make_engine(url)
    layout = site.layout
    try:
        with transaction(make_sessions(engine)) as session:
            days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            hours = [f"{site.opening:%H:%M}-{site.closing:%H:%M}"]
            built = SiteBuilder(
                session, layout.site, name=site.name, timezone=layout.timezone,
                key=layout.site_key, no_show_minutes=site.no_show_minutes,
                opening_hours={"kind": "custom", "days": dict.fromkeys(days, hours)},
            )  # fmt: skip
            billing.set_site_billing(session, built.id, currency="EUR", rate=TAX_RATE)
            for agent in layout.agents:
                built.agent(agent)
            for zone in site.zones:
                built.zone(zone)
            for door in layout.doors:
                built.door(door.door, agent=door.agent)
            for d in site.desks:
                built.desk(d.spot.desk, agent=d.spot.agent, zone=d.zone, x=d.x, y=d.y)
            for plan in PLANS:
                built.plan(plan.name)
            for name, versions in site.prices(day).items():
                for price in versions:
                    billing.add_price_version(session, site_id=built.id, plan_id=built.plans[name],
                                              valid_from=price.valid_from, terms=price.terms,
                                              label=price.label, now=now)  # fmt: skip
            since = now - timedelta(days=60)
            for demo in site.members:
                built.member(demo.name, demo.member.key, plan=built.plans[demo.plan],
                             since=since, badge=demo.member.uid)  # fmt: skip
                if demo.member.revoked:
                    token = built.tokens[demo.member.key]
                    registry.revoke_badge(session, registry.get_badge_by_token(session, token).id)
            members = dict(built.members)
            desk_ids = dict(built.desks)
            _book(session, built.id, members, desk_ids, bookings)
            _, secret = registry.create_api_key(session, role=Role.MANAGER, site_id=built.id,
                                                name="demo manager")  # fmt: skip
            member = next(m.member.key for m in site.members if not m.member.revoked)
            password = secrets.token_urlsafe(12)
            digest = hash_password(password)  # argon2 once: both accounts share it
            people = [
                accounts.create_person(session, email=DEMO_MANAGER, role=Role.MANAGER,
                                       site_id=built.id, now=now),
                accounts.create_person(session, email=member, role=Role.MEMBER,
                                       member_id=members[member], now=now),
            ]  # fmt: skip
            for person in people:
                person.password_hash = digest
            return SeededSite(built.id, members, desk_ids, secret, DEMO_MANAGER, member, password)
    finally:
        engine.dispose()


def add_bookings(url: str, slug: str, bookings: Iterable[PlannedBooking]) -> None:
    """Make `bookings` at site `slug` straight in SQL (when no server is running)."""
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            site_id = registry.get_site_by_slug(session, slug).id
            members = dict(session.execute(select(MemberRow.email, MemberRow.id)).all())
            desks = dict(
                session.execute(
                    select(DeskRow.slug, DeskRow.id).where(DeskRow.site_id == site_id)
                ).all()
            )
            _book(session, site_id, members, desks, bookings)
    finally:
        engine.dispose()


def _book(
    session: Session,
    site_id: int,
    members: dict[str, int],
    desks: dict[str, int],
    bookings: Iterable[PlannedBooking],
) -> None:
    for b in bookings:
        registry.book(session, member_id=members[b.member], site_id=site_id,
                      desk_id=desks[b.desk], starts_at=b.start, ends_at=b.end)  # fmt: skip
