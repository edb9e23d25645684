"""Agents' door events into the audit log, against a real Mosquitto, SQL and a real agent.

The door decision worker is not running, so taps are decided offline from the cached
allow-list; nothing acks the agent's events at first, so its outbox resends them: each
must land in the audit log once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ruche.broker import (
    AllowEntry,
    Allowlist,
    DoorForced,
    DoorHeldOpen,
    Topic,
    Window,
    badge_token,
    encode,
)
from ruche.edge.agent import Agent
from ruche.edge.gpio import DoorPins
from ruche.server import registry
from ruche.server.access import audit
from ruche.server.access.door_events import DoorEventWorker, audit_entry
from ruche.server.messaging.connection import MqttOptions
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, AuditSource
from ruche.sim.door import ScriptedPerson, SimDoor, force_through, walk_through
from ruche.sim.receiver import EventReceiver
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

SITE_KEY = "00112233445566778899aabbccddeeff"
ADA = bytes.fromhex("0114b3c2d1e0f001")
STRANGER = bytes.fromhex("0114b3c2d1e0f0ff")
PINS = DoorPins(relay_pin=17, contact_pin=27, exit_pin=22)


def token(uid: bytes) -> str:
    return badge_token(bytes.fromhex(SITE_KEY), uid)


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture
def ada_id(sessions, site) -> int:
    with transaction(sessions) as s:
        key = registry.create_site_key(s, bytes.fromhex(SITE_KEY))
        row = registry.create_site(s, slug=site.site, name="T", timezone="Europe/Paris",
                                   key_id=key.id)  # fmt: skip
        agent = registry.create_agent(s, site_id=row.id, slug="agent-a")
        s.flush()
        registry.create_door(s, site_id=row.id, slug="front", agent_id=agent.id)
        member = registry.create_member(s, name="Ada", email="ada@example.org")
        registry.enrol_badge(s, member.id, key, ADA)
        return member.id


@pytest.fixture
def events(site, sessions, ada_id) -> Iterator[DoorEventWorker]:
    """The worker, on a site whose registry gives door `front` to agent-a."""
    server = site.broker.server
    options = MqttOptions(
        host=site.broker.host,
        port=site.broker.port,
        username=server.username,
        password=server.password.get_secret_value(),
    )
    worker = DoorEventWorker(sessions, options, site=site.site)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def door_rig(edge_agent) -> tuple[Agent, SimDoor]:
    rig = edge_agent(held_open_s=1.0, sim_door=True)
    return rig.agent, rig.sim


def publish_allowlist(site) -> None:
    now = datetime.now(UTC)
    allowlist = Allowlist(
        version=3,
        issued=now,
        expires=now + timedelta(hours=1),
        entries=(
            AllowEntry(
                token=token(ADA), windows=(Window(start=now, end=now + timedelta(hours=1)),)
            ),
        ),
    )
    server = site.connect_server()
    server.publish(str(Topic.allowlist(site.site, "agent-a")), encode(allowlist), retain=True)


def rows(sessions, site: str) -> list:
    with transaction(sessions) as s:
        return audit.query(s, site=site).rows[::-1]


class TestOfflineDecisions:
    """Offline decisions land in the audit log once each, with the agent's time and seq."""

    def test_once_even_when_resent(self, site, sessions, ada_id, events, door_rig):
        agent, _ = door_rig
        publish_allowlist(site)
        wait_until(lambda: agent.allowlist_version == 3)
        opened = agent.tap("front", ADA, "front-reader")
        refused = agent.tap("front", STRANGER, "front-reader")
        assert (opened.source, opened.allowed) == ("offline", True)
        assert (refused.source, refused.allowed) == ("offline", False)

        wait_until(lambda: len(rows(sessions, site.site)) == 2)
        # Nothing acks the agent: its outbox resends everything after a second.
        wait_until(lambda: agent.link.stats.resends >= 1, timeout=5)
        wait_until(lambda: events.stats.audited >= 4, timeout=5)
        logged = rows(sessions, site.site)
        assert [(r.kind, r.source, r.token, r.member_id, r.allowed, r.reason) for r in logged] == [
            (AuditKind.DECISION, AuditSource.OFFLINE, token(ADA), ada_id, True, "allowlist_ok"),
            (
                AuditKind.DECISION,
                AuditSource.OFFLINE,
                token(STRANGER),
                None,
                False,
                "unknown_badge",
            ),
        ]
        assert all((r.agent, r.door) == ("agent-a", "front") for r in logged)
        assert all(r.received_at >= r.decided_at for r in logged)
        with transaction(sessions) as s:
            assert audit.verify(s).ok

        # Once acked (the stand-in store), the resends stop; still two rows.
        server = site.broker.server
        receiver = EventReceiver(
            host=site.broker.host,
            port=site.broker.port,
            username=server.username,
            password=server.password.get_secret_value(),
            site=site.site,
        )
        receiver.start()
        try:
            wait_until(lambda: agent.outbox.depth == 0, timeout=10)
        finally:
            receiver.stop()
        assert len(rows(sessions, site.site)) == 2


class TestAlarms:
    """Forced and held-open alarms become audit rows; opened and closed do not."""

    def test_forced_and_held_open(self, site, sessions, events, door_rig):
        agent, sim = door_rig
        ScriptedPerson(sim).run(force_through(hold_s=0.2))
        agent.doors["front"].unlock(2000)
        ScriptedPerson(sim).run(walk_through(hold_s=1.6, wait_s=2.0))
        wait_until(lambda: len(rows(sessions, site.site)) == 2)
        wait_until(lambda: events.stats.ignored >= 4)  # opened and closed, twice
        logged = rows(sessions, site.site)
        assert [(r.kind, r.source, r.reason, r.allowed) for r in logged] == [
            (AuditKind.ALARM, AuditSource.AGENT, "forced", None),
            (AuditKind.ALARM, AuditSource.AGENT, "held_open", None),
        ]
        assert logged[0].agent_seq < logged[1].agent_seq


class TestEntries:
    """An alarm's audit row says what the agent saw, when it saw it."""

    def test_alarm_entry(self):
        ts = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
        topic = Topic.door_event("lyon", "door-a", "front")
        entry = audit_entry(
            topic,
            DoorHeldOpen(seq=7, ts=ts, mono=1.0, open_s=40.0),
            member_id=None,
            received_at=ts + timedelta(seconds=5),
        )
        assert (entry.kind, entry.source, entry.reason, entry.agent_seq) == (
            AuditKind.ALARM,
            AuditSource.AGENT,
            "held_open",
            7,
        )
        assert (entry.decided_at, entry.door) == (ts, "front")
        forced = audit_entry(
            topic, DoorForced(seq=8, ts=ts, mono=2.0), member_id=None, received_at=ts
        )
        assert forced.reason == "forced"
