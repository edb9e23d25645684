"""The server's MQTT connection: the server account, resubscribing on every (re)connect."""

from __future__ import annotations

import logging
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ruche.mqtt import no_delay, publish_properties, stop_client
from ruche.paho_internals import BufferedClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MqttOptions:
    """Where and as whom the server's workers connect (the server account of the ACL)."""

    host: str
    port: int
    username: str
    password: str
    ca_file: Path | None = None
    keepalive: int = 30


MessageHandler = Callable[[mqtt.Client, mqtt.MQTTMessage], None]


class ServerConnection:
    """A paho MQTT v5 client of the server account that (re)subscribes on every connect.

    Callbacks run on paho's network thread; `handler` must not raise (it is guarded).
    """

    def __init__(
        self,
        options: MqttOptions,
        *,
        name: str,
        subscriptions: Sequence[tuple[str, int]] = (),
        handler: MessageHandler | None = None,
        manual_ack: bool = False,
    ) -> None:
        """`manual_ack`: QoS 1 messages are acknowledged to the broker only when the
        handler's owner calls `ack(msg)`, after it has made them durable."""
        self.options = options
        self._subscriptions = tuple(subscriptions)
        self._handler = handler
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        self.client.username_pw_set(options.username, options.password)
        if options.ca_file is not None:
            self.client.tls_set(ca_certs=str(options.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_socket_open = no_delay
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def start(self, timeout: float = 10.0) -> None:
        """Connect in the background; return once connected and subscribed (or TimeoutError)."""
        self.client.connect_async(self.options.host, self.options.port, self.options.keepalive)
        self.client.loop_start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(
                f"no MQTT connection to {self.options.host}:{self.options.port} in {timeout} s: "
                "is the broker up, and are the server account's credentials right?"
            )

    def ack(self, msg: mqtt.MQTTMessage) -> None:
        """Acknowledge a message to the broker (with `manual_ack`): it will not come again."""
        self.client.ack_all([msg])

    def ack_all(self, messages: Sequence[mqtt.MQTTMessage]) -> None:
        """Acknowledge a batch of messages in one write (see `BufferedClient.ack_all`)."""
        self.client.ack_all(messages)

    def stop(self) -> None:
        stop_client(self.client)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the server account: %s", reason)
            return
        if not self._subscriptions:
            self._ready.set()
            return
        with self._lock:
            for topic, qos in self._subscriptions:
                _, mid = client.subscribe(topic, qos=qos)
                if mid is not None:
                    self._pending.add(mid)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, _r: object, _p: Properties | None
    ) -> None:
        with self._lock:
            self._pending.discard(mid)
            done = not self._pending
        if done:
            self._ready.set()

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if self._handler is None:
            return
        try:
            self._handler(client, msg)
        except Exception:
            # A handler bug must not kill paho's network thread (and every later tap with it).
            log.exception("handling a message on %s failed", msg.topic)


def expiring(seconds: int, *, correlation: bytes | None = None) -> Properties:
    """PUBLISH properties with a Message Expiry Interval (and correlation data, if any)."""
    props = publish_properties(correlation=correlation)
    props.MessageExpiryInterval = seconds
    return props
