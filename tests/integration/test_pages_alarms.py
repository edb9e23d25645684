"""The alarms page over HTTP (FastAPI's TestClient) on SQLite and PostgreSQL: doors forced
or held open and agents offline, acknowledged by a site's staff with who and when in the
audit log, and nobody else's.

Lyon (door `front` of agent a1, desk agent a2) and Paris (door `back` of agent p1) each
have a manager; Root is an admin, Ada a member. Agent status comes through a real LiveHub
(not connected to a broker: its messages are handed to it as the MQTT thread would).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Message, Status, Topic
from ruche.server.access import audit
from ruche.server.access.alarms import agent_key, door_key
from ruche.server.api.app import create_app
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.live import LiveHub
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import AuditKind, AuditSource, Role
from ruche.server.storage.models import AlarmAckRow, AuditRow
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.sites import SiteBuilder

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
LYON_MANAGER = "max@lyon.example"
PARIS_MANAGER = "pia@paris.example"
ROOT = "root@example.org"
ADA = "ada@example.org"


@dataclass
class World:
    app: FastAPI
    sessions: sessionmaker[Session]
    hub: LiveHub
    alarms: dict[str, int]
    """Audit row ids of the door alarms, by name."""

    def browser(self) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        client.get("/healthz")  # the CSRF cookie, as a first page would set it
        return client

    def token(self, client: TestClient) -> str:
        return self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])

    def signed_in(self, email: str) -> TestClient:
        client = self.browser()
        form = {"email": email, "password": PASSWORD, "csrf_token": self.token(client)}
        assert client.post("/signin", data=form).status_code == 303
        return client

    def ack(self, client: TestClient, alarm: str, site: str, **extra: Any) -> Any:
        form = {"alarm": alarm, "site": site, "csrf_token": self.token(client)} | extra
        return client.post("/manage/alarms/ack", data=form)

    def status(self, site: str, agent: str, state: str, ts: datetime) -> None:
        payload = Status(state=state, ts=ts)  # type: ignore[arg-type]
        self.hub.publish(Message(topic=Topic.status(site, agent), payload=payload))


def _alarm(session: Session, site: str, door: str, *, agent: str, reason: str, seq: int) -> int:
    when = datetime.now(UTC) - timedelta(minutes=10 - seq)
    entry = audit.AuditEntry(kind=AuditKind.ALARM, source=AuditSource.AGENT, site=site,
                             agent=agent, door=door, reason=reason, decided_at=when,
                             received_at=when, agent_seq=seq)  # fmt: skip
    return audit.append(session, entry).id


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lyon = SiteBuilder(s, "lyon", name="Lyon")
        lyon.agent("a1", doors=["front"])
        lyon.agent("a2", desks=["d1"], zone="Open space")
        paris = SiteBuilder(s, "paris", name="Paris")
        paris.agent("p1", doors=["back"])
        ada = lyon.member("Ada", ADA)
        people = [
            accounts.create_person(
                s, email=LYON_MANAGER, role=Role.MANAGER, site_id=lyon.id, now=now, locale="en"
            ),
            accounts.create_person(
                s, email=PARIS_MANAGER, role=Role.MANAGER, site_id=paris.id, now=now
            ),
            accounts.create_person(s, email=ROOT, role=Role.ADMIN, now=now, locale="en"),
            accounts.create_person(s, email=ADA, role=Role.MEMBER, member_id=ada, now=now),
        ]
        for person in people:
            person.password_hash = PASSWORD_HASH
        alarms = {
            "lyon-forced": _alarm(s, "lyon", "front", agent="a1", reason="forced", seq=1),
            "lyon-held": _alarm(s, "lyon", "front", agent="a1", reason="held_open", seq=2),
            "paris-forced": _alarm(s, "paris", "back", agent="p1", reason="forced", seq=3),
        }
    hub = LiveHub(sessions, MqttOptions(host="127.0.0.1", port=1, username="server",
                                        password="unused"))  # fmt: skip
    hub.reload()
    ports = RecordingPorts()
    app = create_app(sessions=sessions, commands=ports, listener=ports, live=hub)
    yield World(app, sessions, hub, alarms)
    engine.dispose()


def listed(html: str) -> list[str]:
    """The alarm keys a page lists, open and acknowledged, in order."""
    return re.findall(r'data-alarm="([^"]+)"', html)


def open_part(html: str) -> str:
    return html.split('id="acked-heading"', maxsplit=1)[0]


class TestWhoMayRead:
    """Staff of the site read its alarms; members and the signed-out do not."""

    def test_signed_out_goes_to_sign_in(self, world):
        answer = world.browser().get("/manage/alarms")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=%2Fmanage%2Falarms"

    def test_a_member_gets_a_403_page(self, world):
        ada = world.signed_in(ADA)
        page = ada.get("/manage/alarms")
        assert page.status_code == 403
        assert "Vous ne pouvez pas ouvrir cette page" in page.text
        assert ada.get("/manage/alarms/board").status_code == 403

    def test_a_manager_sees_only_their_sites_alarms(self, world):
        page = world.signed_in(LYON_MANAGER).get("/manage/alarms")
        assert page.status_code == 200
        assert listed(page.text) == [
            door_key(world.alarms["lyon-held"]),
            door_key(world.alarms["lyon-forced"]),
        ]
        assert "Door held open" in page.text
        assert "2 open alarms" in page.text
        paris = world.signed_in(PARIS_MANAGER).get("/manage/alarms")
        assert listed(paris.text) == [door_key(world.alarms["paris-forced"])]
        assert "1 alarme ouverte" in paris.text, "her own language: French"

    def test_a_manager_cannot_choose_another_site(self, world):
        page = world.signed_in(LYON_MANAGER).get("/manage/alarms?site=paris")
        assert page.status_code == 404
        assert "paris-forced" not in page.text

    def test_an_admin_switches_sites(self, world):
        root = world.signed_in(ROOT)
        assert listed(root.get("/manage/alarms?site=paris").text) == [
            door_key(world.alarms["paris-forced"])
        ]
        assert 'id="site-switch"' in root.get("/manage/alarms").text


class TestAcknowledge:
    """An acknowledgement records who and when, and an alarm_ack row in the chain."""

    def test_who_and_when_then_in_the_audit_log(self, world):
        client = world.signed_in(LYON_MANAGER)
        key = door_key(world.alarms["lyon-forced"])
        answer = world.ack(client, key, "lyon")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/manage/alarms?site=lyon&done=acknowledged"
        page = client.get(answer.headers["location"])
        assert "The alarm is acknowledged." in page.text
        assert key not in listed(open_part(page.text))
        assert "Acknowledged by max@lyon.example" in page.text
        with world.sessions() as s:
            ack = s.scalars(select(AlarmAckRow).where(AlarmAckRow.alarm == key)).one()
            assert ack.acknowledged_by.startswith("person:")
            assert ack.acknowledged_by.endswith(":max@lyon.example")
            row = s.scalars(select(AuditRow).where(AuditRow.kind == AuditKind.ALARM_ACK)).one()
            assert (row.site, row.door, row.agent) == ("lyon", "front", "a1")
            assert row.reason == f"forced #{world.alarms['lyon-forced']}"
            assert row.actor == ack.acknowledged_by
            assert audit.verify(s).ok

    def test_twice_is_harmless(self, world):
        client = world.signed_in(LYON_MANAGER)
        key = door_key(world.alarms["lyon-held"])
        assert world.ack(client, key, "lyon").status_code == 303
        again = world.ack(world.signed_in(ROOT), key, "lyon")
        assert again.status_code == 303
        with world.sessions() as s:
            acks = s.scalars(select(AlarmAckRow)).all()
            assert [a.acknowledged_by.endswith(LYON_MANAGER) for a in acks] == [True]
            kinds = s.scalars(select(AuditRow.kind).where(AuditRow.kind == AuditKind.ALARM_ACK))
            assert len(kinds.all()) == 1

    def test_another_sites_alarm_cannot_be_acknowledged_by_its_id(self, world):
        client = world.signed_in(LYON_MANAGER)
        paris = door_key(world.alarms["paris-forced"])
        assert world.ack(client, paris, "lyon").status_code == 404
        assert world.ack(client, paris, "paris").status_code == 404
        with world.sessions() as s:
            assert s.scalars(select(AlarmAckRow)).all() == []

    def test_an_audit_row_that_is_no_alarm_is_not_one(self, world):
        with transaction(world.sessions) as s:
            entry = audit.AuditEntry(kind=AuditKind.DECISION, source=AuditSource.ONLINE,
                                     site="lyon", door="front", allowed=True, reason="ok",
                                     decided_at=datetime.now(UTC),
                                     received_at=datetime.now(UTC))  # fmt: skip
            decision = audit.append(s, entry).id
        client = world.signed_in(LYON_MANAGER)
        assert world.ack(client, door_key(decision), "lyon").status_code == 404

    def test_a_mangled_key_is_a_page_not_a_500(self, world):
        client = world.signed_in(LYON_MANAGER)
        answer = world.ack(client, "audit:; drop table", "lyon")
        assert answer.status_code == 422
        assert "Some of what was sent is not valid" in answer.text

    def test_a_member_cannot_acknowledge(self, world):
        ada = world.signed_in(ADA)
        assert world.ack(ada, door_key(world.alarms["lyon-forced"]), "lyon").status_code == 403

    def test_without_the_csrf_token_nothing_happens(self, world):
        client = world.signed_in(LYON_MANAGER)
        form = {"alarm": door_key(world.alarms["lyon-forced"]), "site": "lyon"}
        assert client.post("/manage/alarms/ack", data=form).status_code == 403
        with world.sessions() as s:
            assert s.scalars(select(AlarmAckRow)).all() == []


class TestAgentsOffline:
    """An agent whose last status says offline is an alarm until acknowledged or back."""

    def test_offline_until_acknowledged_and_back(self, world):
        went = datetime.now(UTC) - timedelta(minutes=3)
        world.status("lyon", "a2", "offline", went)
        world.status("paris", "p1", "offline", went)
        world.status("lyon", "stranger", "offline", went)  # not in the registry: no alarm
        client = world.signed_in(LYON_MANAGER)
        key = agent_key("lyon", "a2", went)
        page = client.get("/manage/alarms/board")
        assert listed(page.text)[0] == key
        assert "Agent offline" in page.text
        assert "agent:paris" not in page.text
        assert "stranger" not in page.text
        assert world.ack(client, agent_key("paris", "p1", went), "lyon").status_code == 404
        assert world.ack(client, key, "lyon").status_code == 303
        page = client.get("/manage/alarms")
        assert key not in listed(open_part(page.text))
        assert key in listed(page.text), "shown as acknowledged"
        # Back online, then offline again: a new spell is a new alarm.
        world.status("lyon", "a2", "online", datetime.now(UTC))
        assert "agent:lyon" not in open_part(client.get("/manage/alarms").text)
        again = datetime.now(UTC) + timedelta(seconds=5)
        world.status("lyon", "a2", "offline", again)
        assert listed(open_part(client.get("/manage/alarms").text))[0] == agent_key(
            "lyon", "a2", again
        )
        with world.sessions() as s:
            row = s.scalars(select(AuditRow).where(AuditRow.kind == AuditKind.ALARM_ACK)).one()
            assert (row.site, row.agent, row.door) == ("lyon", "a2", None)
            assert row.reason is not None
            assert row.reason.startswith("agent_offline ")

    def test_the_board_changes_version_when_an_alarm_comes(self, world):
        client = world.signed_in(LYON_MANAGER)
        before = re.search(r'data-version="(\w+)"', client.get("/manage/alarms/board").text)
        with transaction(world.sessions) as s:
            _alarm(s, "lyon", "front", agent="a1", reason="forced", seq=9)
        after = re.search(r'data-version="(\w+)"', client.get("/manage/alarms/board").text)
        assert before is not None
        assert after is not None
        assert before[1] != after[1]
