"""Ruche's migrations down to the first and up again keep the registry whole.

On SQLite, Alembic alters a table by rebuilding it (copy, drop, rename): with foreign
keys on, dropping `agents` or `members` would empty their children's links (ON DELETE
SET NULL) or their children (CASCADE). `ruche.server.storage.db.migrating` turns them off
and checks them before committing; this walks every migration both ways through it."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from ruche.server.storage.db import alembic_config, make_engine, make_sessions, migrating
from ruche.sim.testing.sites import SiteBuilder

pytestmark = pytest.mark.integration

# What the first revision already has, so that it is there at both ends of the walk.
LINKS = """
SELECT 'door', doors.slug, agents.slug FROM doors LEFT JOIN agents ON agents.id = doors.agent_id
UNION ALL
SELECT 'desk', desks.slug, agents.slug FROM desks LEFT JOIN agents ON agents.id = desks.agent_id
UNION ALL
SELECT 'badge', badges.token, members.email
  FROM badges JOIN members ON members.id = badges.member_id
UNION ALL
SELECT 'membership', members.email, plans.name FROM memberships
  JOIN members ON members.id = memberships.member_id JOIN plans ON plans.id = memberships.plan_id
ORDER BY 1, 2
"""


def links(url: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(LINKS))]
    finally:
        engine.dispose()


class TestMigrationsRoundTrip:
    """Every downgrade, then every upgrade, leaves doors, desks, badges and memberships
    linked to what they were linked to."""

    def test_down_to_the_first_revision_and_back(self, db_url: str) -> None:
        engine = make_engine(db_url)
        try:
            with make_sessions(engine).begin() as session:
                site = SiteBuilder(session, "lyon")
                site.agent("door-a", doors=["front", "back"])
                site.agent("desks-1", desks=["d1", "d2"])
                resident = site.plan("resident")
                site.member("Ada", "ada@example.org", plan=resident, badge=b"\x04\xa2\x2b\x1a")
        finally:
            engine.dispose()
        before = links(db_url)
        assert ("door", "front", "door-a") in before
        assert len(before) == 6
        scripts = ScriptDirectory.from_config(alembic_config(db_url))
        first = scripts.get_base()
        assert isinstance(first, str)
        with migrating(db_url) as config:
            command.downgrade(config, first)
        assert links(db_url) == before
        with migrating(db_url) as config:
            command.upgrade(config, "head")
        assert links(db_url) == before
