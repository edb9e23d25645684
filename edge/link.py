"""The agent's MQTT v5 link: sends the outbox in order, takes the server's acks, commands
and allow-list, keeps a retained status with a last will, and reconnects with backoff.

Thread model: paho's network thread runs the callbacks; one sender thread moves
events from the outbox to the broker. Neither blocks on the other for long.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ruche import __version__
from ruche.broker import (
    Ack,
    AgentConfig,
    Allowlist,
    Channel,
    Command,
    ContractError,
    Status,
    Topic,
    decode,
    encode,
)
from ruche.broker.accounts import agent_username
from ruche.edge.delivery import DeliveryWindow
from ruche.edge.outbox import Outbox
from ruche.mqtt import no_delay, publish_properties, stop_client
from ruche.refusals import RefusalLog

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], None]
AllowlistHandler = Callable[[Allowlist], None]


@dataclass(frozen=True, kw_only=True)
class LinkOptions:
    """Where and how the agent connects.

    window: events in flight beyond the server's ack.
    resend_after: seconds without an ack before resending from the first unacked event.
    status_interval: seconds between retained status updates.
    reconnect_min, reconnect_max: backoff bounds in seconds.
    """

    site: str
    agent: str
    host: str
    port: int
    username: str
    password: str
    ca_file: Path | None = None
    keepalive: int = 30
    window: int = 500
    resend_after: float = 5.0
    status_interval: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0


@dataclass
class LinkStats:
    """Counters the agent reports and tests read."""

    connects: int = 0
    connect_failures: int = 0
    """Connection attempts that failed before MQTT began (TCP or TLS)."""
    sent: int = 0
    resends: int = 0
    acks: int = 0
    refused_by_server: int = 0
    """Events the server acked as refused (it will never store them)."""
    bad_messages: dict[str, int] = field(default_factory=dict)


class AgentLink:
    """One agent's connection to the broker, on top of its durable outbox."""

    def __init__(
        self,
        options: LinkOptions,
        outbox: Outbox,
        *,
        on_command: CommandHandler,
        on_allowlist: AllowlistHandler,
        on_config: Callable[[AgentConfig], None] | None = None,
        faults: Callable[[], tuple[str, ...]] = tuple,
        config_state: Callable[[], tuple[int | None, str | None]] = lambda: (None, None),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.outbox = outbox
        self.stats = LinkStats()
        self._on_command = on_command
        self._on_allowlist = on_allowlist
        self._on_config = on_config
        self._faults = faults
        self._config_state = config_state
        self._announce = threading.Event()
        self._clock = clock
        self._started = clock()
        self._window = DeliveryWindow(
            size=options.window, resend_after=options.resend_after, acked=outbox.acked_seq
        )
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._topics = {
            Channel.CMD: str(Topic.cmd(options.site, options.agent)),
            Channel.ALLOWLIST: str(Topic.allowlist(options.site, options.agent)),
            Channel.ACK: str(Topic.ack(options.site, options.agent)),
            Channel.CONFIG: str(Topic.config(options.site, options.agent)),
        }
        self._status_topic = str(Topic.status(options.site, options.agent))
        self._connect_failure: str | None = None
        self._failed_attempts = 0
        # A Pi's SD card must not fill with a line per bad message, however many come.
        self._refusals = RefusalLog(log, "message")
        self._client = self._build_client()

    # --- public -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    @property
    def cmd_topic(self) -> str:
        return self._topics[Channel.CMD]

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start sending."""
        self._client.connect_async(
            self.options.host, self.options.port, keepalive=self.options.keepalive
        )
        self._client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="outbox-sender", daemon=True)
        self._sender.start()

    def stop(self) -> None:
        """Say goodbye (status offline) and disconnect; the outbox keeps what is unsent."""
        self._stopping.set()
        self.wake()
        if self._sender is not None:
            self._sender.join(timeout=5)
        if self.connected:
            info = self._client.publish(
                self._status_topic, self._status(online=False), qos=1, retain=True
            )
            info.wait_for_publish(timeout=2)
        stop_client(self._client)
        self._refusals.flush()

    def wake(self) -> None:
        """New events are in the outbox: send them now rather than at the next poll."""
        with self._wake:
            self._wake.notify()

    def announce(self) -> None:
        """Publish the status now (a sensor fault appeared or cleared)."""
        self._announce.set()
        self.wake()

    def request(self, topic: str, payload: bytes, request_id: str) -> bool:
        """Publish a tap as an MQTT v5 request whose answer comes on our `cmd` topic.

        Sent ahead of the outbox queue, because a door must not wait behind a backlog;
        the outbox sends the same event again in order, and the server dedupes.
        Returns False when not connected (the caller decides offline at once).
        """
        if not self.connected:
            return False
        props = publish_properties(response_topic=self.cmd_topic, correlation=request_id.encode())
        info = self._client.publish(topic, payload, qos=1, properties=props)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # --- paho callbacks -----------------------------------------------------------

    def _build_client(self) -> mqtt.Client:
        opts = self.options
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=agent_username(opts.site, opts.agent),
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(opts.username, opts.password)
        if opts.ca_file is not None:
            client.tls_set(ca_certs=str(opts.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(
            min_delay=max(1, int(opts.reconnect_min)), max_delay=int(opts.reconnect_max)
        )
        client.max_inflight_messages_set(opts.window)
        client.will_set(self._status_topic, self._status(online=False), qos=1, retain=True)
        client.on_socket_open = no_delay
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the agent: %s", reason)
            return
        self.stats.connects += 1
        if self._connect_failure is not None:
            log.info("the broker took the connection after %d failed attempts",
                     self._failed_attempts)  # fmt: skip
            self._connect_failure, self._failed_attempts = None, 0
        for topic in self._topics.values():
            client.subscribe(topic, qos=1)
        client.publish(self._status_topic, self._status(online=True), qos=1, retain=True)
        with self._wake:
            self._window.connected(self._clock())
            self._wake.notify()
        log.info("connected to %s:%s", self.options.host, self.options.port)

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        # paho calls this from inside its `except OSError:` around reconnect(), so the error
        # being handled is why (a certificate the CA does not vouch for, a name not in it,
        # a refused connection). Said once per distinct reason: an outage of hours retries
        # every 30 s, and a Pi's SD card must not fill with the same line.
        error = sys.exc_info()[1]
        reason = "no reason given" if error is None else (str(error) or type(error).__name__)
        self.stats.connect_failures += 1
        self._failed_attempts += 1
        if reason != self._connect_failure:
            self._connect_failure = reason
            log.warning("cannot connect to %s:%s (%s); retrying", self.options.host,
                        self.options.port, reason)  # fmt: skip

    def _on_disconnect(
        self,
        _c: mqtt.Client,
        _u: object,
        _f: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if not self._stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode(msg.topic, msg.payload)
        except ContractError as exc:
            reason = exc.reason.value
            self.stats.bad_messages[reason] = self.stats.bad_messages.get(reason, 0) + 1
            self._refusals.refused(reason, msg.topic, exc.detail)
            return
        payload = message.payload
        try:
            if isinstance(payload, Ack):
                self._take_ack(payload.seq)
                if payload.refused:
                    self._server_refused(payload.refused)
            elif isinstance(payload, Allowlist):
                self._on_allowlist(payload)
            elif isinstance(payload, AgentConfig):
                if self._on_config is not None:
                    self._on_config(payload)
            elif message.topic.channel is Channel.CMD:
                self._on_command(payload)  # type: ignore[arg-type]
        except Exception:
            # A handler bug must not kill paho's network thread (and with it the link).
            log.exception("handling %s failed", msg.topic)

    def _server_refused(self, seqs: tuple[int, ...]) -> None:
        # The server will never store these (it keeps them by key with the reason, for a
        # manager to read): the agent counts them and says so, a few lines a window.
        self.stats.refused_by_server += len(seqs)
        for seq in seqs:
            self._refusals.refused("refused_by_server", f"seq {seq}",
                                   "the server will never store it")  # fmt: skip

    def _take_ack(self, seq: int) -> None:
        self.stats.acks += 1
        removed = self.outbox.ack(seq)
        with self._wake:
            progressed = self._window.ack(seq, self._clock())
            if progressed:
                self._wake.notify()
        log.debug("ack %s: %s events released", seq, removed)

    # --- sender -------------------------------------------------------------------

    def _send_loop(self) -> None:
        next_status = self._clock() + self.options.status_interval
        while not self._stopping.is_set():
            with self._wake:
                self._wake.wait(timeout=0.2)
            if not self.connected:
                continue
            try:
                self._send_some()
                if self._clock() >= next_status or self._announce.is_set():
                    self._announce.clear()
                    next_status = self._clock() + self.options.status_interval
                    self._client.publish(
                        self._status_topic, self._status(online=True), qos=1, retain=True
                    )
            except Exception:
                log.exception("sending from the outbox failed; retrying")

    def _send_some(self) -> None:
        while not self._stopping.is_set() and self.connected:
            with self._wake:
                if self._window.stalled(self._clock()):
                    self.stats.resends += 1
                    log.info("no ack for %.1f s: resending from seq %s",
                             self.options.resend_after, self._window.acked + 1)  # fmt: skip
                room = self._window.room()
                after = self._window.sent_upto
            if room == 0:
                return
            items = self.outbox.pending(after=after, limit=min(room, 200))
            if not items:
                return
            for item in items:
                self._client.publish(item.topic, item.payload, qos=1)
                self.stats.sent += 1
            with self._wake:
                self._window.sent(items[-1].seq)

    def _status(self, *, online: bool) -> bytes:
        config_version, config_refused = self._config_state() if online else (None, None)
        return encode(
            Status(
                state="online" if online else "offline",
                ts=datetime.now(UTC),
                version=__version__,
                uptime_s=max(0.0, self._clock() - self._started) if online else 0.0,
                outbox_depth=self.outbox.depth if online else 0,
                faults=self._faults() if online else (),
                config_version=config_version,
                config_refused=config_refused,
            )
        )
