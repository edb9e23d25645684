"""The demo's registry: the harness's site, agent, door and desks, and two members whose
badges the simulated tapper presents (one may come in, one has been revoked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ruche.server import registry
from ruche.server.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.models import Role
from ruche.sim.harness import AGENT, BADGES, SITE, SITE_KEY


def seed_demo_site(url: str, *, desks: int) -> str:
    """Migrate and fill the registry; return an admin API key (its only appearance)."""
    run_migrations(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            key = registry.create_site_key(session, bytes.fromhex(SITE_KEY))
            site = registry.create_site(session, slug=SITE, name="Demo lab",
                                        timezone="Europe/Paris", key_id=key.id)  # fmt: skip
            agent = registry.create_agent(session, site_id=site.id, slug=AGENT)
            session.flush()
            registry.create_door(session, site_id=site.id, slug="front", agent_id=agent.id)
            zone = registry.create_zone(session, site_id=site.id, name="Open space")
            session.flush()
            for i in range(desks):
                registry.create_desk(session, zone_id=zone.id, slug=f"desk-{i}",
                                     agent_id=agent.id, x=i, y=0)  # fmt: skip
            plan = registry.create_plan(session, name="Resident", site_ids=[site.id],
                                        schedule={"kind": "24/7"})  # fmt: skip
            since = datetime.now(UTC) - timedelta(days=30)
            for name, email, uid in (
                ("Ada Lovelace", "ada@demo.example", BADGES[0]),
                ("Bob Stale", "bob@demo.example", BADGES[1]),
            ):
                member = registry.create_member(session, name=name, email=email)
                session.flush()
                registry.create_membership(session, member_id=member.id, plan_id=plan.id,
                                           starts_at=since)  # fmt: skip
                badge = registry.enrol_badge(session, member.id, key, uid)
                session.flush()
                if email.startswith("bob"):
                    registry.revoke_badge(session, badge.id)
            _, secret = registry.create_api_key(session, role=Role.ADMIN, name="demo")
            return secret
    finally:
        engine.dispose()
