"""The embedded broker's state and routing: sessions, subscriptions, share groups and
retained messages (`ruche.broker.embedded` runs it behind asyncio connections).

No sockets here: a session talks to its client through a `ClientLink`. The clock is
read only to age messages that carry an expiry; session expiry and will delays are timers
on the running asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from math import ceil
from typing import Protocol

from ruche.broker.embedded_access import (
    Acl,
    ConfigError,
    EmbeddedConfig,
    Grants,
    matches,
    read_passwords,
    topic_levels,
)
from ruche.broker.embedded_codec import (
    Connect,
    Prop,
    Publish,
    Reason,
    Will,
    encode_publish,
    prop_u32,
    prop_varint,
)

log = logging.getLogger("ruche.broker.embedded")

_QOS0_BACKLOG = 16 << 20
"""Bytes waiting for a slow client beyond which QoS 0 messages to it are dropped."""
_READ_CACHE = 10_000


class ClientLink(Protocol):
    """A session's way to its connected client."""

    @property
    def backlog(self) -> int:
        """Bytes written to the client and not yet taken by the network."""
        ...

    def send(self, data: bytes) -> None: ...

    def take_over(self) -> None:
        """Another connection came with the same client id: end this one."""
        ...


@dataclass(slots=True, eq=False)
class Message:
    """One application message as the broker holds it."""

    topic: str
    levels: tuple[str, ...]
    payload: bytes
    qos: int
    retain: bool
    properties: bytes
    expires_at: float | None
    origin: str
    """Client id of the publisher (for no-local)."""
    wire_topic: bytes

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(slots=True, eq=False)
class Delivery:
    """A message on its way to one session."""

    message: Message
    qos: int
    retain: bool
    subscription_ids: tuple[int, ...] = ()
    group: ShareGroup | None = None
    """The share group it came through: where it goes back if never acknowledged."""


@dataclass(slots=True, eq=False)
class Subscription:
    text: str
    """As subscribed, `$share/GROUP/` included."""
    levels: tuple[str, ...]
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int
    subscription_id: int | None
    group: str | None


class Session:
    """What the broker keeps for one client id: subscriptions, QoS 1 messages in flight
    (at most the client's Receive Maximum) and queued; it outlives its connection by its
    session expiry interval."""

    def __init__(self, broker: Broker, client_id: str) -> None:
        self.broker = broker
        self.client_id = client_id
        self.username: str | None = None
        self.grants = Grants([])
        self.subscriptions: dict[str, Subscription] = {}
        self.inflight: dict[int, Delivery] = {}
        self.queue: deque[Delivery] = deque()
        self.connection: ClientLink | None = None
        self.window = 65_535
        self.max_packet: int | None = None
        self.expiry = 0
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.will_timer: asyncio.TimerHandle | None = None
        self.delayed_will: Will | None = None
        """A will waiting out its Will Delay Interval (cancelled if the client returns)."""
        self._next_id = 0
        self._readable: dict[str, bool] = {}

    @property
    def has_room(self) -> bool:
        return self.connection is not None and len(self.inflight) + len(self.queue) < self.window

    def may_read(self, message: Message) -> bool:
        known = self._readable.get(message.topic)
        if known is None:
            if len(self._readable) >= _READ_CACHE:
                self._readable.clear()
            known = self._readable[message.topic] = self.grants.may_read(message.levels)
        return known

    def set_grants(self, grants: Grants) -> None:
        self.grants = grants
        self._readable.clear()

    def offer(self, delivery: Delivery) -> None:
        """Send now if the window allows, else queue (QoS 0 to an offline client: dropped)."""
        if delivery.qos == 0:
            if self.connection is not None:
                self._transmit(delivery, self.connection)
            return
        if self.connection is not None and not self.queue and len(self.inflight) < self.window:
            self._transmit(delivery, self.connection)
        elif len(self.queue) >= self.broker.config.max_queued:
            log.warning("queue full for %s: message on %s dropped", self.client_id,
                        delivery.message.topic)  # fmt: skip
        else:
            self.queue.append(delivery)

    def acked(self, packet_id: int) -> None:
        if self.inflight.pop(packet_id, None) is None:
            log.debug("%s acknowledged unknown packet %d", self.client_id, packet_id)
        self.pump()

    def pump(self) -> None:
        connection = self.connection
        while connection is not None and self.queue and len(self.inflight) < self.window:
            self._transmit(self.queue.popleft(), connection)

    def attach(self, connection: ClientLink) -> None:
        """A connection takes this session over: resend what was in flight, then the queue."""
        self.connection = connection
        for timer in (self.expiry_timer, self.will_timer):
            if timer is not None:
                timer.cancel()
        self.expiry_timer = self.will_timer = None
        self.delayed_will = None
        now = time.monotonic()
        for packet_id, delivery in list(self.inflight.items()):
            if delivery.message.expired(now):
                del self.inflight[packet_id]
            else:
                connection.send(self._packet(delivery, packet_id, dup=True, now=now))
        self.pump()
        for sub in self.subscriptions.values():
            if sub.group is not None:
                self.broker.group(sub.group, sub.levels).flush()

    def detach(self) -> None:
        """The connection is gone: shared messages go back to their group at once; the
        rest stays for `expiry` seconds (or the session ends now)."""
        self.connection = None
        shared = [d for d in self.inflight.values() if d.group is not None]
        shared += [d for d in self.queue if d.group is not None]
        if shared:
            self.inflight = {k: d for k, d in self.inflight.items() if d.group is None}
            self.queue = deque(d for d in self.queue if d.group is None)
            log.info("%s left %d shared messages unacknowledged: handing them back",
                     self.client_id, len(shared))  # fmt: skip
            for delivery in shared:
                assert delivery.group is not None  # noqa: S101 - filtered above
                delivery.group.dispatch(delivery.message)
        if self.expiry == 0:
            self.broker.end_session(self)
        elif self.expiry < 0xFFFFFFFF:
            loop = asyncio.get_running_loop()
            self.expiry_timer = loop.call_later(self.expiry, self.broker.end_session, self)

    def _transmit(self, delivery: Delivery, connection: ClientLink) -> None:
        now = time.monotonic()
        if delivery.message.expired(now):
            return
        if delivery.qos == 0 and connection.backlog > _QOS0_BACKLOG:
            return
        packet_id = 0
        if delivery.qos:
            packet_id = self._new_id()
        packet = self._packet(delivery, packet_id, dup=False, now=now)
        if self.max_packet is not None and len(packet) > self.max_packet:
            # The client said it cannot take it: as if delivered (MQTT-3.1.2-25).
            log.info("message on %s too large for %s's maximum packet size, dropped",
                     delivery.message.topic, self.client_id)  # fmt: skip
            return
        if delivery.qos:
            self.inflight[packet_id] = delivery
        connection.send(packet)

    @staticmethod
    def _packet(delivery: Delivery, packet_id: int, *, dup: bool, now: float) -> bytes:
        message = delivery.message
        props = message.properties
        if message.expires_at is not None:
            props += prop_u32(Prop.MESSAGE_EXPIRY, max(1, ceil(message.expires_at - now)))
        for ident in delivery.subscription_ids:
            props += prop_varint(Prop.SUBSCRIPTION_ID, ident)
        return encode_publish(message.wire_topic, message.payload, qos=delivery.qos,
                              retain=delivery.retain, dup=dup, packet_id=packet_id,
                              properties=props)  # fmt: skip

    def _new_id(self) -> int:
        while True:
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self.inflight:
                return self._next_id


@dataclass(eq=False)
class ShareGroup:
    """`$share/NAME/filter`: each message to one member, round robin, preferring members
    with room in their window; held here while no member is connected."""

    broker: Broker
    name: str
    levels: tuple[str, ...]
    members: list[tuple[Session, Subscription]] = field(default_factory=list)
    pending: deque[Message] = field(default_factory=deque)
    cursor: int = 0

    def dispatch(self, message: Message) -> None:
        chosen = self._choose()
        if chosen is None:
            if len(self.pending) >= self.broker.config.max_queued:
                log.warning("share group %s holds too many messages: %s dropped", self.name,
                            message.topic)  # fmt: skip
            else:
                self.pending.append(message)
            return
        session, sub = chosen
        if not session.may_read(message):
            return  # as Mosquitto: granted at subscribe time, refused at delivery
        qos = min(message.qos, sub.qos)
        ids = () if sub.subscription_id is None else (sub.subscription_id,)
        session.offer(Delivery(message, qos, message.retain and sub.retain_as_published, ids,
                               self if qos else None))  # fmt: skip

    def flush(self) -> None:
        while self.pending and self._choose(peek=True) is not None:
            self.dispatch(self.pending.popleft())

    def _choose(self, *, peek: bool = False) -> tuple[Session, Subscription] | None:
        count = len(self.members)
        for needs_room in (True, False):
            for k in range(count):
                i = (self.cursor + k) % count
                session = self.members[i][0]
                if session.connection is None or (needs_room and not session.has_room):
                    continue
                if not peek:
                    self.cursor = i + 1
                return self.members[i]
        return None


@dataclass(eq=False)
class _Filter:
    levels: tuple[str, ...]
    subscribers: dict[str, tuple[Session, Subscription]] = field(default_factory=dict)


class Broker:
    """Sessions, subscriptions, share groups and retained messages; the routing between
    them. Connections (`Connection`) hand it decoded packets."""

    def __init__(self, config: EmbeddedConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, Message] = {}
        self._filters: dict[str, _Filter] = {}
        self._groups: dict[tuple[str, tuple[str, ...]], ShareGroup] = {}
        self.passwords: dict[str, str] = {}
        self.acl = Acl({}, [], [])
        self.reload()

    def reload(self) -> None:
        """(Re-)read the password file and the ACL; connected clients get the new ACL."""
        config = self.config
        try:
            passwords = read_passwords(config.passwd) if config.passwd else {}
            acl = Acl.parse(config.acl.read_text(encoding="utf-8"), where=str(config.acl)) \
                if config.acl else Acl({}, [], [])  # fmt: skip
        except (OSError, ConfigError) as exc:
            # Expected (a file being rewritten, a typo): the message is all there is to say.
            log.error("could not read the password file or the ACL, keeping the old: %s", exc)  # noqa: TRY400
            return
        self.passwords, self.acl = passwords, acl
        for session in self.sessions.values():
            session.set_grants(acl.grants(session.username, session.client_id))
        log.info("loaded %d accounts and the ACL", len(passwords))

    def group(self, name: str, levels: tuple[str, ...]) -> ShareGroup:
        key = (name, levels)
        found = self._groups.get(key)
        if found is None:
            found = self._groups[key] = ShareGroup(self, name, levels)
        return found

    # --- sessions --------------------------------------------------------------------

    def open_session(self, connect: Connect, client_id: str) -> tuple[Session, bool]:
        """The session for a new connection (taking it over from an older connection), and
        whether it is an existing one resumed. The caller attaches to it after CONNACK."""
        old = self.sessions.get(client_id)
        if old is not None and old.connection is not None:
            old.connection.take_over()
        old = self.sessions.get(client_id)
        if old is not None and (connect.clean_start or old.username != connect.username):
            self.end_session(old)
            old = None
        session = old or Session(self, client_id)
        self.sessions[client_id] = session
        session.username = connect.username
        session.set_grants(self.acl.grants(connect.username, client_id))
        session.expiry = connect.session_expiry
        session.window = min(connect.receive_maximum, self.config.max_inflight)
        session.max_packet = connect.maximum_packet_size
        return session, old is not None

    def end_session(self, session: Session) -> None:
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if session.expiry_timer is not None:
            session.expiry_timer.cancel()
        self.publish_delayed_will(session)
        for sub in list(session.subscriptions.values()):
            self._drop_subscription(session, sub)
        session.subscriptions.clear()
        session.queue.clear()
        session.inflight.clear()

    def publish_delayed_will(self, session: Session) -> None:
        """The will delay is over, or the session ended first."""
        if session.will_timer is not None:
            session.will_timer.cancel()
            session.will_timer = None
        will, session.delayed_will = session.delayed_will, None
        if will is not None:
            self.accept(session, will, origin=session.client_id)

    # --- publishing ------------------------------------------------------------------

    def accept(self, session: Session, publish: Publish | Will, *, origin: str) -> Reason:
        """A PUBLISH (or a will) from `session`'s client: checked, retained, routed."""
        limit = self.config.message_size_limit
        topic = publish.topic
        if limit and len(publish.payload) > limit:
            log.warning("%s published %d bytes on %s, over message_size_limit %d: refused",
                        origin, len(publish.payload), topic, limit)  # fmt: skip
            return Reason.QUOTA_EXCEEDED
        levels = topic_levels(topic)
        if not session.grants.may_write(levels):
            log.info("%s (user %s) may not publish on %s: refused", origin, session.username,
                     topic)  # fmt: skip
            return Reason.NOT_AUTHORIZED
        expiry = publish.expiry
        message = Message(topic, levels, publish.payload, publish.qos, publish.retain,
                          publish.properties,
                          None if expiry is None else time.monotonic() + expiry, origin,
                          topic.encode())  # fmt: skip
        if message.retain:
            if message.payload:
                self.retained[topic] = message
            else:
                self.retained.pop(topic, None)
        self.route(message)
        return Reason.SUCCESS

    def route(self, message: Message) -> None:
        levels = message.levels
        # One copy per session, at the highest QoS of its matching subscriptions and with
        # all their identifiers (MQTT-3.3.4-2 allows either; one copy is what clients expect).
        targets: dict[Session, Delivery] = {}
        for entry in self._filters.values():
            if not matches(entry.levels, levels):
                continue
            for session, sub in entry.subscribers.values():
                if sub.no_local and session.client_id == message.origin:
                    continue
                ids = () if sub.subscription_id is None else (sub.subscription_id,)
                found = targets.get(session)
                if found is None:
                    targets[session] = Delivery(
                        message, min(message.qos, sub.qos),
                        message.retain and sub.retain_as_published, ids,
                    )  # fmt: skip
                    continue
                found.qos = max(found.qos, min(message.qos, sub.qos))
                found.retain = found.retain or (message.retain and sub.retain_as_published)
                found.subscription_ids += ids
        for session, delivery in targets.items():
            if session.may_read(message):
                session.offer(delivery)
        for group in self._groups.values():
            if group.members and matches(group.levels, levels):
                group.dispatch(message)

    # --- subscriptions ---------------------------------------------------------------

    def subscribe(self, session: Session, text: str, sub: Subscription) -> tuple[Reason, bool]:
        """Add or replace a subscription; (reason, whether it existed before)."""
        if not session.grants.may_subscribe(sub.levels):
            log.info("%s (user %s) may not subscribe to %s: refused", session.client_id,
                     session.username, text)  # fmt: skip
            return Reason.NOT_AUTHORIZED, False
        old = session.subscriptions.get(text)
        if old is not None:
            self._drop_subscription(session, old)
        session.subscriptions[text] = sub
        if sub.group is not None:
            self.group(sub.group, sub.levels).members.append((session, sub))
        else:
            inner = "/".join(sub.levels)
            entry = self._filters.get(inner)
            if entry is None:
                entry = self._filters[inner] = _Filter(sub.levels)
            entry.subscribers[session.client_id] = (session, sub)
        return Reason(sub.qos), old is not None

    def unsubscribe(self, session: Session, text: str) -> Reason:
        sub = session.subscriptions.pop(text, None)
        if sub is None:
            return Reason.NO_SUBSCRIPTION_EXISTED
        self._drop_subscription(session, sub)
        return Reason.SUCCESS

    def retained_for(self, session: Session, sub: Subscription) -> list[Delivery]:
        now = time.monotonic()
        out = []
        for topic, message in list(self.retained.items()):
            if message.expired(now):
                del self.retained[topic]
            elif matches(sub.levels, message.levels) and session.may_read(message):
                ids = () if sub.subscription_id is None else (sub.subscription_id,)
                out.append(Delivery(message, min(message.qos, sub.qos), True, ids))
        return out

    def _drop_subscription(self, session: Session, sub: Subscription) -> None:
        if sub.group is None:
            inner = "/".join(sub.levels)
            entry = self._filters.get(inner)
            if entry is not None:
                entry.subscribers.pop(session.client_id, None)
                if not entry.subscribers:
                    del self._filters[inner]
            return
        key = (sub.group, sub.levels)
        group = self._groups.get(key)
        if group is None:
            return
        group.members = [(s, m) for s, m in group.members if s is not session]
        group.cursor = 0
        if not group.members and not group.pending:
            del self._groups[key]
