"""Who may connect, publish and read, against a real Mosquitto on the generated config."""

from __future__ import annotations

import queue
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest

from ruche.broker import Ack, Presence, PresenceState, Topic, Unlock, encode, topic_filter
from ruche.broker.topics import Channel

pytestmark = pytest.mark.integration


def _presence(seq: int) -> bytes:
    return encode(
        Presence(seq=seq, ts=datetime.now(UTC), mono=float(seq), state=PresenceState.OCCUPIED)
    )


class TestLogin:
    """Only known accounts with the right password get in."""

    def test_agent_and_server_accounts_connect(self, site):
        assert site.connect_server().connected
        assert site.connect_agent("agent-a").connected

    def test_wrong_password_is_refused(self, site, probe_factory):
        probe = probe_factory(site.agents["agent-a"].username, "not-the-password-at-all")
        reason = probe.connect()
        assert reason is not None
        assert reason.is_failure
        assert reason.getName() in {"Bad user name or password", "Not authorized"}

    def test_anonymous_client_is_refused(self, probe_factory):
        probe = probe_factory(None, None)
        reason = probe.connect()
        assert reason is not None
        assert reason.is_failure

    def test_anonymous_v311_client_is_refused(self, probe_factory):
        probe = probe_factory(None, None, protocol=mqtt.MQTTv311)
        probe.connect()
        assert probe.disconnected.wait(5)
        assert not probe.connected


class TestAgentConfinement:
    """An agent publishes only in its own subtree and reads only what is sent to it."""

    def test_publishing_on_another_agents_topic_is_not_delivered(self, site):
        server = site.connect_server()
        server.subscribe(topic_filter(Channel.PRESENCE, site=site.site))
        agent_a = site.connect_agent("agent-a")
        forged = str(Topic.presence(site.site, "agent-b", "desk-1"))
        own = str(Topic.presence(site.site, "agent-a", "desk-1"))
        agent_a.publish(forged, _presence(1)).wait_for_publish(5)
        # Same client, same session: if the forged message had been accepted it would
        # arrive before this one.
        agent_a.publish(own, _presence(2)).wait_for_publish(5)
        (arrived,) = server.take(1)
        assert arrived.topic == own
        with pytest.raises(queue.Empty):
            server.messages.get(timeout=0.5)

    def test_agent_cannot_publish_server_channels_of_its_own(self, site):
        agent_a = site.connect_agent("agent-a")
        agent_a.subscribe(str(Topic.cmd(site.site, "agent-a")))
        spy = site.connect_server()
        spy.subscribe(f"{site.prefix}#")
        agent_a.publish(
            str(Topic.cmd(site.site, "agent-a")), encode(Unlock(door="front", ms=3000))
        ).wait_for_publish(5)
        agent_a.publish(str(Topic.status(site.site, "agent-a")), b"{}").wait_for_publish(5)
        (arrived,) = spy.take(1)
        assert arrived.topic == str(Topic.status(site.site, "agent-a"))
        assert agent_a.messages.empty()

    def test_agent_reads_its_own_commands_but_not_another_agents(self, site):
        agent_a = site.connect_agent("agent-a")
        agent_b = site.connect_agent("agent-b")
        agent_a.subscribe(str(Topic.ack(site.site, "agent-a")))
        agent_b.subscribe(str(Topic.cmd(site.site, "agent-b")))
        server = site.connect_server()
        for_b = str(Topic.cmd(site.site, "agent-b"))
        for_a_ack = str(Topic.ack(site.site, "agent-a"))
        server.publish(for_b, encode(Unlock(door="front", ms=3000))).wait_for_publish(5)
        server.publish(for_a_ack, encode(Ack(seq=7))).wait_for_publish(5)
        (b_got,) = agent_b.take(1)
        assert b_got.topic == for_b
        (a_got,) = agent_a.take(1)
        assert a_got.topic == for_a_ack
        with pytest.raises(queue.Empty):
            agent_a.messages.get(timeout=0.5)

    def test_agent_reads_its_retained_allowlist(self, site):
        server = site.connect_server()
        topic = str(Topic.allowlist(site.site, "agent-a"))
        server.publish(topic, b'{"v":1}', retain=True).wait_for_publish(5)
        agent_a = site.connect_agent("agent-a")
        agent_a.subscribe(topic)
        (got,) = agent_a.take(1)
        assert got.retain
        assert got.payload == b'{"v":1}'
