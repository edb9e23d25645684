"""Oversized messages are refused by the broker; everybody else carries on."""

from __future__ import annotations

import queue
import socket
import struct

import paho.mqtt.client as mqtt
import pytest

from ruche.broker import MAX_ALLOWLIST_BYTES, Topic
from ruche.mqtt_wire import packet, utf8

pytestmark = pytest.mark.integration

PUBACK = 0x40
PACKET_TOO_LARGE = 0x95


class TestMessageSizeLimit:
    """A payload over `message_size_limit` is refused and never delivered; the connection
    and every other client carry on."""

    def test_v5_publisher_gets_a_refusal_on_the_wire(self, site):
        # paho 2.2 cannot parse Mosquitto 2.0's answer here (reason 0x95 on a PUBACK is
        # outside the v5 list), so this speaks MQTT directly. Ruche's own publishers never
        # get this far: they check the contract's size limit before sending.
        server = site.connect_server()
        server.subscribe(f"{site.prefix}#")
        account = site.agents["agent-a"]
        topic = str(Topic.status(site.site, "agent-a"))
        with socket.create_connection((site.broker.host, site.broker.port), timeout=10) as sock:
            connect = (
                utf8("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 30) + b"\x00"
                + utf8(account.client_id) + utf8(account.username)
                + utf8(account.password.get_secret_value())
            )  # fmt: skip
            sock.sendall(packet(0x10, connect))
            connack = sock.recv(64)
            assert connack[0] == 0x20
            assert connack[3] == 0, "CONNACK success"
            big = utf8(topic) + struct.pack("!H", 7) + b"\x00" + b"x" * (MAX_ALLOWLIST_BYTES + 1)
            sock.sendall(packet(0x32, big))
            assert sock.recv(16) == bytes([PUBACK, 3, 0, 7, PACKET_TOO_LARGE])
            small = utf8(topic) + struct.pack("!H", 8) + b"\x00" + b"small"
            sock.sendall(packet(0x32, small))
            assert sock.recv(16)[:4] == bytes([PUBACK, 2, 0, 8]), "same connection carries on"
        (got,) = server.take(1)
        assert got.payload == b"small"
        with pytest.raises(queue.Empty):
            server.messages.get(timeout=0.5)

    def test_v311_oversized_publish_is_dropped_and_others_carry_on(self, site):
        server = site.connect_server()
        server.subscribe(f"{site.prefix}#")
        agent_a = site.connect_agent("agent-a", protocol=mqtt.MQTTv311)
        agent_b = site.connect_agent("agent-b")
        topic_a = str(Topic.status(site.site, "agent-a"))
        agent_a.publish(topic_a, b"x" * (MAX_ALLOWLIST_BYTES + 1)).wait_for_publish(10)
        agent_b.publish(str(Topic.status(site.site, "agent-b")), b"from b").wait_for_publish(5)
        agent_a.publish(topic_a, b"from a, small").wait_for_publish(5)
        got = server.take(2)
        assert sorted(m.payload for m in got) == [b"from a, small", b"from b"]
        assert agent_a.connected
        with pytest.raises(queue.Empty):
            server.messages.get(timeout=0.5)

    def test_packet_beyond_max_packet_size_disconnects_only_that_client(self, site):
        server = site.connect_server()
        server.subscribe(f"{site.prefix}#")
        # A v3.1.1 client is not told the maximum packet size, so it sends the packet
        # and the broker must cut it off before reading it into memory.
        rogue = site.connect_agent("agent-a", protocol=mqtt.MQTTv311)
        agent_b = site.connect_agent("agent-b")
        rogue.client.reconnect_delay_set(60, 60)  # keep it down once cut off
        rogue.publish(str(Topic.status(site.site, "agent-a")), b"x" * (MAX_ALLOWLIST_BYTES * 2))
        assert rogue.disconnected.wait(10)
        agent_b.publish(str(Topic.status(site.site, "agent-b")), b"still here").wait_for_publish(5)
        (got,) = server.take(1)
        assert got.payload == b"still here"
        assert server.connected
        assert agent_b.connected
