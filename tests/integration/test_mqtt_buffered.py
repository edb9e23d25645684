"""`ruche.paho_internals.BufferedClient` against the real broker: bursts, the last message of a
burst, big packets, and a reconnect, with nothing lost, reordered or stalled."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ruche.broker import Channel, Topic, topic_filter
from ruche.mqtt import no_delay, stop_client
from ruche.paho_internals import BufferedClient

pytestmark = pytest.mark.integration


class Collector:
    """A BufferedClient subscriber with manual acks, as the server's ingestion uses it."""

    def __init__(self, host: str, port: int, username: str, password: str, topic: str) -> None:
        self.payloads: list[bytes] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.auto_ack = True
        self.arrived = threading.Condition()
        self.connects = 0
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=f"buffered-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.client.username_pw_set(username, password)
        self.client.on_socket_open = no_delay
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._topic = topic
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        self.connects += 1
        client.subscribe(self._topic, qos=1)
        with self.arrived:
            self.arrived.notify_all()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self.auto_ack:
            client.ack(msg.mid, msg.qos)
        with self.arrived:
            self.payloads.append(msg.payload)
            self.messages.append(msg)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.payloads) >= count, timeout)

    def close(self) -> None:
        stop_client(self.client)


@pytest.fixture
def pair(site: Any) -> Any:
    server = site.broker.server
    topic = topic_filter(Channel.PRESENCE, site=site.site, agent="agent-a")
    collector = Collector(site.broker.host, site.broker.port, server.username,
                          server.password.get_secret_value(), topic)  # fmt: skip
    with collector.arrived:
        collector.arrived.wait_for(lambda: collector.connects > 0, 10)
    time.sleep(0.2)  # the SUBACK
    agent = site.connect_agent("agent-a")
    yield site, collector, agent
    collector.close()


class TestBufferedClient:
    """Many packets per read are all delivered, in order, including a burst's last one."""

    def test_a_burst_arrives_whole_and_in_order(self, pair: Any) -> None:
        site, collector, agent = pair
        topic = str(Topic.presence(site.site, "agent-a", "desk-1"))
        sent = [f"{i:06d}".encode() for i in range(5000)]
        for payload in sent:
            agent.client.publish(topic, payload, qos=1)
        collector.wait_for(len(sent))
        assert collector.payloads == sent

    def test_a_lone_message_after_a_burst_is_not_left_in_the_buffer(self, pair: Any) -> None:
        site, collector, agent = pair
        topic = str(Topic.presence(site.site, "agent-a", "desk-1"))
        for i in range(300):
            agent.client.publish(topic, f"{i}".encode(), qos=1)
        collector.wait_for(300)
        agent.client.publish(topic, b"last", qos=1)
        collector.wait_for(301, timeout=5)
        assert collector.payloads[-1] == b"last"

    def test_packets_bigger_than_one_read(self, pair: Any) -> None:
        site, collector, agent = pair
        topic = str(Topic.presence(site.site, "agent-a", "desk-2"))
        big = [bytes([65 + i]) * 200_000 for i in range(5)]
        for payload in big:
            agent.client.publish(topic, payload, qos=1)
        collector.wait_for(len(big))
        assert collector.payloads == big

    def test_a_reconnect_starts_from_a_clean_buffer(self, pair: Any) -> None:
        site, collector, agent = pair
        topic = str(Topic.presence(site.site, "agent-a", "desk-3"))
        agent.client.publish(topic, b"before", qos=1)
        collector.wait_for(1)
        collector.client._sock_close()  # the connection drops, as a network fault would
        deadline = time.monotonic() + 10
        while collector.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.connects >= 2
        time.sleep(0.2)
        for i in range(100):
            agent.client.publish(topic, f"after-{i}".encode(), qos=1)
        collector.wait_for(101)
        assert collector.payloads == [b"before"] + [f"after-{i}".encode() for i in range(100)]


class TestAckAll:
    """Batched acknowledgements release what this connection received, and nothing else."""

    def test_acks_only_messages_of_the_current_connection(self, pair: Any) -> None:
        site, collector, agent = pair
        collector.auto_ack = False
        topic = str(Topic.presence(site.site, "agent-a", "desk-4"))
        for i in range(50):
            agent.client.publish(topic, f"{i}".encode(), qos=1)
        collector.wait_for(50)
        first = list(collector.messages)
        assert collector.client.ack_all(first[:10]) == 10
        collector.client._sock_close()  # the connection drops before the rest are acked
        deadline = time.monotonic() + 10
        while collector.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.connects >= 2
        # Their mids belong to the dead connection: acking them now could release others.
        assert collector.client.ack_all(first[10:]) == 0
        time.sleep(0.2)
        agent.client.publish(topic, b"fresh", qos=1)
        collector.wait_for(51)
        assert collector.client.ack_all(collector.messages[50:]) == 1
