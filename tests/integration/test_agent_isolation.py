"""One agent's credentials (a stolen Pi) reach only that agent's own topics and devices.

Against a real Mosquitto, twice: the test rig's broker, and one configured by
`ruche broker config` as for a real site, agents coming over its TLS listener. The
server's tap, door-event and ingestion workers run against a real SQLite registry where
`agent-a` drives door `front` and reads desk `a-desk`, and `agent-b` reads desk `b-desk`.
`agent-b` is the attacker.
"""

from __future__ import annotations

import getpass
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ruche.broker import (
    Channel,
    DoorForced,
    Presence,
    PresenceState,
    Tap,
    Topic,
    Unlock,
    decode_payload,
    encode,
    shared,
    topic_filter,
)
from ruche.broker.accounts import AgentAccount, ServerAccount
from ruche.broker.dynsec import CONTROL_TOPIC, RESPONSE_TOPIC
from ruche.broker.mosquitto_config import BrokerFiles
from ruche.broker.passwords import generate_password
from ruche.mqtt import publish_properties
from ruche.mqtt_wire import packet, utf8
from ruche.server.access.door_events import DoorEventWorker
from ruche.server.access.taps import DoorWorker
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.ingest import IngestWorker
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind
from ruche.server.storage.models import AuditRow, RefusedEventRow, StoredEventRow
from ruche.sim.services.mosquitto import MosquittoProcess
from ruche.sim.services.sockets import free_port
from ruche.sim.testing.sites import SiteBuilder
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

SITE_KEY = "00112233445566778899aabbccddeeff"
ADA = b"\x04\xa2\x2b\x1a\x00\x00\x01"
SERVER_GROUPS = ("ruche-doors", "ruche-ingest", "ruche-door-events")
"""The server workers' shared subscription groups."""


# --- the broker under test -----------------------------------------------------------


@dataclass
class SiteBroker:
    """A broker holding the site's accounts: the server on the plain listener, agents on
    the listener a site's agents use (TLS when `ca_file` is set)."""

    site: str
    server: ServerAccount
    agents: dict[str, AgentAccount]
    server_host: str
    server_port: int
    agent_port: int
    ca_file: Path | None
    probe: Callable[..., object]
    made: list[object] = field(default_factory=list)

    def options(self) -> MqttOptions:
        return MqttOptions(host=self.server_host, port=self.server_port,
                           username=self.server.username,
                           password=self.server.password.get_secret_value())  # fmt: skip

    def as_agent(self, name: str, *, client_id: str = "", connect: bool = True):
        """A probe logged in with agent `name`'s credentials (and its own client id unless
        another is given)."""
        account = self.agents[name]
        probe = self.probe(account.username, account.password.get_secret_value(),
                           client_id=client_id or account.client_id,
                           ca_file=self.ca_file)  # fmt: skip
        probe.host, probe.port = "localhost" if self.ca_file else self.server_host, self.agent_port
        if connect:
            reason = probe.connect()
            assert reason is not None
            assert not reason.is_failure, f"{name} refused: {reason}"
        return probe

    def connack(self, name: str, client_id: str) -> int:
        """Connect as agent `name` with `client_id` on a raw socket (a few milliseconds,
        where paho's loop takes most of a second to stop); return CONNACK's reason code."""
        account = self.agents[name]
        body = (utf8("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 30) + b"\x00"
                + utf8(client_id) + utf8(account.username)
                + utf8(account.password.get_secret_value()))  # fmt: skip
        raw = socket.create_connection((self.server_host, self.agent_port), timeout=5)
        if self.ca_file is not None:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            raw = context.wrap_socket(raw, server_hostname="localhost")
        with raw as sock:
            sock.sendall(packet(0x10, body))
            connack = sock.recv(64)
        assert connack[0] == 0x20, connack
        return connack[3]

    def as_server(self, client_id: str):
        probe = self.probe(self.server.username, self.server.password.get_secret_value(),
                           client_id=client_id)  # fmt: skip
        probe.host, probe.port = self.server_host, self.server_port
        assert not probe.connect().is_failure
        return probe


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    cert, key = tmp_path / "broker.crt", tmp_path / "broker.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _site_config_broker(tmp_path: Path, certificate: tuple[Path, Path]):
    """Mosquitto on what `ruche broker config` writes for a site, TLS listener included."""
    site = "lab"
    server = ServerAccount(password=generate_password())
    agents = {a: AgentAccount(site=site, id=a, password=generate_password())
              for a in ("agent-a", "agent-b")}  # fmt: skip
    accounts = tmp_path / "agents.toml"
    accounts.write_text(
        f'[server]\npassword = "{server.password.get_secret_value()}"\n'
        + "".join(f'\n[[agents]]\nsite = "{site}"\nid = "{a.id}"\n'
                  f'password = "{a.password.get_secret_value()}"\n' for a in agents.values()),
        encoding="utf-8",
    )  # fmt: skip
    cert, key = certificate
    port, tls_port, out = free_port(), free_port(), tmp_path / "broker"
    done = subprocess.run(
        [sys.executable, "-m", "ruche", "broker", "config", "--accounts", str(accounts),
         "--out", str(out), "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key),
         "--tls-port", str(tls_port), "--tls-bind", "127.0.0.1", "--run-as", getpass.getuser()],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = BrokerFiles(directory=out, conf=out / "mosquitto.conf",
                        dynsec=out / "dynamic-security.json", data=out / "data")  # fmt: skip
    process = MosquittoProcess(files, host="127.0.0.1", port=port)
    return process, site, server, agents, tls_port, cert


@pytest.fixture(params=["test-rig", "site-config-tls"])
def broker(request, tmp_path, probe_factory) -> Iterator[SiteBroker]:
    if request.param == "test-rig":
        rig = request.getfixturevalue("site")
        yield SiteBroker(rig.site, rig.broker.server, rig.agents, rig.broker.host,
                         rig.broker.port, rig.broker.port, None, probe_factory)  # fmt: skip
        return
    certificate = request.getfixturevalue("certificate")
    process, site, server, agents, tls_port, ca = _site_config_broker(tmp_path, certificate)
    process.start()
    try:
        yield SiteBroker(site, server, agents, "127.0.0.1", process.port, tls_port, ca,
                         probe_factory)  # fmt: skip
    finally:
        process.stop()


# --- the server side -------------------------------------------------------------------


@dataclass
class Server:
    sessions: object
    doors: DoorWorker
    door_events: DoorEventWorker
    ingest: IngestWorker

    def count(self, model: type, **where: object) -> int:
        with transaction(self.sessions) as session:  # type: ignore[arg-type]
            query = select(func.count()).select_from(model)
            for column, value in where.items():
                query = query.where(getattr(model, column) == value)
            return int(session.scalar(query) or 0)


@pytest.fixture
def server(broker: SiteBroker, tmp_path) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        site = SiteBuilder(s, broker.site, name="Lab", key=bytes.fromhex(SITE_KEY))
        site.agent("agent-a", doors=["front"], desks=["a-desk"])
        site.agent("agent-b", desks=["b-desk"])
        site.member("Ada", "ada@example.org", plan=site.plan("resident"), badge=ADA)
    options = broker.options()
    workers = Server(
        sessions,
        DoorWorker(sessions, options, site=broker.site),
        DoorEventWorker(sessions, options, site=broker.site),
        IngestWorker(sessions, options, site=broker.site),
    )
    for worker in (workers.doors, workers.door_events, workers.ingest):
        worker.start()
    yield workers
    for worker in (workers.doors, workers.door_events, workers.ingest):
        worker.stop()
    engine.dispose()


def ada_token() -> str:
    from ruche.broker import badge_token  # noqa: PLC0415

    return badge_token(bytes.fromhex(SITE_KEY), ADA)


class Door:
    """`agent-a` at door `front`: taps as MQTT v5 requests, forced-door alarms."""

    def __init__(self, broker: SiteBroker) -> None:
        self.site = broker.site
        self.probe = broker.as_agent("agent-a")
        self.cmd = str(Topic.cmd(self.site, "agent-a"))
        self.probe.subscribe(self.cmd)
        self.probe.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def tap(self, token: str, timeout: float = 5.0) -> Unlock:
        request_id = uuid.uuid4().hex
        tap = Tap(seq=self._next(), ts=datetime.now(UTC), mono=time.monotonic(), token=token,
                  reader="reader-1", request_id=request_id)  # fmt: skip
        props = publish_properties(response_topic=self.cmd, correlation=request_id.encode())
        self.probe.client.publish(str(Topic.tap(self.site, "agent-a", "front")), encode(tap),
                                  qos=1, properties=props)  # fmt: skip
        (msg,) = self.probe.take(1, timeout=timeout)
        answer = decode_payload(Channel.CMD, msg.payload)
        assert isinstance(answer, Unlock), answer
        assert answer.request_id == request_id
        return answer

    def forced(self) -> None:
        event = DoorForced(seq=self._next(), ts=datetime.now(UTC), mono=time.monotonic())
        self.probe.publish(str(Topic.door_event(self.site, "agent-a", "front")), encode(event))


def presence(seq: int) -> bytes:
    return encode(Presence(seq=seq, ts=datetime.now(UTC), mono=float(seq),
                           state=PresenceState.OCCUPIED))  # fmt: skip


def forbidden_filters(site: str) -> list[str]:
    taps = topic_filter(Channel.TAP)
    return [
        "#",
        "ruche/#",
        "$SYS/#",
        *(shared(g, topic_filter(c)) for g in SERVER_GROUPS for c in Channel),
        shared("ruche-doors", taps),
        shared("ruche-doors", topic_filter(Channel.TAP, site=site, agent="agent-b")),
        shared("anything", "#"),
        f"ruche/v1/{site}/agent-a/cmd",
        f"ruche/v1/{site}/agent-b/#",
        f"ruche/v1/{site}/+/cmd",
        RESPONSE_TOPIC,
        CONTROL_TOPIC,
    ]


# --- the tests --------------------------------------------------------------------------


class TestSubscriptions:
    """An agent may subscribe only to its own three topics, by name."""

    def test_everything_outside_its_own_topics_is_refused(self, broker):
        attacker = broker.as_agent("agent-b")
        for topic_filter_ in forbidden_filters(broker.site):
            reason = attacker.try_subscribe(topic_filter_)
            assert reason.is_failure, f"agent-b may subscribe to {topic_filter_}"
            assert reason.getName() == "Not authorized", topic_filter_
        for channel in (Channel.CMD, Channel.ALLOWLIST, Channel.ACK):
            attacker.subscribe(str(Topic(broker.site, "agent-b", channel)))


class TestClientIds:
    """An agent's account connects only with its own client id."""

    def test_another_agents_and_the_servers_client_ids_are_refused(self, broker):
        door = broker.as_agent("agent-a")
        lost = threading.Event()
        door.client.on_disconnect = lambda *_: lost.set()
        broker.as_server("server-side-client")
        for stolen in (broker.agents["agent-a"].client_id, "server-side-client", "anything"):
            attacker = broker.as_agent("agent-b", client_id=stolen, connect=False)
            reason = attacker.connect()
            assert reason is not None
            assert reason.is_failure, f"agent-b connected as {stolen}"
            attacker.close()
        assert not lost.wait(1.0), "the door agent was knocked offline"
        assert door.connected


class TestOwnDevicesOnly:
    """An agent's events for a desk or door that is not its own are refused and counted,
    and its own events still flow (its ack moves past the refused ones)."""

    def test_events_for_another_agents_devices(self, broker, server):
        attacker = broker.as_agent("agent-b")
        attacker.subscribe(str(Topic.ack(broker.site, "agent-b")))
        forged = [
            (Topic.presence(broker.site, "agent-b", "a-desk"), presence(1)),
            (Topic.presence(broker.site, "agent-b", "nowhere"), presence(2)),
            (Topic.door_event(broker.site, "agent-b", "front"),
             encode(DoorForced(seq=3, ts=datetime.now(UTC), mono=3.0))),
        ]  # fmt: skip
        for topic, payload in forged:
            attacker.publish(str(topic), payload).wait_for_publish(5)
        own = Topic.presence(broker.site, "agent-b", "b-desk")
        attacker.publish(str(own), presence(4)).wait_for_publish(5)
        wait_until(lambda: server.ingest.stats.acks_sent >= 1, what="agent-b acked")
        # One ack, or one per batch if the four came in two: the last one passes them all.
        acks = [decode_payload(Channel.ACK, m.payload) for m in attacker.take(1)]
        while acks[-1].seq < 4:  # type: ignore[union-attr]
            acks += [decode_payload(Channel.ACK, m.payload) for m in attacker.take(1)]
        assert acks[-1].seq == 4, "the ack moves past the refused events"  # type: ignore[union-attr]
        wait_until(lambda: server.door_events.stats.bad.get("not_owner") == 1,
                   what="the forced alarm refused")  # fmt: skip
        assert server.ingest.stats.bad == {"not_owner": 2, "unknown_device": 1}
        assert server.ingest.stats.refused == 3
        assert server.count(StoredEventRow, agent="agent-b") == 1
        assert server.count(RefusedEventRow, agent="agent-b") == 3
        assert server.count(AuditRow) == 0, "no alarm for a door agent-b does not drive"

    def test_publishing_on_another_agents_topics_reaches_nobody(self, broker, server):
        attacker = broker.as_agent("agent-b")
        for topic in (Topic.presence(broker.site, "agent-a", "a-desk"),
                      Topic.door_event(broker.site, "agent-a", "front")):  # fmt: skip
            attacker.publish(str(topic), presence(1)).wait_for_publish(5)
        time.sleep(1.0)
        assert server.count(StoredEventRow) == 0
        assert server.ingest.stats.received == 0


class TestUnderAttack:
    """While agent-b tries every one of these, the door answers every tap and every
    forced-door alarm reaches the audit log."""

    TAPS = 60
    ALARMS = 30

    def test_every_tap_answered_and_every_alarm_audited(self, broker, server):
        attempts = {"subscriptions": 0, "takeovers": 0, "forged": 0}
        stop = threading.Event()
        # Subscribed (or not) before the door starts: a share the broker granted would
        # take taps and alarms from the server at once.
        squatter = broker.as_agent("agent-b")
        for topic_filter_ in forbidden_filters(broker.site):
            squatter.try_subscribe(topic_filter_)
            attempts["subscriptions"] += 1

        failures: list[BaseException] = []

        def attack() -> None:
            try:
                attack_until_stopped()
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                failures.append(exc)

        def attack_until_stopped() -> None:
            seq = 100
            while not stop.is_set():
                stolen = broker.agents["agent-a"].client_id
                assert broker.connack("agent-b", stolen) == 0x87, "not authorized"
                attempts["takeovers"] += 1
                seq += 1
                squatter.publish(str(Topic.presence(broker.site, "agent-b", "a-desk")),
                                 presence(seq))  # fmt: skip
                squatter.publish(str(Topic.tap(broker.site, "agent-a", "front")), b"{}")
                attempts["forged"] += 1
                time.sleep(0.02)

        attacker = threading.Thread(target=attack, daemon=True)
        attacker.start()
        try:
            door = Door(broker)
            for i in range(self.TAPS):
                door.tap(ada_token())
                if i % 2:
                    door.forced()
                time.sleep(0.05)  # a busy door, spread over the attack
        finally:
            stop.set()
            attacker.join(10)
        assert not failures, failures
        assert attempts["takeovers"] >= 20, attempts
        assert attempts["forged"] >= 20, attempts
        assert server.doors.stats.unlocked == self.TAPS
        wait_until(lambda: server.count(AuditRow, kind=AuditKind.ALARM) == self.ALARMS,
                   what=f"{self.ALARMS} alarms audited")  # fmt: skip
        wait_until(lambda: server.count(AuditRow, kind=AuditKind.DECISION) == self.TAPS,
                   what=f"{self.TAPS} decisions audited")  # fmt: skip
        assert door.probe.connected, "the door agent stayed online"
