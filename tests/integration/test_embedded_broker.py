"""The embedded broker (`ruche.broker.embedded`) as a child process on the generated
config, against real paho MQTT v5 clients and, for what paho will not do (never ack,
vanish without DISCONNECT, send garbage), a hand-written client on a plain socket.

This module's `broker` fixture replaces the session's Mosquitto, so conftest's `site`,
`probe_factory` and the server's real workers run against the embedded broker. Accounts
are added per test as for Mosquitto: files rewritten, then SIGHUP.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.broker import Presence, PresenceState, Topic, encode
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.acl import render_acl
from ruche.broker.mosquitto_config import render_passwd
from ruche.broker.passwords import generate_password
from ruche.broker.process import EmbeddedBrokerProcess
from ruche.edge.link import AgentLink, LinkOptions
from ruche.edge.outbox import Outbox
from ruche.mqtt_wire import packet, read_varint, utf8, varint
from ruche.server.connection import MqttOptions
from ruche.server.db import make_engine, make_sessions, run_migrations
from ruche.server.ingest import IngestWorker
from ruche.server.models import AgentProgress, StoredEvent

pytestmark = pytest.mark.integration

CONNACK, PUBLISH, PUBACK, SUBACK, DISCONNECT = 0x20, 0x30, 0x40, 0x90, 0xE0
NOT_AUTHORIZED, MALFORMED = 0x87, 0x81


# --- a hand-written MQTT v5 client --------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    packet_id: int
    qos: int


class RawClient:
    """MQTT v5 over a plain socket: CONNECT (with a will, a Receive Maximum), SUBSCRIBE,
    PUBLISH, and reading packets; it acknowledges nothing unless told to."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        *,
        will: tuple[str, bytes] | None = None,
        receive_maximum: int | None = None,
        keepalive: int = 30,
        will_delay: int = 0,
        session_expiry: int = 0,
        client_id: str | None = None,
        clean_start: bool = True,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self._buf = b""
        self._next_id = 0
        flags = 0x02 if clean_start else 0
        payload = utf8(client_id or f"raw-{os.getpid()}-{time.monotonic_ns()}")
        if will is not None:
            flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
            will_props = b"\x18" + struct.pack("!I", will_delay) if will_delay else b""
            payload += varint(len(will_props)) + will_props + utf8(will[0]) + utf8(will[1])
        if username is not None:
            flags |= 0x80
            payload += utf8(username)
        if password is not None:
            flags |= 0x40
            payload += utf8(password)
        props = b"" if receive_maximum is None else b"\x21" + struct.pack("!H", receive_maximum)
        if session_expiry:
            props += b"\x11" + struct.pack("!I", session_expiry)
        variable = utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive)
        self.sock.sendall(packet(0x10, variable + varint(len(props)) + props + payload))
        first, body = self.read()
        assert first == CONNACK, f"expected CONNACK, got {first:#x}"
        self.connack_reason = body[1]

    def read(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next packet; (0, b"") once the broker has closed the connection."""
        self.sock.settimeout(timeout)
        while True:
            header = read_varint(self._buf, 1)
            if header is not None and len(self._buf) >= header[1] + header[0]:
                length, at = header
                first, body = self._buf[0], self._buf[at : at + length]
                self._buf = self._buf[at + length :]
                return first, body
            chunk = self.sock.recv(65_536)
            if not chunk:
                return 0, b""
            self._buf += chunk

    def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        """Subscribe; the SUBACK's reason code."""
        self._next_id += 1
        body = struct.pack("!H", self._next_id) + b"\x00" + utf8(topic_filter) + bytes([qos])
        self.sock.sendall(packet(0x82, body))
        first, answer = self.read()
        assert first == SUBACK
        return answer[-1]

    def publish(self, topic: str, payload: bytes, packet_id: int) -> int:
        """A QoS 1 publish; the PUBACK's reason code."""
        self.sock.sendall(packet(0x32, utf8(topic) + struct.pack("!H", packet_id) + b"\x00"
                                  + payload))  # fmt: skip
        first, body = self.read()
        assert first == PUBACK, f"expected PUBACK, got {first:#x}"
        assert struct.unpack("!H", body[:2])[0] == packet_id
        return body[2] if len(body) > 2 else 0

    def take(self, count: int, timeout: float = 5.0) -> list[Received]:
        """`count` PUBLISH packets, not acknowledged."""
        got = []
        while len(got) < count:
            first, body = self.read(timeout)
            assert first & 0xF0 == PUBLISH, f"expected PUBLISH, got {first:#x}"
            got.append(self._parse(first, body))
        return got

    def nothing_more(self, wait: float = 0.5) -> bool:
        try:
            self.read(wait)
        except TimeoutError:
            return True
        return False

    def ack(self, packet_id: int) -> None:
        self.sock.sendall(bytes([PUBACK, 2]) + struct.pack("!H", packet_id))

    def vanish(self) -> None:
        """Close the socket without DISCONNECT, as a crashed process would."""
        self.sock.close()

    @staticmethod
    def _parse(first: int, body: bytes) -> Received:
        qos = (first >> 1) & 3
        (n,) = struct.unpack_from("!H", body)
        topic, at = body[2 : 2 + n].decode(), 2 + n
        packet_id = 0
        if qos:
            (packet_id,) = struct.unpack_from("!H", body, at)
            at += 2
        props = read_varint(body, at)
        assert props is not None, "PUBLISH without its properties' length"
        return Received(topic, body[props[1] + props[0] :], packet_id, qos)


# --- the rig ------------------------------------------------------------------------


@dataclass
class EmbeddedRig:
    """The module's embedded broker, with accounts added per test (as conftest's
    `BrokerRig` does for Mosquitto): files rewritten, SIGHUP, wait until they log in."""

    process: EmbeddedBrokerProcess
    server: ServerAccount
    agents: list[AgentAccount] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    raws: list[RawClient] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.process.host

    @property
    def port(self) -> int:
        return self.process.port

    def register(self, site: str, agent_ids: list[str]) -> dict[str, AgentAccount]:
        new = {a: AgentAccount(site=site, id=a, password=generate_password()) for a in agent_ids}
        with self.lock:
            self.agents.extend(new.values())
            accounts = Accounts(server=self.server, agents=tuple(self.agents))
            files = self.process.files
            files.passwd.write_text(render_passwd(accounts), encoding="utf-8")
            files.acl.write_text(render_acl(accounts), encoding="utf-8")
            assert self.process.pid is not None
            os.kill(self.process.pid, signal.SIGHUP)
        account = next(iter(new.values()))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client = self.raw(account.username, account.password.get_secret_value())
            client.vanish()
            if client.connack_reason == 0:
                return new
            time.sleep(0.05)
        pytest.fail(f"the embedded broker did not load the accounts: {self.process.log_tail()}")

    def raw(self, username: str | None, password: str | None, **kwargs: Any) -> RawClient:
        client = RawClient(self.host, self.port, username, password, **kwargs)
        self.raws.append(client)
        return client


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRig]:
    """The embedded broker instead of the session's Mosquitto, for this module."""
    server = ServerAccount(password=generate_password())
    process = EmbeddedBrokerProcess.generate(
        tmp_path_factory.mktemp("embedded"), Accounts(server=server)
    )
    process.start()
    rig = EmbeddedRig(process=process, server=server)
    yield rig
    for client in rig.raws:
        client.sock.close()
    process.stop()
    print(process.log_tail(40))


@pytest.fixture
def raw(site, broker: EmbeddedRig):
    """Raw clients of this test's site: `raw("agent-a")`, `raw("server")`."""

    def make(who: str, **kwargs: Any) -> RawClient:
        if who == "server":
            return broker.raw(broker.server.username, broker.server.password.get_secret_value(),
                              **kwargs)  # fmt: skip
        account = site.agents[who]
        return broker.raw(account.username, account.password.get_secret_value(), **kwargs)

    return make


def presence(site: str, agent: str, seq: int, desk: str = "desk-1") -> tuple[str, bytes]:
    state = PresenceState.OCCUPIED if seq % 2 else PresenceState.VACANT
    payload = Presence(seq=seq, ts=datetime.now(UTC), mono=seq / 10, state=state)
    return str(Topic.presence(site, agent, desk)), encode(payload)


# --- tests --------------------------------------------------------------------------


class TestLogin:
    """Accounts of the generated password file get in; anybody else is refused."""

    def test_server_and_agent_accounts_connect(self, site):
        assert site.connect_server().connected
        assert site.connect_agent("agent-a").connected

    def test_wrong_password_and_anonymous_are_refused(self, site, probe_factory):
        wrong = probe_factory(site.agents["agent-a"].username, "not-the-password-at-all")
        reason = wrong.connect()
        assert reason is not None
        assert reason.getName() == "Bad user name or password"
        anonymous = probe_factory(None, None)
        reason = anonymous.connect()
        assert reason is not None
        assert reason.getName() == "Not authorized"

    def test_mqtt_311_client_is_refused(self, probe_factory):
        probe = probe_factory(None, None, protocol=mqtt.MQTTv311)
        probe.connect()
        assert probe.disconnected.wait(5)
        assert not probe.connected


class TestAcl:
    """The generated ACL, with Mosquitto's meaning: agents write their own events and read
    what the server sends them, nothing else."""

    def test_publishing_where_one_may_not_write_is_refused(self, site, raw):
        server = site.connect_server()
        server.subscribe(f"{site.prefix}#")
        agent_a = raw("agent-a")
        forged, payload = presence(site.site, "agent-b", 1)
        own, own_payload = presence(site.site, "agent-a", 2)
        assert agent_a.publish(forged, payload, packet_id=1) == NOT_AUTHORIZED
        assert agent_a.publish(str(Topic.cmd(site.site, "agent-a")), b"{}", 2) == NOT_AUTHORIZED
        assert agent_a.publish(own, own_payload, packet_id=3) == 0
        (arrived,) = server.take(1)
        assert arrived.topic == own
        with pytest.raises(queue.Empty):
            server.messages.get(timeout=0.5)

    def test_subscribing_to_what_one_may_not_read_is_refused(self, site, raw):
        agent_a = raw("agent-a")
        assert agent_a.subscribe(str(Topic.cmd(site.site, "agent-a"))) == 1, "granted QoS 1"
        assert agent_a.subscribe(str(Topic.cmd(site.site, "agent-b"))) == NOT_AUTHORIZED
        assert agent_a.subscribe(f"{site.prefix}#") == NOT_AUTHORIZED
        assert agent_a.subscribe("#") == NOT_AUTHORIZED
        server = site.connect_server()
        server.publish(str(Topic.cmd(site.site, "agent-b")), b"for b").wait_for_publish(5)
        server.publish(str(Topic.cmd(site.site, "agent-a")), b"for a").wait_for_publish(5)
        (got,) = agent_a.take(1)
        assert got.payload == b"for a"
        assert agent_a.nothing_more()


class TestRetained:
    """A retained message reaches a subscriber that comes later; an empty one clears it."""

    def test_late_subscriber_gets_the_retained_allowlist(self, site):
        server = site.connect_server()
        topic = str(Topic.allowlist(site.site, "agent-a"))
        server.publish(topic, b'{"v":1}', retain=True).wait_for_publish(5)
        agent_a = site.connect_agent("agent-a")
        agent_a.subscribe(topic)
        (got,) = agent_a.take(1)
        assert got.retain
        assert got.payload == b'{"v":1}'

        server.publish(topic, b"", retain=True).wait_for_publish(5)
        agent_a.take(1)  # the clearing itself reaches current subscribers
        later = site.connect_agent("agent-a")
        later.subscribe(topic)
        with pytest.raises(queue.Empty):
            later.messages.get(timeout=0.5)


class TestWill:
    """An agent's will (its retained offline status) is published when its connection
    drops, not when it says goodbye."""

    def test_will_on_abrupt_close_not_on_disconnect(self, site, raw, probe_factory):
        server = site.connect_server()
        status = str(Topic.status(site.site, "agent-a"))
        server.subscribe(status)
        account = site.agents["agent-a"]
        polite = probe_factory(account.username, account.password.get_secret_value())
        polite.client.will_set(status, b"polite offline", qos=1, retain=True)
        assert not polite.connect().is_failure
        polite.client.disconnect()
        assert polite.disconnected.wait(5)

        crashed = raw("agent-a", will=(status, b"crashed offline"))
        crashed.vanish()
        (got,) = server.take(1)
        assert got.payload == b"crashed offline"
        assert got.topic == status
        with pytest.raises(queue.Empty):
            server.messages.get(timeout=0.5)
        late = site.connect_server()
        late.subscribe(status)
        (retained,) = late.take(1)
        assert (retained.payload, retained.retain) == (b"crashed offline", True)


class TestSessions:
    """A session with an expiry outlives its connection; a silent client is cut off after
    one and a half keepalives, and its will goes out."""

    def test_persistent_session_gets_what_came_while_away(self, site, probe_factory):
        server = site.broker.server
        client_id = f"ruche-server-{site.site}"

        def subscriber():
            return probe_factory(server.username, server.password.get_secret_value(),
                                 client_id=client_id, clean_start=False,
                                 session_expiry=60)  # fmt: skip

        first = subscriber()
        first.connect()
        first.subscribe(f"{site.prefix}+/desk/+/presence")
        first.close()
        agent = site.connect_agent("agent-a")
        sent = [presence(site.site, "agent-a", seq) for seq in range(1, 6)]
        for topic, payload in sent:
            agent.publish(topic, payload).wait_for_publish(5)
        again = subscriber()
        again.connect()
        assert [m.payload for m in again.take(5)] == [p for _, p in sent]

    def test_will_delay(self, site, raw):
        """A will waits out its delay, and is dropped if the client comes back in time."""
        server = site.connect_server()
        status = str(Topic.status(site.site, "agent-a"))
        server.subscribe(status)
        late = raw("agent-a", will=(status, b"late"), will_delay=1, session_expiry=60)
        late.vanish()
        gone = time.monotonic()
        (got,) = server.take(1, timeout=5)
        assert got.payload == b"late"
        assert time.monotonic() - gone > 0.9
        options = {"will": (status, b"never"), "will_delay": 2, "session_expiry": 60,
                   "client_id": f"back-{site.site}", "clean_start": False}  # fmt: skip
        raw("agent-a", **options).vanish()
        back = raw("agent-a", **options)
        assert back.connack_reason == 0
        with pytest.raises(queue.Empty):
            server.messages.get(timeout=2.5)
        assert server.connected, "the will's own properties stay with the broker"

    def test_keepalive_expiry_publishes_the_will(self, site, raw):
        server = site.connect_server()
        status = str(Topic.status(site.site, "agent-a"))
        server.subscribe(status)
        silent = raw("agent-a", will=(status, b"timed out"), keepalive=1)
        started = time.monotonic()
        (got,) = server.take(1, timeout=5)
        assert got.payload == b"timed out"
        assert 1.4 < time.monotonic() - started < 3.5
        first, body = silent.read()
        assert (first, body[:1]) == (DISCONNECT, b"\x8d"), "keepalive timeout"


class TestProperties:
    """A tap is an MQTT v5 request: its properties reach the server as sent, and the
    answer's correlation data reaches the agent."""

    def test_request_and_response_properties_preserved(self, site):
        server = site.connect_server()
        server.subscribe(f"{site.prefix}+/door/+/tap")
        agent = site.connect_agent("agent-a")
        cmd = str(Topic.cmd(site.site, "agent-a"))
        agent.subscribe(cmd)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = cmd
        props.CorrelationData = b"\x00request-7\xff"
        props.ContentType = "application/json"
        props.UserProperty = [("trace", "abc"), ("trace", "def")]
        props.MessageExpiryInterval = 600
        tap = str(Topic.tap(site.site, "agent-a", "front"))
        agent.client.publish(tap, b'{"tap":1}', qos=1, properties=props).wait_for_publish(5)

        (request,) = server.take(1)
        assert request.qos == 1
        got = request.properties
        assert got.ResponseTopic == cmd
        assert got.CorrelationData == b"\x00request-7\xff"
        assert got.ContentType == "application/json"
        assert got.UserProperty == [("trace", "abc"), ("trace", "def")]
        assert 590 <= got.MessageExpiryInterval <= 600

        answer = Properties(PacketTypes.PUBLISH)
        answer.CorrelationData = got.CorrelationData
        server.client.publish(got.ResponseTopic, b'{"unlock":1}', qos=1,
                              properties=answer).wait_for_publish(5)  # fmt: skip
        (response,) = agent.take(1)
        assert response.properties.CorrelationData == b"\x00request-7\xff"
        assert response.payload == b'{"unlock":1}'


class TestSharedSubscription:
    """`$share/GROUP/filter`: each message to one member; one unacknowledged by a member
    that vanishes goes to another member, or to the next one to subscribe."""

    def test_messages_split_between_members(self, site):
        group = f"$share/ruche-ingest/{site.prefix}+/desk/+/presence"
        members = [site.connect_server(), site.connect_server()]
        for member in members:
            member.subscribe(group)
        agent = site.connect_agent("agent-a")
        sent = [presence(site.site, "agent-a", seq) for seq in range(1, 21)]
        for topic, payload in sent:
            agent.publish(topic, payload).wait_for_publish(5)
        time.sleep(0.5)
        got = [[m.payload for m in _drain(member)] for member in members]
        assert sorted(got[0] + got[1]) == sorted(p for _, p in sent), "each once"
        assert len(got[0]) == len(got[1]) == 10, "round robin"

    def test_unacked_messages_of_a_vanished_member_go_to_the_other(self, site, raw):
        group = f"$share/ruche-ingest/{site.prefix}+/desk/+/presence"
        silent = raw("server")
        assert silent.subscribe(group) == 1
        other = site.connect_server()
        other.subscribe(group)
        agent = site.connect_agent("agent-a")
        sent = [presence(site.site, "agent-a", seq) for seq in range(1, 11)]
        for topic, payload in sent:
            agent.publish(topic, payload).wait_for_publish(5)
        taken = silent.take(5)  # never acknowledged
        assert {t.payload for t in taken} < {p for _, p in sent}
        silent.vanish()
        got = other.take(10, timeout=10)
        assert sorted(m.payload for m in got) == sorted(p for _, p in sent), "none lost"
        with pytest.raises(queue.Empty):
            other.messages.get(timeout=0.5)

    def test_unacked_messages_wait_for_the_next_member(self, site, raw):
        group = f"$share/ruche-ingest/{site.prefix}+/desk/+/presence"
        only = raw("server")
        assert only.subscribe(group) == 1
        agent = site.connect_agent("agent-a")
        sent = [presence(site.site, "agent-a", seq) for seq in range(1, 4)]
        for topic, payload in sent:
            agent.publish(topic, payload).wait_for_publish(5)
        only.take(3)
        only.vanish()
        time.sleep(0.3)
        comeback = site.connect_server()
        comeback.subscribe(group)
        got = comeback.take(3)
        assert sorted(m.payload for m in got) == sorted(p for _, p in sent)


class TestReceiveMaximum:
    """No more unacknowledged QoS 1 messages in flight to a client than it said it takes."""

    def test_window_of_three(self, site, raw):
        slow = raw("server", receive_maximum=3)
        assert slow.subscribe(f"{site.prefix}#") == 1
        agent = site.connect_agent("agent-a")
        for seq in range(1, 9):
            agent.publish(*presence(site.site, "agent-a", seq)).wait_for_publish(5)
        first = slow.take(3)
        assert slow.nothing_more(), "the window is full"
        slow.ack(first[0].packet_id)
        (fourth,) = slow.take(1)
        assert slow.nothing_more()
        for message in [*first[1:], fourth]:
            slow.ack(message.packet_id)
        assert len(slow.take(3)) == 3


class TestBadClients:
    """A client that sends garbage is disconnected; the broker and everybody else carry on."""

    def test_garbage_closes_only_that_client(self, site, broker):
        server = site.connect_server()
        server.subscribe(f"{site.prefix}#")
        agent = site.connect_agent("agent-a")
        with socket.create_connection((broker.host, broker.port), timeout=5) as sock:
            sock.sendall(b"\xff\xff\xff\xff\xff\xff garbage")  # no CONNECT, no valid length
            assert _closed(sock)
        account = site.agents["agent-b"]
        rogue = broker.raw(account.username, account.password.get_secret_value())
        assert rogue.connack_reason == 0
        rogue.sock.sendall(b"\x36\x05\x00\x01a\x00\x01")  # PUBLISH with QoS 3
        first, body = rogue.read()
        assert (first, body[:1]) == (DISCONNECT, bytes([MALFORMED]))
        assert rogue.read() == (0, b""), "then closed"

        topic, payload = presence(site.site, "agent-a", 1)
        agent.publish(topic, payload).wait_for_publish(5)
        (got,) = server.take(1)
        assert got.payload == payload
        assert server.connected
        assert agent.connected
        assert broker.process.running
        assert "PUBLISH with QoS 3" in Path(broker.process.log_path).read_text()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    while True:
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            return True
        if not data:
            return True


def _drain(probe) -> list:
    out = []
    while True:
        try:
            out.append(probe.messages.get_nowait())
        except queue.Empty:
            return out


# --- the server's real ingestion --------------------------------------------------------


class TestIngestion:
    """The server's ingest worker and an edge agent's link through the embedded broker:
    every event stored once, the agent's outbox drained by the server's acks."""

    def test_events_stored_and_acked(self, site, tmp_path):
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        run_migrations(url)
        account = site.agents["agent-a"]
        outbox = Outbox(tmp_path / "outbox.db")
        link = AgentLink(
            LinkOptions(site=site.site, agent="agent-a", host=site.broker.host,
                        port=site.broker.port, username=account.username,
                        password=account.password.get_secret_value(), resend_after=1.0),
            outbox, on_command=lambda c: None, on_allowlist=lambda a: None,
        )  # fmt: skip
        engine = make_engine(url)
        server = site.broker.server
        options = MqttOptions(host=site.broker.host, port=site.broker.port,
                              username=server.username,
                              password=server.password.get_secret_value())  # fmt: skip
        worker = IngestWorker(make_sessions(engine), options, site=site.site)
        worker.start()
        link.start()
        try:
            for _ in range(300):
                outbox.append(lambda seq: presence(site.site, "agent-a", seq, f"desk-{seq % 3}"))
            link.wake()
            deadline = time.monotonic() + 30
            while outbox.depth and time.monotonic() < deadline:
                time.sleep(0.05)
            assert outbox.depth == 0, f"outbox still holds {outbox.depth}; {worker.stats}"
        finally:
            link.stop()
            outbox.close()
            worker.stop()
        try:
            with Session(engine) as session:
                query = select(StoredEvent.seq).where(StoredEvent.site == site.site)
                assert sorted(session.scalars(query)) == list(range(1, 301))
                progress = session.get(AgentProgress, (site.site, "agent-a"))
                assert progress is not None
                assert progress.acked_seq == 300
        finally:
            engine.dispose()
