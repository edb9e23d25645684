"""The demo's registry: `ruche.sim.demo.plan`'s site written to SQL through the registry.

Its agents, zones, desks and doors; its plans (24/7 at the doors) with their price
versions and a 20 % tax; its members with memberships since two months, enrolled
badges (the former member's revoked); the day's bookings made ahead; and a manager key
for the site (the floor page and its API).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server import billing, registry
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import DeskRow, MemberRow
from ruche.sim.day import PlannedBooking
from ruche.sim.demo.plan import PLANS, DemoSite

__all__ = ["SeededSite", "add_bookings", "seed_demo_site"]

TAX_RATE = "0.20"


@dataclass(frozen=True)
class SeededSite:
    """Ids the demo needs afterwards, and the manager key (its only appearance)."""

    site_id: int
    members: dict[str, int]
    """Member ids by email (`Member.key` in the plan)."""
    desks: dict[str, int]
    """Desk ids by slug."""
    manager_key: str


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
            key = registry.create_site_key(session, layout.site_key)
            row = registry.create_site(
                session,
                slug=layout.site,
                name=site.name,
                timezone=layout.timezone,
                no_show_minutes=site.no_show_minutes,
                key_id=key.id,
                opening_hours={"kind": "custom", "days": {
                    d: [f"{site.opening:%H:%M}-{site.closing:%H:%M}"]
                    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}},
            )  # fmt: skip
            session.flush()
            billing.set_site_billing(session, row.id, currency="EUR", rate=TAX_RATE)
            agents = {
                slug: registry.create_agent(session, site_id=row.id, slug=slug)
                for slug in layout.agents
            }
            zones = {name: registry.create_zone(session, site_id=row.id, name=name)
                     for name in site.zones}  # fmt: skip
            session.flush()
            for door in layout.doors:
                registry.create_door(session, site_id=row.id, slug=door.door,
                                     agent_id=agents[door.agent].id)  # fmt: skip
            desks = {
                d.spot.desk: registry.create_desk(session, zone_id=zones[d.zone].id,
                                                  slug=d.spot.desk,
                                                  agent_id=agents[d.spot.agent].id, x=d.x, y=d.y)
                for d in site.desks
            }  # fmt: skip
            plans = {p.name: registry.create_plan(session, name=p.name, site_ids=[row.id],
                                                  schedule={"kind": "24/7"})
                     for p in PLANS}  # fmt: skip
            session.flush()
            for name, versions in site.prices(day).items():
                for price in versions:
                    billing.add_price_version(session, site_id=row.id, plan_id=plans[name].id,
                                              valid_from=price.valid_from, terms=price.terms,
                                              label=price.label, now=now)  # fmt: skip
            since = now - timedelta(days=60)
            members: dict[str, int] = {}
            for demo in site.members:
                member = registry.create_member(session, name=demo.name, email=demo.member.key)
                session.flush()
                plan_id = plans[demo.plan].id
                registry.create_membership(session, member_id=member.id, plan_id=plan_id,
                                           starts_at=since)  # fmt: skip
                badge = registry.enrol_badge(session, member.id, key, demo.member.uid)
                session.flush()
                if demo.member.revoked:
                    registry.revoke_badge(session, badge.id)
                members[demo.member.key] = member.id
            desk_ids = {slug: desk.id for slug, desk in desks.items()}
            _book(session, row.id, members, desk_ids, bookings)
            _, secret = registry.create_api_key(session, role=Role.MANAGER, site_id=row.id,
                                                name="demo manager")  # fmt: skip
            return SeededSite(row.id, members, desk_ids, secret)
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
