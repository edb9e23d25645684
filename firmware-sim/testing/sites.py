"""A site stood up through the registry's own functions, one call per thing, inside the
caller's transaction: what tests, the benchmarks and the demo seed their databases with,
so that every rule the registry enforces holds for them too.

    with transaction(sessions) as session:
        site = SiteBuilder(session, "lyon")
        site.agent("door-a", doors=["front"])
        site.agent("desks-1", desks=["d1", "d2"])
        resident = site.plan("resident")
        site.member("Ada", "ada@example.org", plan=resident, badge=b"\\x04\\xa2\\x2b\\x1a")
    site.tokens["ada@example.org"]   # the badge's token under the site's key
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server import registry
from ruche.server.errors import NotFound
from ruche.server.storage.models import SiteRow

ALWAYS: Mapping[str, Any] = {"kind": "24/7"}


class SiteBuilder:
    """One site (made, or found when `existing`) and what is added to it; ids by name."""

    def __init__(
        self,
        session: Session,
        slug: str,
        *,
        name: str | None = None,
        timezone: str = "Europe/Paris",
        key: bytes | None = None,
        existing: bool = False,
        **site: Any,  # noqa: ANN401 - registry.create_site's own keywords
    ) -> None:
        """`key`: the site key's secret (a new random one otherwise); `existing`: add to
        the site `slug` if the registry has it already."""
        self.session = session
        row = session.scalars(select(SiteRow).where(SiteRow.slug == slug)).first()
        if row is None or not existing:
            key_id = None if key is None else registry.create_site_key(session, key).id
            row = registry.create_site(session, slug=slug, name=name or slug, timezone=timezone,
                                       key_id=key_id, **site)  # fmt: skip
            session.flush()
        self.site = row
        self.zones: dict[str, int] = {}
        self.agents: dict[str, int] = {}
        self.desks: dict[str, int] = {}
        self.doors: dict[str, int] = {}
        self.plans: dict[str, int] = {}
        self.members: dict[str, int] = {}
        """By email."""
        self.tokens: dict[str, str] = {}
        """Badge tokens by their member's email."""

    @property
    def id(self) -> int:
        return self.site.id

    @property
    def slug(self) -> str:
        return self.site.slug

    def zone(self, name: str) -> int:
        if name not in self.zones:
            self.zones[name] = registry.create_zone(self.session, site_id=self.id, name=name).id
            self.session.flush()
        return self.zones[name]

    def agent(
        self,
        slug: str,
        *,
        desks: Iterable[str] = (),
        doors: Iterable[str] = (),
        zone: str = "open space",
    ) -> int:
        """An agent (found if it exists) reading `desks` in `zone` and driving `doors`."""
        if slug not in self.agents:
            try:
                found = registry.get_agent_by_slug(self.session, self.id, slug)
            except NotFound:
                found = registry.create_agent(self.session, site_id=self.id, slug=slug)
                self.session.flush()
            self.agents[slug] = found.id
        for desk in desks:
            self.desk(desk, agent=slug, zone=zone)
        for door in doors:
            self.door(door, agent=slug)
        return self.agents[slug]

    def desk(
        self,
        slug: str,
        *,
        agent: str | None = None,
        zone: str = "open space",
        x: int | None = None,
        y: int | None = None,
    ) -> int:
        agent_id = None if agent is None else self.agent(agent)
        self.desks[slug] = registry.create_desk(self.session, zone_id=self.zone(zone), slug=slug,
                                                agent_id=agent_id, x=x, y=y).id  # fmt: skip
        self.session.flush()
        return self.desks[slug]

    def door(self, slug: str, *, agent: str | None = None, anti_passback: bool = False) -> int:
        agent_id = None if agent is None else self.agent(agent)
        self.doors[slug] = registry.create_door(self.session, site_id=self.id, slug=slug,
                                                agent_id=agent_id,
                                                anti_passback=anti_passback).id  # fmt: skip
        self.session.flush()
        return self.doors[slug]

    def plan(
        self, name: str, *, schedule: Mapping[str, Any] = ALWAYS, booking_only: bool = False
    ) -> int:
        self.plans[name] = registry.create_plan(self.session, name=name, site_ids=[self.id],
                                                schedule=schedule,
                                                booking_only=booking_only).id  # fmt: skip
        self.session.flush()
        return self.plans[name]

    def member(
        self,
        name: str,
        email: str,
        *,
        plan: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        badge: bytes | None = None,
    ) -> int:
        """A member, on `plan` from `since` (a month ago) to `until`, holding a badge of
        UID `badge` (its token in `tokens[email]`)."""
        member = registry.create_member(self.session, name=name, email=email)
        self.session.flush()
        self.members[email] = member.id
        if plan is not None:
            start = since or datetime.now(UTC) - timedelta(days=30)
            registry.create_membership(self.session, member_id=member.id, plan_id=plan,
                                       starts_at=start, ends_at=until)  # fmt: skip
        if badge is not None:
            key = registry.site_key_of(self.session, self.id)
            self.tokens[email] = registry.enrol_badge(self.session, member.id, key, badge).token
        self.session.flush()
        return member.id
