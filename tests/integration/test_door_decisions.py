"""The door decision worker against a real Mosquitto and real SQL (SQLite and PostgreSQL).

Taps are real MQTT v5 requests: from a paho client playing the agent (response topic
and correlation data set by hand), and from a real `Agent` on gpiozero mock pins.
The server's clock is a parameter, so bookings and schedules are tested at chosen
instants without waiting for them.
"""

from __future__ import annotations

import socket
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from ruche.broker import Channel, Deny, Tap, Topic, Unlock, badge_token, decode_payload, encode
from ruche.edge.agent import Agent
from ruche.mqtt import publish_properties
from ruche.server import registry
from ruche.server.access import audit
from ruche.server.access.taps import DoorWorker
from ruche.server.messaging.connection import MqttOptions
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditSource, BadgeStatus, BookingStatus
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

SITE_KEY = "00112233445566778899aabbccddeeff"
# Tuesday 24 November 2026, 10:00 in Paris (CET, UTC+1).
TUESDAY_10 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SATURDAY_12 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


class Clock:
    """The server's wall clock, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    """A site in the registry: its doors, members and their badges' tokens by name."""

    site: str
    tokens: dict[str, str] = field(default_factory=dict)
    badge_ids: dict[str, int] = field(default_factory=dict)
    member_ids: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)


def uid(name: str) -> bytes:
    return name.encode().ljust(8, b"\0")[:8]


def build_world(sessions, site_slug: str) -> World:
    world = World(site_slug)
    with transaction(sessions) as s:
        key = registry.create_site_key(s, bytes.fromhex(SITE_KEY))
        site = registry.create_site(
            s, slug=site_slug, name="Test", timezone="Europe/Paris", key_id=key.id
        )
        other = registry.create_site(
            s, slug=f"{site_slug}-other", name="Other", timezone="Europe/Paris", key_id=key.id
        )
        world.ids["site"], world.ids["other"] = site.id, other.id
        agent_a = registry.create_agent(s, site_id=site.id, slug="agent-a")
        agent_b = registry.create_agent(s, site_id=site.id, slug="agent-b")
        registry.create_door(s, site_id=site.id, slug="front", agent_id=agent_a.id)
        registry.create_door(
            s, site_id=site.id, slug="gate", agent_id=agent_a.id, anti_passback=True
        )
        vault = registry.create_door(s, site_id=site.id, slug="vault", agent_id=agent_a.id)
        registry.update_door(s, vault.id, locked_down=True)
        registry.create_door(s, site_id=site.id, slug="side", agent_id=agent_b.id)
        world.ids["zone"] = registry.create_zone(s, site_id=site.id, name="open space").id
        world.ids["desk"] = registry.create_desk(s, zone_id=world.ids["zone"], slug="d1").id
        plans = {
            "resident": registry.create_plan(
                s, name="resident", site_ids=[site.id], schedule={"kind": "24/7"}
            ),
            "office": registry.create_plan(
                s, name="office", site_ids=[site.id], schedule={"kind": "business_hours"}
            ),
            "booker": registry.create_plan(
                s, name="booker", site_ids=[site.id], schedule={"kind": "24/7"}, booking_only=True
            ),
            "elsewhere": registry.create_plan(
                s, name="elsewhere", site_ids=[other.id], schedule={"kind": "24/7"}
            ),
        }
        since = datetime(2026, 1, 1, tzinfo=UTC)
        people = {
            "ada": ("resident", None, BadgeStatus.ACTIVE),
            "bob": ("office", None, BadgeStatus.ACTIVE),
            "cyd": ("booker", None, BadgeStatus.ACTIVE),
            "dan": ("elsewhere", None, BadgeStatus.ACTIVE),
            "eve": ("resident", datetime(2026, 6, 1, tzinfo=UTC), BadgeStatus.ACTIVE),
            "fay": ("resident", None, BadgeStatus.REVOKED),
            "gus": ("resident", None, BadgeStatus.DISABLED),
        }
        for name, (plan, ends, status) in people.items():
            member = registry.create_member(s, name=name, email=f"{name}@example.org")
            registry.create_membership(
                s, member_id=member.id, plan_id=plans[plan].id, starts_at=since, ends_at=ends
            )
            badge = registry.enrol_badge(s, member.id, key, uid(name))
            if status is not BadgeStatus.ACTIVE:
                registry.set_badge_status(s, badge.id, status)
            world.tokens[name] = badge.token
            world.badge_ids[name] = badge.id
            world.member_ids[name] = member.id
    return world


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    return url


@pytest.fixture
def sessions_for() -> Iterator[Callable[[str], object]]:
    engines = []

    def make(url: str):
        engine = make_engine(url)
        engines.append(engine)
        return make_sessions(engine)

    yield make
    for engine in engines:
        engine.dispose()


def server_options(site) -> MqttOptions:
    server = site.broker.server
    return MqttOptions(
        host=site.broker.host,
        port=site.broker.port,
        username=server.username,
        password=server.password.get_secret_value(),
    )


@pytest.fixture
def start_worker(site) -> Iterator[Callable[..., DoorWorker]]:
    workers: list[DoorWorker] = []

    def start(sessions, **kwargs) -> DoorWorker:
        worker = DoorWorker(sessions, server_options(site), site=site.site, **kwargs)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


class FakeAgent:
    """A paho client logged in as an agent, sending taps as MQTT v5 requests by hand."""

    def __init__(self, site, agent: str = "agent-a") -> None:
        self.site, self.agent = site.site, agent
        self.probe = site.connect_agent(agent)
        self.cmd = str(Topic.cmd(site.site, agent))
        self.probe.subscribe(self.cmd)
        # As a door agent should: Nagle's algorithm holds a tap behind the previous answer's
        # PUBACK until the broker's delayed ACK (40 ms).
        self.probe.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 0

    def send(self, door: str, token: str, *, reader: str = "reader-1", respond: bool = True) -> str:
        self.seq += 1
        request_id = uuid.uuid4().hex
        tap = Tap(
            seq=self.seq,
            ts=datetime.now(UTC),
            mono=time.monotonic(),
            token=token,
            reader=reader,
            request_id=request_id,
        )
        props = None
        if respond:
            props = publish_properties(response_topic=self.cmd, correlation=request_id.encode())
        self.probe.client.publish(
            str(Topic.tap(self.site, self.agent, door)), encode(tap), qos=1, properties=props
        )
        return request_id

    def answer(self, request_id: str, timeout: float = 5.0) -> tuple[Unlock | Deny, bytes | None]:
        (msg,) = self.probe.take(1, timeout=timeout)
        command = decode_payload(Channel.CMD, msg.payload)
        assert isinstance(command, Unlock | Deny)
        assert command.request_id == request_id
        correlation = getattr(msg.properties, "CorrelationData", None)
        return command, correlation

    def tap(self, door: str, token: str, *, reader: str = "reader-1") -> Unlock | Deny:
        request_id = self.send(door, token, reader=reader)
        command, correlation = self.answer(request_id)
        assert correlation == request_id.encode(), "the correlation data is echoed"
        return command


def verdict(command: Unlock | Deny) -> str:
    return "unlock" if isinstance(command, Unlock) else command.reason


class TestBookingWindow:
    """A member of a booking-only plan gets in during the booking plus grace, and not before."""

    def test_booking_plus_grace(self, site, db_url, sessions_for, start_worker):
        sessions = sessions_for(db_url)
        world = build_world(sessions, site.site)
        start, end = TUESDAY_10, TUESDAY_10 + timedelta(hours=2)
        with transaction(sessions) as s:
            registry.book(
                s,
                member_id=world.member_ids["cyd"],
                site_id=world.ids["site"],
                desk_id=world.ids["desk"],
                starts_at=start,
                ends_at=end,
                grace_before=10,
                grace_after=15,
            )
        clock = Clock(start - timedelta(hours=1))
        worker = start_worker(sessions, clock=clock, unlock_ms=2500)
        agent = FakeAgent(site)
        token = world.tokens["cyd"]

        seen = {}
        for label, at in [
            ("an hour before", start - timedelta(hours=1)),
            ("just before the grace", start - timedelta(minutes=10, seconds=1)),
            ("grace before", start - timedelta(minutes=10)),
            ("during", start + timedelta(minutes=30)),
            ("grace after", end + timedelta(minutes=14, seconds=59)),
            ("after the grace", end + timedelta(minutes=15)),
        ]:
            clock.now = at
            seen[label] = agent.tap("front", token)
        assert {k: verdict(v) for k, v in seen.items()} == {
            "an hour before": "no_booking",
            "just before the grace": "no_booking",
            "grace before": "unlock",
            "during": "unlock",
            "grace after": "unlock",
            "after the grace": "no_booking",
        }
        unlock = seen["during"]
        assert isinstance(unlock, Unlock)
        assert (unlock.door, unlock.ms) == ("front", 2500)

        # Every decision is in the audit log, online, with the tap's seq, chain intact.
        wait_until(lambda: worker.stats.audited == 6)
        with transaction(sessions) as s:
            rows = audit.query(s, member_id=world.member_ids["cyd"]).rows[::-1]
            assert audit.verify(s).ok
        assert [(r.allowed, r.reason, r.agent_seq) for r in rows] == [
            (False, "no_booking", 1),
            (False, "no_booking", 2),
            (True, "booking", 3),
            (True, "booking", 4),
            (True, "booking", 5),
            (False, "no_booking", 6),
        ]
        assert {(r.source, r.site, r.agent, r.door) for r in rows} == {
            (AuditSource.ONLINE, site.site, "agent-a", "front")
        }
        assert rows[2].decided_at == start - timedelta(minutes=10)

    def test_cancelled_booking_opens_nothing(self, site, sqlite_url, sessions_for, start_worker):
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        with transaction(sessions) as s:
            booking = registry.book(
                s,
                member_id=world.member_ids["cyd"],
                site_id=world.ids["site"],
                desk_id=world.ids["desk"],
                starts_at=TUESDAY_10,
                ends_at=TUESDAY_10 + timedelta(hours=1),
            )
        worker = start_worker(sessions, clock=Clock(TUESDAY_10))
        agent = FakeAgent(site)
        assert verdict(agent.tap("front", world.tokens["cyd"])) == "unlock"
        with transaction(sessions) as s:
            registry.cancel_booking(s, booking.id)
        worker.site_changed(site.site)
        assert verdict(agent.tap("front", world.tokens["cyd"])) == "no_booking"

    def test_a_late_member_released_as_no_show_still_gets_in(
        self, site, sqlite_url, sessions_for, start_worker
    ):
        """The desk is freed for others, but the front door still opens for the rest of the
        booking: a booking-only member has no other way in."""
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        with transaction(sessions) as s:
            booking = registry.book(
                s,
                member_id=world.member_ids["cyd"],
                site_id=world.ids["site"],
                desk_id=world.ids["desk"],
                starts_at=TUESDAY_10,
                ends_at=TUESDAY_10 + timedelta(hours=4),
            )
            registry.set_booking_status(s, booking.id, BookingStatus.NO_SHOW)
        late = TUESDAY_10 + timedelta(minutes=40)
        start_worker(sessions, clock=Clock(late))
        agent = FakeAgent(site)
        assert verdict(agent.tap("front", world.tokens["cyd"])) == "unlock"


class TestDenyReasons:
    """Every deny reason reachable end to end comes back as the Deny's reason."""

    def test_each_reason(self, site, sqlite_url, sessions_for, start_worker):
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        clock = Clock(TUESDAY_10)
        worker = start_worker(sessions, clock=clock)
        agent = FakeAgent(site)
        t = world.tokens
        stranger = badge_token(bytes.fromhex(SITE_KEY), uid("nobody"))
        results = {
            "ada at the front": agent.tap("front", t["ada"]),
            "bob in office hours": agent.tap("front", t["bob"]),
            "unknown badge": agent.tap("front", stranger),
            "revoked badge": agent.tap("front", t["fay"]),
            "disabled badge": agent.tap("front", t["gus"]),
            "locked-down door": agent.tap("vault", t["ada"]),
            "ended membership": agent.tap("front", t["eve"]),
            "plan of another site": agent.tap("front", t["dan"]),
            "booking-only, no booking": agent.tap("front", t["cyd"]),
            "door of another agent": agent.tap("side", t["ada"]),
            "no such door": agent.tap("nowhere", t["ada"]),
            "gate in": agent.tap("gate", t["ada"]),
            "gate in again": agent.tap("gate", t["ada"]),
            "gate out": agent.tap("gate", t["ada"], reader="gate-out"),
            "gate out again": agent.tap("gate", t["ada"], reader="gate-out"),
        }
        clock.now = SATURDAY_12
        results["bob on saturday"] = agent.tap("front", t["bob"])
        assert {k: verdict(v) for k, v in results.items()} == {
            "ada at the front": "unlock",
            "bob in office hours": "unlock",
            "unknown badge": "unknown_badge",
            "revoked badge": "badge_revoked",
            "disabled badge": "badge_disabled",
            "locked-down door": "door_locked_down",
            "ended membership": "member_inactive",
            "plan of another site": "wrong_site",
            "booking-only, no booking": "no_booking",
            "door of another agent": "unknown_door",
            "no such door": "unknown_door",
            "gate in": "unlock",
            "gate in again": "anti_passback",
            "gate out": "unlock",
            "gate out again": "anti_passback",
            "bob on saturday": "outside_schedule",
        }
        assert results["locked-down door"].door == "vault"
        wait_until(lambda: worker.stats.audited == len(results))
        assert worker.stats.answered == len(results)
        assert worker.stats.errors == 0

    def test_revocation_refused_at_once(self, site, sqlite_url, sessions_for, start_worker):
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        worker = start_worker(sessions, clock=Clock(TUESDAY_10))
        agent = FakeAgent(site)
        for _ in range(3):  # warm: the site's snapshot is built and serving
            assert verdict(agent.tap("front", world.tokens["ada"])) == "unlock"
        wait_until(lambda: worker.cache.snapshot(site.site) is not None)
        with transaction(sessions) as s:
            registry.revoke_badge(s, world.badge_ids["ada"])
        revoked_at = time.monotonic()
        worker.site_changed(site.site)
        assert verdict(agent.tap("front", world.tokens["ada"])) == "badge_revoked"
        assert time.monotonic() - revoked_at < 1.0


class TestRequestHygiene:
    """Bad payloads are counted, not fatal; resent taps and foreign answer topics get nothing."""

    def test_bad_payloads_are_counted(self, site, sqlite_url, sessions_for, start_worker):
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        worker = start_worker(sessions, clock=Clock(TUESDAY_10))
        agent = FakeAgent(site)
        topic = str(Topic.tap(site.site, "agent-a", "front"))
        props = publish_properties(response_topic=agent.cmd, correlation=b"x")
        for payload in [
            b"not json",
            b'{"v": 1}',
            b"[]",
            b'{"v": 2}',
            encode(
                Tap(
                    seq=1,
                    ts=TUESDAY_10,
                    mono=0.0,
                    token=world.tokens["ada"],
                    reader="r",
                    request_id="r1",
                )
            ).replace(b'"r"', b'"bad/id"'),
        ]:
            agent.probe.client.publish(topic, payload, qos=1, properties=props)
        # The worker is still there, and answers the next good tap.
        assert verdict(agent.tap("front", world.tokens["ada"])) == "unlock"
        assert worker.stats.bad == {
            "bad_json": 1,
            "missing_field": 1,
            "wrong_type": 1,
            "unsupported_version": 1,
            "bad_value": 1,
        }
        assert worker.stats.answered == 1

    def test_resent_taps_are_not_answered(self, site, sqlite_url, sessions_for, start_worker):
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        worker = start_worker(sessions, clock=Clock(TUESDAY_10))
        agent = FakeAgent(site)
        agent.send("front", world.tokens["ada"], respond=False)
        wait_until(lambda: worker.stats.resent == 1)
        assert agent.probe.messages.empty()
        # A response topic other than the agent's own cmd topic is refused.
        other = str(Topic.cmd(site.site, "agent-b"))
        tap = Tap(
            seq=9, ts=TUESDAY_10, mono=0.0, token=world.tokens["ada"], reader="r", request_id="r9"
        )
        agent.probe.client.publish(
            str(Topic.tap(site.site, "agent-a", "front")),
            encode(tap),
            qos=1,
            properties=publish_properties(response_topic=other, correlation=b"r9"),
        )
        wait_until(lambda: worker.stats.bad.get("response_topic") == 1)
        assert worker.stats.answered == 0


@pytest.fixture
def real_agent(edge_agent) -> Agent:
    return edge_agent().agent


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


class TestRealAgent:
    """A real agent's taps are decided online by the worker, and the latency is printed."""

    def test_agent_taps_online(self, site, real_agent, sqlite_url, sessions_for, start_worker):
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        worker = start_worker(sessions)  # the real clock: ada is 24/7
        ada, fay = uid("ada"), uid("fay")
        allowed = real_agent.tap("front", ada, "front-reader")
        denied = real_agent.tap("front", fay, "front-reader")
        assert (allowed.allowed, allowed.source) == (True, "online")
        assert (denied.allowed, denied.source, denied.reason) == (False, "online", "badge_revoked")
        assert real_agent.stats.taps_offline == 0
        wait_until(lambda: worker.stats.audited >= 2)
        with transaction(sessions) as s:
            rows = audit.query(s, site=site.site).rows
        assert {(r.token, r.allowed, r.agent_seq) for r in rows} == {
            (world.tokens["ada"], True, allowed.seq),
            (world.tokens["fay"], False, denied.seq),
        }

    def test_latency_probe(self, site, real_agent, sqlite_url, sessions_for, start_worker):
        """Tap-to-answer latency over 200 taps: printed, loosely bounded (the bench is strict)."""
        sessions = sessions_for(sqlite_url)
        world = build_world(sessions, site.site)
        worker = start_worker(sessions)
        fake = FakeAgent(site, "agent-b")
        wire: list[float] = []
        for i in range(220):
            started = time.perf_counter()
            request_id = fake.send("side", world.tokens["ada"])
            command, _ = fake.answer(request_id)
            if i >= 20:  # the first taps build the site's snapshot
                wire.append(time.perf_counter() - started)
            assert isinstance(command, Unlock)
        agent_side: list[float] = []
        for _ in range(100):
            outcome = real_agent.tap("front", uid("ada"), "front-reader")
            assert outcome.source == "online"
            agent_side.append(outcome.elapsed_s)
        p50, p99, worst = (x * 1000 for x in percentiles(wire))
        a50, a99, aworst = (x * 1000 for x in percentiles(agent_side))
        print(
            f"\ntap request to answer (paho client, 200 taps): p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms, max {worst:.2f} ms; cache {worker.cache.stats}"
        )
        print(
            f"agent.tap to online decision (real Agent, its outbox write included, "
            f"100 taps): "
            f"p50 {a50:.2f} ms, p99 {a99:.2f} ms, max {aworst:.2f} ms"
        )
        assert p50 < 50
