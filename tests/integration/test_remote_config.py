"""Agents configured from the registry: the config publisher against a real Mosquitto and
SQLite, with real agents (mock GPIO pins, readers on nfcpy's UDP driver).

An agent whose file lists no doors and no desks takes them from its retained `config`,
applies a change within seconds without a restart and without losing queued events,
refuses a config it cannot apply (the previous one keeps running, the refusal is in its
status), and starts from the last config it applied when the server is away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from ruche.broker import (
    AgentConfig,
    Channel,
    DeskSensor,
    DoorHardware,
    PresenceState,
    Status,
    Topic,
    decode_payload,
)
from ruche.edge.agent import Agent
from ruche.edge.run import expected_threads, stalled_threads
from ruche.edge.settings import AgentSettings, MqttSettings
from ruche.server import registry
from ruche.server.errors import Invalid
from ruche.server.messaging.connection import MqttOptions
from ruche.server.registry.config_publisher import ConfigPublisher
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.sim.services.sockets import free_port
from ruche.sim.testing.sites import SiteBuilder
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

SITE_KEY = "00112233445566778899aabbccddeeff"


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture
def world(site, sessions) -> dict[str, int]:
    """The test's site in the registry, with its two agents and a zone: their ids."""
    with transaction(sessions) as session:
        built = SiteBuilder(session, slug=site.site)
        return {"site": built.id, "agent-a": built.agent("agent-a"),
                "agent-b": built.agent("agent-b"), "zone": built.zone("open space")}  # fmt: skip


@pytest.fixture
def publisher(site, sessions, world) -> Iterator[ConfigPublisher]:
    server = site.broker.server
    options = MqttOptions(
        host=site.broker.host,
        port=site.broker.port,
        username=server.username,
        password=server.password.get_secret_value(),
    )
    running = ConfigPublisher(sessions, options)
    running.start()
    yield running
    running.stop()


def door_wiring(port: int, **changes: object) -> DoorHardware:
    return DoorHardware(reader=f"udp:127.0.0.1:{port}", relay_pin=17, contact_pin=27,
                        **changes)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def agents(site, tmp_path) -> Iterator[Callable[..., Agent]]:
    made: list[tuple[Agent, MockFactory]] = []

    def make(name: str = "agent-a", *, state: Path | None = None) -> Agent:
        account = site.agents[name]
        settings = AgentSettings(
            site=site.site, agent=name, site_key=SITE_KEY, gpio="mock",
            state_dir=state or tmp_path / name,
            mqtt=MqttSettings(host=site.broker.host, port=site.broker.port,
                              username=account.username,
                              password=account.password.get_secret_value(), resend_after_s=1.0),
        )  # fmt: skip
        assert settings.managed
        factory = MockFactory()
        agent = Agent(settings, pin_factory=factory)
        made.append((agent, factory))
        agent.start()
        return agent

    yield make
    for agent, factory in made:
        agent.stop()
        factory.close()


def settled(agent: Agent, publisher: ConfigPublisher, *, after: int | None = None) -> int:
    """Wait until the agent runs the config last published for it (newer than `after`)."""
    remote = agent.remote
    assert remote is not None
    key = (agent.settings.site, agent.settings.agent)

    def applied() -> bool:
        published = publisher.stats.last.get(key)
        version = remote.version
        return (published is not None and version == published[0]
                and (after is None or version > after))  # fmt: skip

    wait_until(applied, timeout=10, what="the agent running the latest config")
    assert remote.version is not None
    return remote.version


def _statuses(site, agent: str) -> Callable[[], Status | None]:
    probe = site.connect_server()
    probe.subscribe(str(Topic.status(site.site, agent)))
    latest: list[Status] = []

    def last() -> Status | None:
        while not probe.messages.empty():
            payload = decode_payload(Channel.STATUS, probe.messages.get().payload)
            assert isinstance(payload, Status)
            latest.append(payload)
        return latest[-1] if latest else None

    return last


class TestRemoteConfig:
    def test_doors_and_desks_come_from_the_registry(self, site, sessions, world, publisher, agents):
        with transaction(sessions) as session:
            agent_a = world["agent-a"]
            registry.create_door(session, site_id=world["site"], slug="front", agent_id=agent_a,
                                 wiring=door_wiring(free_port(), unlock_ms=1500))  # fmt: skip
            registry.create_desk(session, zone_id=world["zone"], slug="d1", agent_id=agent_a,
                                 wiring=DeskSensor(pir_pin=5))  # fmt: skip
            registry.create_desk(session, zone_id=world["zone"], slug="unwired", agent_id=agent_a)
        publisher.publish_site(site.site)
        agent = agents()
        status = _statuses(site, "agent-a")
        version = settled(agent, publisher)
        assert set(agent.doors) == {"front"}
        wait_until(lambda: (s := status()) is not None and s.config_version == version,
                   timeout=10, what="the status naming the config")  # fmt: skip
        assert agent._door_settings["front"].unlock_ms == 1500
        assert agent._desk_settings.keys() == {"d1"}, "the unwired desk is left out"
        # The watchdog looks after the parts the config wired, and the thread applying it.
        assert {"remote-config", "nfc-reader-front-reader", "door-17", "pir-d1"} <= (
            expected_threads(agent)
        )
        assert stalled_threads(agent) == []

    def test_a_change_applies_without_restart_or_loss(
        self, site, sessions, world, publisher, agents
    ):
        with transaction(sessions) as session:
            door = registry.create_door(
                session,
                site_id=world["site"],
                slug="front",
                agent_id=world["agent-a"],
                wiring=door_wiring(free_port()),
            )
            door_id = door.id
        publisher.publish_site(site.site)
        agent = agents()
        first = settled(agent, publisher)
        assert "front" in agent.doors
        connects = agent.link.stats.connects
        # Events queued while the server cannot ack (it is not running here): none lost.
        seqs = [agent.record_presence("x", PresenceState.OCCUPIED) for _ in range(5)]
        with transaction(sessions) as session:
            registry.update_door(session, door_id, wiring=door_wiring(free_port(), unlock_ms=700))
            registry.create_desk(
                session,
                zone_id=world["zone"],
                slug="d2",
                agent_id=world["agent-a"],
                wiring=DeskSensor(pir_pin=6),
            )
        started = time.monotonic()
        publisher.site_changed(site.site)
        settled(agent, publisher, after=first)
        assert time.monotonic() - started < 5
        assert agent._door_settings["front"].unlock_ms == 700
        assert "d2" in agent._desk_settings
        assert agent.link.stats.connects == connects, "the agent reconnected"
        assert agent.outbox.depth >= len(seqs)
        assert [item.seq for item in agent.outbox.pending(after=0, limit=100)][: len(seqs)] == seqs

    def test_a_config_it_cannot_apply_is_refused(self, site, sessions, world, publisher, agents):
        with transaction(sessions) as session:
            door = registry.create_door(
                session,
                site_id=world["site"],
                slug="front",
                agent_id=world["agent-a"],
                wiring=door_wiring(free_port()),
            )
            door_id = door.id
        publisher.publish_site(site.site)
        agent = agents()
        status = _statuses(site, "agent-a")
        running = settled(agent, publisher)
        assert "front" in agent.doors
        reader = agent._readers["front"]
        with transaction(sessions) as session:
            missing = DoorHardware(reader="tty:ttyNOPE9:pn532", relay_pin=17, contact_pin=27)
            registry.update_door(session, door_id, wiring=missing)
        publisher.site_changed(site.site)
        wait_until(lambda: (s := status()) is not None and s.config_refused is not None,
                   timeout=10, what="the refusal in the status")  # fmt: skip
        last = status()
        assert last is not None
        assert last.config_version == running
        assert last.config_refused is not None
        assert "ttyNOPE9" in last.config_refused
        # The previous door runs again, on a reader opened anew.
        assert agent.remote.version == running
        assert "front" in agent.doors
        assert agent._readers["front"] is not reader
        assert agent._door_settings["front"].reader.startswith("udp:")

    def test_it_starts_from_its_last_config_when_the_server_is_away(  # noqa: PLR0917 - fixtures
        self, site, sessions, world, publisher, agents, tmp_path
    ):
        with transaction(sessions) as session:
            registry.create_door(
                session,
                site_id=world["site"],
                slug="front",
                agent_id=world["agent-b"],
                wiring=door_wiring(free_port()),
            )
        publisher.publish_site(site.site)
        state = tmp_path / "b-state"
        agent = agents("agent-b", state=state)
        settled(agent, publisher)
        assert "front" in agent.doors
        agent.stop()
        publisher.stop()  # and the retained config is gone from the broker too
        probe = site.connect_server()
        probe.publish(str(Topic.config(site.site, "agent-b")), b"", retain=True)
        again = agents("agent-b", state=state)
        assert set(again.doors) == {"front"}
        assert again.remote is not None
        assert again.remote.running is not None

    def test_the_registry_refuses_wiring_that_clashes(self, sessions, world):
        agent = world["agent-a"]
        with transaction(sessions) as session:
            registry.create_door(session, site_id=world["site"], slug="front", agent_id=agent,
                                 wiring=door_wiring(free_port()))  # fmt: skip
        with pytest.raises(Invalid, match="wired to two things"), transaction(sessions) as session:
            registry.create_desk(session, zone_id=world["zone"], slug="d1", agent_id=agent,
                                 wiring=DeskSensor(pir_pin=17))  # fmt: skip


def test_config_round_trips_through_the_contract():
    config = AgentConfig.model_validate(
        {"version": 3, "issued": "2026-12-07T10:00:00+01:00",
         "doors": [{"id": "front", "relay_pin": 17, "contact_pin": 27}]}, strict=False,
    )  # fmt: skip
    assert config.doors[0].unlock_ms == 3000
