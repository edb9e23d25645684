"""Schemathesis against the app's own OpenAPI document: no 500, no response off its schema.

As an admin, on a seeded SQLite database, through schemathesis's in-process ASGI client
(no network). Examples are bounded per operation so the run stays well under a minute.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.orm import sessionmaker

from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

T0 = datetime(2030, 3, 11, 9, 0, tzinfo=UTC)
EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, str]:
    """A migrated SQLite file holding one of everything (ids 1), and an admin key for it."""
    path = tmp_path_factory.mktemp("schemathesis") / "template.db"
    url = f"sqlite:///{path}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        site = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris")
        registry.add_holiday(s, site.id, T0.date(), "seed")
        zone = registry.create_zone(s, site_id=site.id, name="open space")
        agent = registry.create_agent(s, site_id=site.id, slug="pi")
        desk = registry.create_desk(s, zone_id=zone.id, slug="d1", agent_id=agent.id)
        registry.create_door(s, site_id=site.id, slug="front", agent_id=agent.id)
        member = registry.create_member(s, name="Ada", email="ada@example.org")
        plan = registry.create_plan(
            s, name="Flex", site_ids=[site.id], schedule={"kind": "business_hours"}
        )
        registry.create_membership(s, member_id=member.id, plan_id=plan.id, starts_at=T0)
        registry.enrol_badge(s, member.id, registry.site_key_of(s, site.id), b"\x04\xa2\x24")
        registry.book(
            s,
            member_id=member.id,
            site_id=site.id,
            desk_id=desk.id,
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
        )
        registry.add_day_pass(s, member_id=member.id, site_id=site.id, day=T0.date())
        _, secret = registry.create_api_key(s, role=Role.ADMIN, name="schemathesis")
    engine.dispose()  # checkpoints the WAL: the file alone holds everything
    return path, secret


@pytest.fixture
def seeded(template, tmp_path):
    """The app on a fresh copy of the template, so one operation's deletions (of the admin
    key itself, say) do not starve the next operation."""
    path, secret = template
    copy = tmp_path / "ruche.db"
    shutil.copyfile(path, copy)
    engine = make_engine(f"sqlite:///{copy}")
    recorder = RecordingPorts()
    yield create_app(sessions=make_sessions(engine), commands=recorder, listener=recorder), secret
    engine.dispose()


@pytest.fixture
def api_schema(seeded):
    app, _ = seeded
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, read from an app on no database at all."""
    app = create_app(sessions=sessionmaker(), commands=RecordingPorts(), listener=RecordingPorts())
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    )


# Schemathesis's own pytest integration (`schemathesis.pytest.from_fixture`) reads
# pytest's private `request.node._nodeid`, which pytest 9 no longer has; its Python API
# (`APIOperation.as_strategy`) under Hypothesis's `@given` does the same work.
@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_server_error_and_conforming_responses(api_schema, seeded, method, path):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {seeded[1]}"}
    cases = st.one_of(
        # The documented examples (ids 1, which the template holds): past the 404s.
        *api_schema.get_strategies_from_examples(operation),
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,  # the same examples on every run: a CI failure reproduces locally
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )

    check()
