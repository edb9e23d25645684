"""What Ruche does inside paho-mqtt's private API, all of it here, measured on paho 2.2
(pyproject pins `paho-mqtt~=2.2.0`; `tests/integration/test_mqtt_buffered.py` checks the
behaviour against the installed paho, so a new paho is tried before it is allowed).

- `BufferedClient`: reads its socket 64 KiB at a time and cuts whole PUBLISH packets out
  of the buffer, instead of paho's byte-at-a-time reads (75 µs down to 38 µs a QoS 1
  message, and half again for the PUBLISH path); acknowledges a batch in one write.
- `close_wakeup_sockets`: closes the socket pair `loop_start` opened, which paho closes
  only when the client is garbage collected.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ruche.mqtt_wire import MalformedLengthError, read_varint

log = logging.getLogger(__name__)
_PUBACK = struct.Struct("!BBH")
_PUBLISH = 0x30


def _whole_packet(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(start, end) of the body of the packet at `pos` if all of it is in `buf`; None
    otherwise, a malformed length included (paho's own reading then reports it)."""
    try:
        header = read_varint(buf, pos + 1)
    except MalformedLengthError:
        return None
    if header is None:
        return None
    length, start = header
    return (start, start + length) if start + length <= len(buf) else None


_NO_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
"""Shared by every received message that carries none: read, never written."""


class _ReceivedMessage(mqtt.MQTTMessage):
    """A received message: `info` (a Condition, for tracking what we publish) is made only
    if asked for."""

    def __init__(self, mid: int, topic: bytes, connection: int = 0) -> None:
        # paho's __init__ would build `info`; these are the attributes it sets otherwise.
        self.connection = connection
        """Which of the client's connections brought it: a mid means nothing on another."""
        self.timestamp = 0.0
        self.state = mqtt.mqtt_ms_invalid
        self.dup = False
        self.mid = mid
        self._topic = topic
        self.payload = b""
        self.qos = 0
        self.retain = False
        self.properties = None

    def __getattr__(self, name: str) -> mqtt.MQTTMessageInfo:
        if name == "info":
            self.info = mqtt.MQTTMessageInfo(self.mid)
            return self.info
        raise AttributeError(name)


class BufferedClient(mqtt.Client):
    """A paho client that reads its socket 64 KiB at a time.

    paho reads each packet's header a byte at a time, a `recv` system call each, and
    then goes back to `select` for every packet: at thousands of messages a second
    that doubles the CPU a message costs (measured: 75 µs down to 38 µs a QoS 1
    message). This keeps what one `recv` brought and serves paho's small reads from
    it, and `loop_read` goes on until that is used up, since `select` cannot see it.
    Both overrides touch paho's private `_sock_recv` and `_packet_read`;
    `tests/integration/test_mqtt_buffered.py` pins the behaviour against the installed paho.
    """

    READ_SIZE = 65_536
    _rbuf: bytes = b""
    _rpos: int = 0
    _connection: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            self._rbuf, self._rpos = super()._sock_recv(max(bufsize, self.READ_SIZE)), 0
            if not self._rbuf:
                return b""  # the peer closed the connection
        start = self._rpos
        self._rpos = min(len(self._rbuf), start + bufsize)
        return self._rbuf[start : self._rpos]

    def _sock_close(self) -> None:
        # Bytes of a dead connection must never be read as the next one's.
        self._rbuf, self._rpos = b"", 0
        self._connection += 1
        super()._sock_close()

    def _packet_read(self) -> MQTTErrorCode:
        """paho's, but a QoS 0/1 PUBLISH wholly in the buffer is cut out and handled at
        once: paho reads each packet a byte at a time through `_sock_recv`, which cost
        ingestion more than decoding and storing the event together."""
        buf, pos = self._rbuf, self._rpos
        if (
            self._in_packet["command"] == 0
            and pos < len(buf)
            and buf[pos] & 0xF0 == _PUBLISH
            and buf[pos] & 0x06 != 0x04  # QoS 2: paho's way
        ):
            whole = _whole_packet(buf, pos)
            if whole is not None:
                start, end = whole
                self._rpos = end
                self._last_bytes_received = time.monotonic()  # paho's keepalive clock
                return self._publish_from(buf[pos], buf[start:end])
        return super()._packet_read()

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        if (header & 0x06) >> 1 == 2:
            return super()._handle_publish()
        return self._publish_from(header, self._in_packet["packet"])

    def _publish_from(self, header: int, packet: bytes | bytearray) -> MQTTErrorCode:
        """paho's `_handle_publish` for QoS 0 and 1, minus two costs a received message
        does not need: a Condition (for `info`, which only sent messages use) and
        parsing an empty property set; it halves paho's time per message."""
        qos = (header & 0x06) >> 1
        (topic_length,) = struct.unpack_from("!H", packet)
        at = 2 + topic_length
        mid = 0
        if qos > 0:
            (mid,) = struct.unpack_from("!H", packet, at)
            at += 2
        message = _ReceivedMessage(mid, bytes(packet[2 : 2 + topic_length]), self._connection)
        message.qos, message.dup, message.retain = qos, bool(header & 0x08), bool(header & 0x01)
        if self._protocol == mqtt.MQTTv5:
            if packet[at] == 0:  # no property: nothing to parse
                message.properties = _NO_PROPERTIES
                at += 1
            else:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                _, length = properties.unpack(packet[at:])  # type: ignore[no-untyped-call]
                message.properties = properties
                at += length
        message.payload = bytes(packet[at:])
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        if qos == 0 or self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._send_puback(mid)

    def ack_all(self, messages: Iterable[mqtt.MQTTMessage]) -> int:
        """Acknowledge QoS 1 messages (with `manual_ack`) in one write; return how many.

        paho's `ack` queues one packet and wakes the network thread per message. Only
        messages of the current connection are acknowledged: after a reconnect the
        broker has forgotten them (and will not resend them: the agents will), and their
        mids may name other messages now.
        """
        mids = [
            m.mid
            for m in messages
            if m.qos == 1 and getattr(m, "connection", None) == self._connection
        ]
        if mids:
            packet = b"".join(_PUBACK.pack(0x40, 2, mid) for mid in mids)
            self._packet_queue(0x40, packet, 0, 0)
        return len(mids)

    def message_callback_add(self, sub: str, callback: object) -> None:
        """Not offered: messages go to `on_message` straight (see `_handle_on_message`)."""
        raise NotImplementedError("BufferedClient delivers every message to on_message")

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # paho matches each topic against the per-topic callbacks first: a tenth of a
        # message's time, spent on a table Ruche never fills.
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception:
                log.exception("on_message failed on %s", message.topic)
                if not self.suppress_exceptions:
                    raise

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS if rc <= 0 else rc


def close_wakeup_sockets(client: mqtt.Client) -> None:
    """Close the socket pair paho's `loop_start` opened (what paho's `__del__` would do)."""
    client._reset_sockets(sockpair_only=True)  # private: paho offers no public way
