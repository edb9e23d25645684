"""The allow-list publisher against a real Mosquitto and real SQL, with a real agent.

Lists are checked as retained messages on each agent's topic, against what
`allowlist_windows` says; a change is republished within a second, and a revoked badge
is refused within a second both by the server and by an agent deciding from its cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ruche.broker import Allowlist, Channel, Deny, Tap, Topic, decode_payload, encode, topic_filter
from ruche.edge.agent import Agent
from ruche.mqtt import publish_properties
from ruche.server import registry
from ruche.server.access.allowlists import AllowlistPublisher
from ruche.server.access.facts import load_allowlist_inputs
from ruche.server.access.rules import allowlist_windows
from ruche.server.access.taps import DoorWorker
from ruche.server.messaging.connection import MqttOptions
from ruche.server.registry.schedule import merge_intervals
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import BadgeStatus
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

SITE_KEY = "00112233445566778899aabbccddeeff"
TUESDAY_10 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # 10:00 in Paris


def uid(name: str) -> bytes:
    return name.encode().ljust(8, b"\0")[:8]


def build_world(sessions, slug: str) -> dict[str, int | str]:
    """A site with two agents (agent-a: front, gate, locked-down vault; agent-b: side)."""
    ids: dict[str, int | str] = {}
    since = datetime(2026, 1, 1, tzinfo=UTC)
    with transaction(sessions) as s:
        key = registry.create_site_key(s, bytes.fromhex(SITE_KEY))
        site = registry.create_site(s, slug=slug, name="T", timezone="Europe/Paris", key_id=key.id)
        other = registry.create_site(
            s, slug=f"{slug}-o", name="O", timezone="Europe/Paris", key_id=key.id
        )
        a = registry.create_agent(s, site_id=site.id, slug="agent-a")
        b = registry.create_agent(s, site_id=site.id, slug="agent-b")
        registry.create_door(s, site_id=site.id, slug="front", agent_id=a.id)
        registry.create_door(s, site_id=site.id, slug="gate", agent_id=a.id)
        vault = registry.create_door(s, site_id=site.id, slug="vault", agent_id=a.id)
        registry.update_door(s, vault.id, locked_down=True)
        registry.create_door(s, site_id=site.id, slug="side", agent_id=b.id)
        zone = registry.create_zone(s, site_id=site.id, name="open")
        ids["site"], ids["desk"] = site.id, registry.create_desk(s, zone_id=zone.id, slug="d1").id
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
        for name, plan, status in [
            ("ada", "resident", BadgeStatus.ACTIVE),
            ("bob", "office", BadgeStatus.ACTIVE),
            ("cyd", "booker", BadgeStatus.ACTIVE),
            ("dan", "elsewhere", BadgeStatus.ACTIVE),
            ("fay", "resident", BadgeStatus.REVOKED),
            ("gus", "resident", BadgeStatus.DISABLED),
        ]:
            member = registry.create_member(s, name=name, email=f"{name}@example.org")
            registry.create_membership(
                s, member_id=member.id, plan_id=plans[plan].id, starts_at=since
            )
            badge = registry.enrol_badge(s, member.id, key, uid(name))
            if status is not BadgeStatus.ACTIVE:
                registry.set_badge_status(s, badge.id, status)
            ids[name], ids[f"{name}-badge"], ids[f"{name}-member"] = (
                badge.token,
                badge.id,
                member.id,
            )
    return ids


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    yield make_sessions(engine)
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
def started(site) -> Iterator[Callable]:
    """Start publishers and workers on the test's broker; stopped afterwards."""
    running: list = []

    def start(thing):
        thing.start()
        running.append(thing)
        return thing

    yield start
    for thing in reversed(running):
        thing.stop()


class Lists:
    """The server account watching the site's allow-list topics."""

    def __init__(self, site) -> None:
        self.probe = site.connect_server()
        self.probe.subscribe(topic_filter(Channel.ALLOWLIST, site=site.site))

    def next(self, timeout: float = 5.0) -> tuple[str, Allowlist, bool]:
        (msg,) = self.probe.take(1, timeout=timeout)
        allowlist = decode_payload(Channel.ALLOWLIST, msg.payload)
        assert isinstance(allowlist, Allowlist)
        return Topic.parse(msg.topic).agent, allowlist, bool(msg.retain)

    def next_for(self, agent: str, timeout: float = 5.0) -> Allowlist:
        deadline = time.monotonic() + timeout
        while True:
            got, allowlist, _ = self.next(timeout=max(deadline - time.monotonic(), 0.01))
            if got == agent:
                return allowlist


def windows_of(allowlist: Allowlist) -> dict[str, list[tuple[datetime, datetime]]]:
    return {e.token: [(w.start, w.end) for w in e.windows] for e in allowlist.entries}


class TestPublication:
    """Each agent's list is retained, covers its doors, and matches allowlist_windows."""

    def test_contents(self, site, sessions, started):
        ids = build_world(sessions, site.site)
        start, end = TUESDAY_10, TUESDAY_10 + timedelta(hours=24)
        with transaction(sessions) as s:
            registry.book(
                s,
                member_id=ids["cyd-member"],
                site_id=ids["site"],
                desk_id=ids["desk"],
                starts_at=start + timedelta(hours=3),
                ends_at=start + timedelta(hours=5),
                grace_before=10,
                grace_after=5,
            )
        publisher = started(
            AllowlistPublisher(sessions, server_options(site), clock=lambda: TUESDAY_10)
        )
        wait_until(lambda: publisher.stats.published == 2)
        # Sent is not yet at the broker: a first reader's two copies say it has both.
        first = Lists(site)
        assert {first.next()[0] for _ in range(2)} == {"agent-a", "agent-b"}
        # Retained: a client that comes later gets both lists at once.
        late = Lists(site)
        lists = {
            agent: (allowlist, retain)
            for agent, allowlist, retain in (late.next() for _ in range(2))
        }
        a, a_retained = lists["agent-a"]
        b, b_retained = lists["agent-b"]
        assert a_retained
        assert b_retained
        assert (a.issued, a.expires) == (start, end)
        assert a.version == publisher.stats.last_versions[(site.site, "agent-a")]
        assert a.revoked == tuple(sorted([ids["fay"], ids["gus"]]))
        assert {e.doors for e in a.entries} == {("front", "gate")}, "not the locked-down vault"
        assert {e.doors for e in b.entries} == {None}
        hour = timedelta(hours=1)
        expected = {
            ids["ada"]: [(start, end)],
            # Business hours: Tuesday 10:00-19:00 and Wednesday 08:00-10:00, Paris time.
            ids["bob"]: [(start, start + 9 * hour), (start + 22 * hour, end)],
            ids["cyd"]: [
                (start + 3 * hour - timedelta(minutes=10), start + 5 * hour + timedelta(minutes=5))
            ],
        }
        assert windows_of(a) == expected
        assert windows_of(b) == expected
        # The same as the pure rule, holder by holder.
        with transaction(sessions) as s:
            inputs = load_allowlist_inputs(s, site.site, "agent-a", start, end)
        computed = {}
        for holder in inputs.holders:
            windows = [
                w
                for f in holder.facts_over(start, end)
                for w in allowlist_windows(f, inputs.site, inputs.doors, start, end)
            ]
            if windows:
                computed[holder.badge.token] = merge_intervals(windows, start, end)
        assert computed == expected

    def test_republished_within_a_second_of_a_change(self, site, sessions, started):
        ids = build_world(sessions, site.site)
        publisher = started(AllowlistPublisher(sessions, server_options(site)))
        wait_until(lambda: publisher.stats.published == 2)
        lists = Lists(site)
        first = lists.next_for("agent-a")
        lists.next_for("agent-b")
        assert ids["cyd"] not in windows_of(first)

        now = datetime.now(UTC)
        with transaction(sessions) as s:
            registry.book(
                s,
                member_id=ids["cyd-member"],
                site_id=ids["site"],
                desk_id=ids["desk"],
                starts_at=now + timedelta(hours=1),
                ends_at=now + timedelta(hours=2),
            )
        changed = time.monotonic()
        for _ in range(5):  # a burst of changes coalesces into one publication
            publisher.site_changed(site.site)
        booked = lists.next_for("agent-a", timeout=1.0)
        booked_after = time.monotonic() - changed
        assert ids["cyd"] in windows_of(booked)
        assert booked.version > first.version

        with transaction(sessions) as s:
            registry.revoke_badge(s, ids["ada-badge"])
        changed = time.monotonic()
        publisher.site_changed(site.site)
        revoked = lists.next_for("agent-a", timeout=1.0)
        revoked_after = time.monotonic() - changed
        assert ids["ada"] in revoked.revoked
        assert ids["ada"] not in windows_of(revoked)
        assert revoked.version > booked.version
        time.sleep(0.3)
        assert publisher.stats.published == 6, "one list per agent per burst of changes"
        print(
            f"\nrepublished after a booking in {booked_after * 1000:.0f} ms, "
            f"after a revocation in {revoked_after * 1000:.0f} ms"
        )


@pytest.fixture
def agent(edge_agent) -> Agent:
    return edge_agent().agent


class TestRevocation:
    """A revoked badge is refused within a second, by the agent's cache and by the server."""

    def test_agent_cache_with_the_server_silent(self, site, sessions, started, agent):
        ids = build_world(sessions, site.site)
        publisher = started(AllowlistPublisher(sessions, server_options(site)))
        wait_until(lambda: agent.allowlist_version is not None)
        before = agent.tap("front", uid("ada"), "front-reader")
        assert (before.allowed, before.source, before.reason) == (True, "offline", "allowlist_ok")
        version = agent.allowlist_version

        with transaction(sessions) as s:
            registry.revoke_badge(s, ids["ada-badge"])
        revoked_at = time.monotonic()
        publisher.site_changed(site.site)
        wait_until(lambda: agent.allowlist_version != version, timeout=1.0)
        after = agent.tap("front", uid("ada"), "front-reader")
        elapsed = time.monotonic() - revoked_at
        assert (after.allowed, after.source, after.reason) == (False, "offline", "revoked")
        assert elapsed < 1.0 + 0.3, "the new list within a second, then the 300 ms tap timeout"
        print(
            f"\nrevoked to refused by the agent's cache (tap timeout included): "
            f"{elapsed * 1000:.0f} ms"
        )

    def test_server_told_only_through_the_allowlist(self, site, sessions, started):
        """A worker that is not the registry's listener (another process) learns from the
        republished allow-list."""
        ids = build_world(sessions, site.site)
        publisher = started(AllowlistPublisher(sessions, server_options(site)))
        worker = started(DoorWorker(sessions, server_options(site), site=site.site))
        probe = site.connect_agent("agent-a")
        cmd = str(Topic.cmd(site.site, "agent-a"))
        probe.subscribe(cmd)
        seq = iter(range(1, 100))

        def tap() -> str:
            n = next(seq)
            request = Tap(
                seq=n,
                ts=datetime.now(UTC),
                mono=0.0,
                token=ids["ada"],
                reader="r",
                request_id=f"r{n}",
            )
            probe.client.publish(
                str(Topic.tap(site.site, "agent-a", "front")),
                encode(request),
                qos=1,
                properties=publish_properties(response_topic=cmd),
            )
            (msg,) = probe.take(1)
            answer = decode_payload(Channel.CMD, msg.payload)
            return answer.reason if isinstance(answer, Deny) else answer.cmd

        assert tap() == "unlock"
        wait_until(lambda: worker.cache.snapshot(site.site) is not None)
        assert tap() == "unlock"
        with transaction(sessions) as s:
            registry.revoke_badge(s, ids["ada-badge"])
        revoked_at = time.monotonic()
        publisher.site_changed(site.site)  # the worker itself is not told
        while tap() == "unlock":
            assert time.monotonic() - revoked_at < 1.0, "still allowed a second after"
        assert tap() == "badge_revoked"
        print(
            f"\nrevoked to refused by the server (through the allow-list): "
            f"{(time.monotonic() - revoked_at) * 1000:.0f} ms"
        )
