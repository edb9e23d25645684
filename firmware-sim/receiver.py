"""A stand-in for the server's ingestion: stores agent events and acks them per the contract.

Until the server ingests events itself, tests, benchmarks and the demo use this.
Per agent it keeps the next expected seq: an event with that seq is stored and
acked; an older one is a duplicate (acked again, not stored twice); a newer one
means something in between was lost, so it is not stored and the ack stays put
until the agent resends from the gap. The stored stream is therefore each
agent's events exactly once, in order.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ruche.broker import (
    EVENT_CHANNELS,
    Ack,
    Command,
    ContractError,
    EventPayload,
    Tap,
    Topic,
    decode,
    encode,
    topic_filter,
)
from ruche.mqtt import no_delay, publish_properties, stop_client

log = logging.getLogger(__name__)

TapAnswer = Callable[[Topic, Tap], Command | None]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    topic: Topic
    payload: EventPayload

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.topic.site, self.topic.agent, self.payload.seq)


@dataclass
class ReceiverStats:
    stored: int = 0
    duplicates: int = 0
    gaps: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    answered: int = 0


class EventReceiver:
    """Subscribes to every agent event of `site` (or all sites) as the server account."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        site: str = "+",
        answer_taps: TapAnswer | None = None,
    ) -> None:
        self.stats = ReceiverStats()
        self.events: list[StoredEvent] = []
        self._answer_taps = answer_taps
        self._expected: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._site = site
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"receiver-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_socket_open = no_delay
        self._connected = threading.Event()
        self._subscriptions: set[int] = set()

    def start(self, timeout: float = 10.0) -> None:
        """Connect and return once every subscription is acknowledged."""
        self._client.reconnect_delay_set(1, 2)
        self._client.connect_async(self._host, self._port)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"receiver could not connect to {self._host}:{self._port}")

    def stop(self) -> None:
        stop_client(self._client)

    def wait_for(self, count: int, timeout: float) -> bool:
        """True once `count` events are stored, False after `timeout` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.events) >= count, timeout)

    def snapshot(self) -> list[StoredEvent]:
        with self._lock:
            return list(self.events)

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        rc: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if rc.is_failure:
            log.warning("receiver refused: %s", rc)
            return
        with self._lock:
            for channel in sorted(EVENT_CHANNELS):
                _, mid = client.subscribe(topic_filter(channel, site=self._site), qos=1)
                if mid is not None:
                    self._subscriptions.add(mid)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, _r: object, _p: Properties | None
    ) -> None:
        with self._lock:
            self._subscriptions.discard(mid)
            done = not self._subscriptions
        if done:
            self._connected.set()

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode(msg.topic, msg.payload)
        except ContractError as exc:
            with self._lock:
                key = exc.reason.value
                self.stats.bad[key] = self.stats.bad.get(key, 0) + 1
            log.warning("bad event on %s: %s", msg.topic, exc)
            return
        topic, payload = message.topic, message.payload
        if isinstance(payload, Tap) and self._answer_taps is not None:
            self._answer(client, msg, topic, payload)
        agent = (topic.site, topic.agent)
        with self._arrived:
            expected = self._expected.get(agent, 1)
            seq: int = payload.seq  # type: ignore[union-attr]
            if seq == expected:
                self.events.append(StoredEvent(topic, payload))  # type: ignore[arg-type]
                self.stats.stored += 1
                self._expected[agent] = expected = seq + 1
                self._arrived.notify_all()
            elif seq < expected:
                self.stats.duplicates += 1
            else:
                self.stats.gaps += 1
                return  # the ack already sent covers expected - 1; the agent will go back
        ack_topic = str(Topic.ack(topic.site, topic.agent))
        client.publish(ack_topic, encode(Ack(seq=expected - 1)), qos=1)

    def _answer(self, client: mqtt.Client, msg: mqtt.MQTTMessage, topic: Topic, tap: Tap) -> None:
        if self._answer_taps is None:
            return
        answer = self._answer_taps(topic, tap)
        props_in = getattr(msg, "properties", None)
        response_topic = getattr(props_in, "ResponseTopic", None)
        if answer is None or not response_topic:
            return
        props = publish_properties(correlation=getattr(props_in, "CorrelationData", None))
        client.publish(response_topic, encode(answer), qos=1, properties=props)
        with self._lock:
            self.stats.answered += 1
