"""An MQTT v5 broker in pure Python (asyncio), for `ruche demo` when Mosquitto is not
installed.

    python -m ruche.broker.embedded --conf-dir ./broker-conf   # the dir `write_config` filled

It serves the configuration Ruche generates for Mosquitto (`mosquitto.conf`, the `$7$`
password file, the ACL; see `ruche.broker.embedded_access`), so one generated
configuration runs on either broker. What the edge, the server and the simulator use is
there: username/password logins, clean start and session expiry, keepalive, wills (also
delayed), QoS 0 and 1 with the client's Receive Maximum honoured, retained messages,
`+`/`#` wildcards, shared subscriptions (`$share/GROUP/filter`, round robin), no-local,
retain-as-published, retain handling, subscription identifiers, message expiry, and every
other PUBLISH property forwarded as sent. It does not offer QoS 2 (CONNACK says Maximum
QoS 1), topic aliases, enhanced authentication, TLS, MQTT 3.1.1, `$SYS` topics, or
persistence: a restart forgets sessions, queues and retained messages.

A QoS 1 message taken by a shared-subscription member that goes away unacknowledged goes to
another member of the group (or waits for one to connect): the server's ingest workers ack
only after they have committed, and nothing may be lost between them.

SIGHUP re-reads the password file and the ACL, as Mosquitto does. A client that breaks
the protocol is disconnected with a logged reason; the broker carries on.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import secrets
import signal
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from ruche.broker.embedded_access import ConfigError, EmbeddedConfig, parse_filter, topic_levels
from ruche.broker.embedded_codec import (
    Ack,
    Connect,
    Disconnect,
    FrameReader,
    PacketError,
    PacketType,
    Pingreq,
    Prop,
    Publish,
    Reason,
    Subscribe,
    Unsubscribe,
    UnsupportedProtocolError,
    Will,
    decode,
    encode_ack,
    encode_connack,
    encode_disconnect,
    encode_suback,
    encode_unsuback,
    prop_str,
    prop_u8,
    prop_u16,
    prop_u32,
)
from ruche.broker.embedded_sessions import Broker, Delivery, Session, Subscription
from ruche.broker.mosquitto_config import CONF_NAME
from ruche.broker.passwords import verify_password

__all__ = ["READY_LINE", "Connection", "main", "serve"]

log = logging.getLogger("ruche.broker.embedded")

READY_LINE = "embedded MQTT v5 broker listening on"
"""Logged once the listener is open: `EmbeddedBrokerProcess.start` waits for it."""
CONNECT_TIMEOUT_S = 10.0
"""A connection that has not sent CONNECT by then is closed."""

_ids = itertools.count(1)


class Connection(asyncio.Protocol):
    """One client's network connection: frames in, decoded packets to the broker,
    answers batched into one write per event-loop turn."""

    def __init__(self, broker: Broker, connections: set[Connection]) -> None:
        self.broker = broker
        self.connections = connections
        self.frames = FrameReader(broker.config.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.state = "new"  # new, authenticating, connected, closed
        self.client_id = f"(connection {next(_ids)})"
        self.peer = "?"
        self.will: Will | None = None
        self.keepalive = 0
        self.opened = self.last_seen = time.monotonic()
        self._out: list[bytes] = []
        self._flushing = False

    # --- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - TCP server
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Small packets (PUBACKs) must not wait for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        self.frames.feed(data)
        if self.state in ("new", "connected"):  # else held until the password is checked
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.state != "closed":
            why = "connection lost" if exc is None else f"connection lost: {exc}"
            self._gone(why)

    @property
    def backlog(self) -> int:
        if self.transport is None:
            return 0
        return self.transport.get_write_buffer_size() + sum(map(len, self._out))

    def send(self, data: bytes) -> None:
        if self.state == "closed":
            return
        self._out.append(data)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    # --- packets ---------------------------------------------------------------------

    def _process(self) -> None:
        try:
            for first, body in self.frames.packets():
                self._handle(decode(first, body))
                if self.state in ("authenticating", "closed"):
                    return
        except UnsupportedProtocolError as exc:
            if self.state == "new" and exc.level in (3, 4):
                # Their CONNACK: return code 1, unacceptable protocol version.
                self._write_now(b"\x20\x02\x00\x01")
            self.abort(exc.reason, str(exc))
        except PacketError as exc:
            self.abort(exc.reason, str(exc))
        except Exception:
            log.exception("handling a packet from %s (%s) failed", self.client_id, self.peer)
            self.abort(Reason.IMPLEMENTATION_SPECIFIC, "the broker failed on this packet")

    def _handle(self, packet: object) -> None:
        if self.state == "new":
            if not isinstance(packet, Connect):
                raise PacketError("the first packet was not CONNECT", Reason.PROTOCOL_ERROR)
            self._connect(packet)
            return
        session = self.session
        assert session is not None  # noqa: S101 - connected
        if isinstance(packet, Publish):
            self._publish(session, packet)
        elif isinstance(packet, Ack):
            if packet.kind == PacketType.PUBACK:
                session.acked(packet.packet_id)
            elif packet.kind == PacketType.PUBREL:
                self.send(encode_ack(PacketType.PUBCOMP, packet.packet_id,
                                     Reason.PACKET_ID_NOT_FOUND))  # fmt: skip
        elif isinstance(packet, Subscribe):
            self._subscribe(session, packet)
        elif isinstance(packet, Unsubscribe):
            reasons = [self.broker.unsubscribe(session, text) for text in packet.filters]
            self.send(encode_unsuback(packet.packet_id, reasons))
        elif isinstance(packet, Pingreq):
            self.send(b"\xd0\x00")
        elif isinstance(packet, Disconnect):
            self._disconnect(session, packet)
        else:
            raise PacketError("a second CONNECT", Reason.PROTOCOL_ERROR)

    def _connect(self, connect: Connect) -> None:
        self.client_id = connect.client_id or f"auto-{secrets.token_hex(8)}"
        self.keepalive = connect.keepalive
        broker = self.broker
        if connect.auth_method is not None:
            self._refuse(Reason.BAD_AUTH_METHOD, "enhanced authentication is not offered")
            return
        if connect.username is None:
            if broker.config.allow_anonymous:
                self._accept(connect)
            else:
                self._refuse(Reason.NOT_AUTHORIZED, "anonymous clients are not allowed")
            return
        entry = broker.passwords.get(connect.username)
        try:
            password = (connect.password or b"").decode()
        except UnicodeDecodeError:
            password = None
        if entry is None or password is None or connect.password is None:
            self._refuse(Reason.BAD_CREDENTIALS, f"unknown user {connect.username!r} or "
                         "no password")  # fmt: skip
            return
        # PBKDF2 takes milliseconds and releases the GIL: off the loop, which serves the
        # other clients meanwhile; this one's next packets wait in the buffer.
        self.state = "authenticating"
        assert self.transport is not None  # noqa: S101
        self.transport.pause_reading()
        loop = asyncio.get_running_loop()
        check = loop.run_in_executor(None, verify_password, password, entry)
        check.add_done_callback(lambda done: self._checked(connect, done))

    def _checked(self, connect: Connect, done: asyncio.Future[bool]) -> None:
        if self.state == "closed":
            return
        if done.cancelled() or done.exception() is not None or not done.result():
            self._refuse(Reason.BAD_CREDENTIALS, f"wrong password for {connect.username!r}")
            return
        try:
            self._accept(connect)
        except Exception:
            log.exception("accepting %s (%s) failed", self.client_id, self.peer)
            self.abort(Reason.IMPLEMENTATION_SPECIFIC, "the broker failed on this CONNECT")
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._process()

    def _accept(self, connect: Connect) -> None:
        config = self.broker.config
        self.session, present = self.broker.open_session(connect, self.client_id)
        self.will = connect.will
        self.state = "connected"
        props = prop_u16(Prop.RECEIVE_MAXIMUM, min(config.max_inflight, 65_535))
        props += prop_u8(Prop.MAXIMUM_QOS, 1)
        props += prop_u32(Prop.MAXIMUM_PACKET_SIZE, config.max_packet_size)
        if not connect.client_id:
            props += prop_str(Prop.ASSIGNED_CLIENT_ID, self.client_id)
        self.send(encode_connack(session_present=present, reason=0, properties=props))
        log.info("%s connected from %s as %s", self.client_id, self.peer, connect.username,
                 extra={"client": self.client_id, "user": connect.username,
                        "resumed": present})  # fmt: skip
        self.session.attach(self)

    def _refuse(self, reason: Reason, why: str) -> None:
        log.info("%s from %s refused: %s", self.client_id, self.peer, why)
        self._write_now(encode_connack(session_present=False, reason=reason))
        self.close()

    def _publish(self, session: Session, publish: Publish) -> None:
        if publish.qos == 2:
            raise PacketError("QoS 2 publish; CONNACK said Maximum QoS 1",
                                  Reason.QOS_NOT_SUPPORTED)  # fmt: skip
        if publish.topic_alias is not None:
            raise PacketError("a topic alias; CONNACK allowed none", Reason.TOPIC_ALIAS_INVALID)
        if publish.has_subscription_id:
            raise PacketError("PUBLISH with a subscription identifier", Reason.PROTOCOL_ERROR)
        topic = publish.topic
        if not topic or "+" in topic or "#" in topic:
            raise PacketError(f"PUBLISH to topic {topic!r}", Reason.TOPIC_NAME_INVALID)
        reason = self.broker.accept(session, publish, origin=self.client_id)
        if publish.qos == 1:
            self.send(encode_ack(PacketType.PUBACK, publish.packet_id, reason))

    def _subscribe(self, session: Session, packet: Subscribe) -> None:
        reasons: list[int] = []
        retained: list[Delivery] = []
        shared: list[Subscription] = []
        for request in packet.requests:
            try:
                group, inner = parse_filter(request.filter)
            except PacketError as exc:
                log.info("%s: %s", self.client_id, exc)
                reasons.append(exc.reason)
                continue
            if group is not None and request.no_local:
                raise PacketError("no-local on a shared subscription", Reason.PROTOCOL_ERROR)
            sub = Subscription(request.filter, topic_levels(inner), min(request.qos, 1),
                               request.no_local, request.retain_as_published,
                               request.retain_handling, packet.subscription_id, group)  # fmt: skip
            reason, existed = self.broker.subscribe(session, request.filter, sub)
            reasons.append(reason)
            if reason >= 0x80:
                continue
            if group is not None:
                shared.append(sub)
            elif sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed):
                retained += self.broker.retained_for(session, sub)
        self.send(encode_suback(packet.packet_id, reasons))
        for delivery in retained:
            session.offer(delivery)
        for sub in shared:
            assert sub.group is not None  # noqa: S101 - shared
            self.broker.group(sub.group, sub.levels).flush()

    def _disconnect(self, session: Session, packet: Disconnect) -> None:
        if packet.session_expiry is not None:
            if session.expiry == 0 and packet.session_expiry != 0:
                raise PacketError("DISCONNECT set a session expiry the CONNECT did not",
                                      Reason.PROTOCOL_ERROR)  # fmt: skip
            session.expiry = packet.session_expiry
        if packet.reason != Reason.DISCONNECT_WITH_WILL:
            self.will = None
        log.info("%s disconnected", self.client_id, extra={"client": self.client_id})
        self._gone(None)
        self.close()

    # --- endings ---------------------------------------------------------------------

    def abort(self, reason: Reason, why: str) -> None:
        """Close this connection for breaking the protocol: said to the client, logged."""
        log.warning("closing %s (%s): %s", self.client_id, self.peer, why,
                    extra={"client": self.client_id, "reason": f"0x{reason:02x}"})  # fmt: skip
        if self.state == "connected":
            self._write_now(encode_disconnect(reason, why))
        elif self.state == "new" and reason != Reason.UNSUPPORTED_PROTOCOL:
            self._write_now(encode_connack(session_present=False, reason=reason))
        self._gone(why)
        self.close()

    def take_over(self) -> None:
        """A new connection came with this one's client id."""
        self._write_now(encode_disconnect(Reason.SESSION_TAKEN_OVER))
        self._gone("session taken over")
        self.close()

    def shut_down(self) -> None:
        """The broker is stopping: say so, and close without publishing the will."""
        if self.state == "connected":
            self._write_now(encode_disconnect(Reason.SERVER_SHUTTING_DOWN))
        self.close()

    def expire_keepalive(self) -> None:
        self.abort(Reason.KEEPALIVE_TIMEOUT, f"nothing heard for 1.5 x {self.keepalive} s")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()
        self.state = "closed"

    def _write_now(self, data: bytes) -> None:
        self._out.append(data)
        self._flush()

    def _gone(self, why: str | None) -> None:
        """Once per connection: publish the will unless told not to, release the session."""
        was, self.state = self.state, "closed"
        session = self.session
        if was != "connected" or session is None or session.connection is not self:
            return
        if why is not None:
            log.info("%s gone: %s", self.client_id, why, extra={"client": self.client_id})
        will, self.will = self.will, None
        if will is not None:
            delay = min(will.delay, session.expiry)
            if delay == 0:
                self.broker.accept(session, will, origin=self.client_id)
            else:
                session.delayed_will = will
                session.will_timer = asyncio.get_running_loop().call_later(
                    delay, self.broker.publish_delayed_will, session
                )
        session.detach()


# --- the process -------------------------------------------------------------------------


async def _watch_keepalives(connections: set[Connection]) -> None:
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for connection in list(connections):
            if connection.state == "connected":
                if connection.keepalive and now - connection.last_seen > 1.5 * connection.keepalive:
                    connection.expire_keepalive()
            elif connection.state == "new" and now - connection.opened > CONNECT_TIMEOUT_S:
                connection.abort(Reason.MALFORMED, "no CONNECT in time")


async def serve(config: EmbeddedConfig) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP re-reads the password file and the ACL."""
    broker = Broker(config)
    connections: set[Connection] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(broker, connections), config.host,
                                      config.port, reuse_address=True)  # fmt: skip
    for what in config.ignored:
        log.info("not supported by the embedded broker, ignored: %s", what)
    log.info("%s %s:%d", READY_LINE, config.host, config.port,
             extra={"host": config.host, "port": config.port})  # fmt: skip
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, broker.reload)
    watcher = asyncio.create_task(_watch_keepalives(connections))
    try:
        await stopping.wait()
    finally:
        log.info("stopping: %d clients connected", len(connections))
        watcher.cancel()
        server.close()
        for connection in list(connections):
            connection.shut_down()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """`python -m ruche.broker.embedded --conf-dir DIR [--host H] [--port P]`."""
    from ruche.logs import configure_logging  # noqa: PLC0415 - only the process needs it

    parser = argparse.ArgumentParser(
        prog="python -m ruche.broker.embedded",
        description="An MQTT v5 broker in Python serving Ruche's generated Mosquitto config.",
    )
    parser.add_argument("--conf-dir", type=Path, required=True,
                        help=f"the directory holding {CONF_NAME}, passwd and acl")  # fmt: skip
    parser.add_argument("--host", help="listen here instead of the config's listener")
    parser.add_argument("--port", type=int, help="listen here instead of the config's listener")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = EmbeddedConfig.read(args.conf_dir / CONF_NAME)
    except ConfigError as exc:
        log.error("%s", exc)  # noqa: TRY400 - the message says it all
        return 2
    if args.host is not None:
        config = replace(config, host=args.host)
    if args.port is not None:
        config = replace(config, port=args.port)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror)  # noqa: TRY400
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
