"""A lean MQTT v5 connection for load generation: QoS 1 publishes, and the messages of
one subscription, on a non-blocking socket that the caller polls.

Why not paho here: a load generator plays dozens of agents from one process, and
paho's client-per-thread model costs about 280 µs a message on this laptop-class
machine (threads taking turns at the GIL), which would leave the broker and the
server under test too little CPU to measure. This speaks just the packets a
publishing agent needs (CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ, DISCONNECT), in
one thread, batching writes per poll. Agents themselves use paho (`ruche.edge`).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from ruche.mqtt_wire import MalformedLengthError, packet, read_varint, utf8

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 0x20, 0x30, 0x40, 0x90, 0xD0
KEEPALIVE_S = 60


class LoadMqttError(ConnectionError):
    """The broker refused or dropped a load connection; the message says which and why."""


def _read_varint(data: bytes | bytearray, at: int) -> tuple[int, int] | None:
    try:
        return read_varint(data, at)
    except MalformedLengthError as exc:
        raise LoadMqttError(f"malformed length from the broker: {exc}") from exc


class LoadConnection:
    """One client of the broker: `publish` queues, `poll` writes, reads and dispatches.

    `on_message(topic, payload)` receives the subscription's messages (acknowledged
    here). `inflight` counts QoS 1 publishes the broker has not acknowledged yet;
    `publish` refuses to go over the broker's Receive Maximum.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str,
        password: str,
        subscription: str | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.inflight = 0
        self.receive_maximum = 65_535
        self._on_message = on_message
        self._out = bytearray()
        self._in = bytearray()
        self._next_id = 0
        self._last_ping = time.monotonic()
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connect = (
            utf8("MQTT") + bytes([5, 0x80 | 0x40 | 0x02]) + struct.pack("!H", KEEPALIVE_S)
            + b"\x00" + utf8(client_id) + utf8(username) + utf8(password)
        )  # fmt: skip
        self.sock.sendall(packet(0x10, connect))
        first, body = self._read_blocking()
        if first != CONNACK or len(body) < 2 or body[1] != 0:
            code = body[1] if len(body) > 1 else None
            raise LoadMqttError(f"the broker refused {username} (reason code {code})")
        self._read_connack_properties(body)
        if subscription is not None:
            subscribe = struct.pack("!H", self._packet_id()) + b"\x00" + utf8(subscription)
            self.sock.sendall(packet(0x82, subscribe + b"\x01"))
            first, body = self._read_blocking()
            if first != SUBACK or body[-1] >= 0x80:
                raise LoadMqttError(f"the broker refused {username}'s subscription")
        self.sock.setblocking(False)

    def publish(self, topic: bytes, payload: bytes) -> bool:
        """Queue a QoS 1 publish; False (nothing queued) when the in-flight window is full."""
        if self.inflight >= self.receive_maximum:
            return False
        self.inflight += 1
        body = utf8(topic) + struct.pack("!H", self._packet_id()) + b"\x00" + payload
        self._out += packet(0x32, body)
        return True

    def poll(self) -> None:
        """Write what is queued, read what arrived, answer and dispatch it; never blocks."""
        self.flush()
        self.receive()

    def flush(self) -> None:
        """Write what is queued (and a ping when one is due); never blocks."""
        now = time.monotonic()
        if now - self._last_ping > KEEPALIVE_S / 2:
            self._out += b"\xc0\x00"
            self._last_ping = now
        if self._out:
            self._write()

    def receive(self) -> None:
        """Read what arrived, answer and dispatch it; call when the socket is readable."""
        self._read()

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(bytes(self._out) + b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()

    # --- internals ---------------------------------------------------------------------

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65_535 + 1
        return self._next_id

    def _write(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                return
            except OSError as exc:
                raise LoadMqttError(f"the broker dropped the connection: {exc}") from exc
            del self._out[:sent]

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65_536)
            except BlockingIOError:
                break
            except OSError as exc:
                raise LoadMqttError(f"the broker dropped the connection: {exc}") from exc
            if not chunk:
                raise LoadMqttError("the broker closed the connection")
            self._in += chunk
        at = 0
        while True:
            header = _read_varint(self._in, at + 1) if len(self._in) > at + 1 else None
            if header is None:
                break
            length, start = header
            if len(self._in) < start + length:
                break
            self._dispatch(self._in[at], bytes(self._in[start : start + length]))
            at = start + length
        del self._in[:at]

    def _dispatch(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBACK:
            self.inflight -= 1
        elif kind == PUBLISH:
            qos = (first >> 1) & 0x03
            (topic_length,) = struct.unpack_from("!H", body)
            at = 2 + topic_length
            topic = body[2:at].decode()
            if qos:
                packet_id = body[at : at + 2]
                at += 2
                self._out += b"\x40\x02" + packet_id
            props = _read_varint(body, at)
            if props is None:
                raise LoadMqttError("malformed PUBLISH properties from the broker")
            if self._on_message is not None:
                self._on_message(topic, body[props[1] + props[0] :])
        elif kind not in (PINGRESP, SUBACK):
            raise LoadMqttError(f"unexpected packet 0x{first:02x} from the broker")

    def _read_blocking(self) -> tuple[int, bytes]:
        data = bytearray()
        while True:
            header = _read_varint(data, 1) if len(data) > 1 else None
            if header is not None and len(data) >= header[1] + header[0]:
                return data[0], bytes(data[header[1] : header[1] + header[0]])
            chunk = self.sock.recv(4096)
            if not chunk:
                raise LoadMqttError("the broker closed the connection while connecting")
            data += chunk

    def _read_connack_properties(self, body: bytes) -> None:
        props = _read_varint(body, 2)
        if props is None:
            return
        length, at = props
        end = at + length
        while at < end:
            ident = body[at]
            at += 1
            if ident == 0x21:
                (self.receive_maximum,) = struct.unpack_from("!H", body, at)
                at += 2
            elif ident in (0x24, 0x25, 0x28, 0x29, 0x2A):  # one byte
                at += 1
            elif ident in (0x13, 0x22):  # two bytes (Server Keep Alive, Topic Alias Maximum)
                at += 2
            elif ident in (0x11, 0x27):  # four bytes
                at += 4
            elif ident in (0x12, 0x15, 0x1A, 0x1C, 0x1F, 0x16):  # string or binary
                (n,) = struct.unpack_from("!H", body, at)
                at += 2 + n
            elif ident == 0x26:
                for _ in range(2):
                    (n,) = struct.unpack_from("!H", body, at)
                    at += 2 + n
            else:
                return  # an unknown property: the rest cannot be parsed, and is not needed
