"""MQTT v5 on the wire for the embedded broker: frames, the packets clients send, and the
packets the broker answers with (topic matching is in `ruche.broker.embedded_access`).

Pure functions over bytes: no sockets, no clock. Anything a client could get wrong raises
`PacketError` with the v5 reason code to close its connection with, so the broker
never has to guess what went wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

from ruche.mqtt_wire import MalformedLengthError, packet, read_varint, utf8, varint


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class Reason(IntEnum):
    """The v5 reason codes the broker sends."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    DISCONNECT_WITH_WILL = 0x04
    NO_SUBSCRIPTION_EXISTED = 0x11
    UNSPECIFIED = 0x80
    MALFORMED = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC = 0x83
    UNSUPPORTED_PROTOCOL = 0x84
    BAD_CREDENTIALS = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTH_METHOD = 0x8C
    KEEPALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_ID_NOT_FOUND = 0x92
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    QUOTA_EXCEEDED = 0x97
    QOS_NOT_SUPPORTED = 0x9B


class Prop(IntEnum):
    """The property identifiers the broker reads or writes (MQTT v5, section 2.2.2.2)."""

    PAYLOAD_FORMAT = 0x01
    MESSAGE_EXPIRY = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_ID = 0x0B
    SESSION_EXPIRY = 0x11
    ASSIGNED_CLIENT_ID = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTH_METHOD = 0x15
    AUTH_DATA = 0x16
    REQUEST_PROBLEM_INFO = 0x17
    WILL_DELAY = 0x18
    REQUEST_RESPONSE_INFO = 0x19
    RESPONSE_INFO = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_AVAILABLE = 0x28
    SUBSCRIPTION_ID_AVAILABLE = 0x29
    SHARED_AVAILABLE = 0x2A


class PacketError(ValueError):
    """What a client sent breaks the protocol; `reason` is the code to disconnect it with."""

    def __init__(self, message: str, reason: Reason = Reason.MALFORMED) -> None:
        super().__init__(message)
        self.reason = reason


class UnsupportedProtocolError(PacketError):
    """A CONNECT for another protocol version: `level` says which, for the right refusal."""

    def __init__(self, level: int) -> None:
        super().__init__(f"protocol level {level}, not 5 (MQTT v5)", Reason.UNSUPPORTED_PROTOCOL)
        self.level = level


# --- frames -----------------------------------------------------------------------------


class FrameReader:
    """Cuts a byte stream into packets: `feed` bytes, then take `(first byte, body)` pairs.

    A remaining length over `max_packet` is refused from the header alone, before its body
    is read into memory.
    """

    def __init__(self, max_packet: int) -> None:
        self.max_packet = max_packet
        self._buf = bytearray()
        self._at = 0

    def feed(self, data: bytes) -> None:
        if self._at:
            del self._buf[: self._at]
            self._at = 0
        self._buf += data

    def packets(self) -> Iterator[tuple[int, bytes]]:
        """The complete packets buffered, in order; stops early if the caller stops."""
        buf = self._buf
        while True:
            at = self._at
            end = len(buf)
            if end - at < 2:
                return
            try:
                header = read_varint(buf, at + 1)
            except MalformedLengthError as exc:
                raise PacketError("remaining length longer than four bytes") from exc
            if header is None:
                return
            length, i = header
            if length + (i - at) > self.max_packet:
                raise PacketError(
                    f"a packet of {length} bytes, over the maximum packet size {self.max_packet}",
                    Reason.PACKET_TOO_LARGE,
                )
            if end - i < length:
                return
            self._at = i + length
            yield buf[at], bytes(buf[i : i + length])


# --- reading fields ---------------------------------------------------------------------

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

# Property id -> how its value is written: 1, 2, 4 bytes, v(ariable int), s(tring),
# b(inary), p(air of strings).
_KINDS: dict[int, str] = {
    0x01: "1", 0x02: "4", 0x03: "s", 0x08: "s", 0x09: "b", 0x0B: "v", 0x11: "4", 0x12: "s",
    0x13: "2", 0x15: "s", 0x16: "b", 0x17: "1", 0x18: "4", 0x19: "1", 0x1A: "s", 0x1C: "s",
    0x1F: "s", 0x21: "2", 0x22: "2", 0x23: "2", 0x24: "1", 0x25: "1", 0x26: "p", 0x27: "4",
    0x28: "1", 0x29: "1", 0x2A: "1",
}  # fmt: skip
_REPEATABLE = frozenset({Prop.USER_PROPERTY})

_CONNECT_PROPS = frozenset({0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27})
_WILL_PROPS = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26})
_PUBLISH_PROPS = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26})
_SUBSCRIBE_PROPS = frozenset({0x0B, 0x26})
_SIMPLE_PROPS = frozenset({0x1F, 0x26})
_DISCONNECT_PROPS = frozenset({0x11, 0x1C, 0x1F, 0x26})

_NOT_FORWARDED = frozenset(
    {Prop.MESSAGE_EXPIRY, Prop.TOPIC_ALIAS, Prop.SUBSCRIPTION_ID, Prop.WILL_DELAY}
)
"""Properties of a PUBLISH (or a will) that are not the message's own: rewritten per
delivery (expiry, subscription ids), or meant for the broker alone."""

PropValue = int | str | bytes | tuple[str, str]


class _Reader:
    """Fields of one packet body, read in order; running off its end is malformed."""

    __slots__ = ("at", "data", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.at = 0
        self.what = what

    @property
    def left(self) -> int:
        return len(self.data) - self.at

    def _need(self, n: int) -> None:
        if self.at + n > len(self.data):
            raise PacketError(f"{self.what} ends early")

    def u8(self) -> int:
        self._need(1)
        self.at += 1
        return self.data[self.at - 1]

    def u16(self) -> int:
        self._need(2)
        (value,) = _U16.unpack_from(self.data, self.at)
        self.at += 2
        return int(value)

    def u32(self) -> int:
        self._need(4)
        (value,) = _U32.unpack_from(self.data, self.at)
        self.at += 4
        return int(value)

    def varint(self) -> int:
        try:
            read = read_varint(self.data, self.at)
        except MalformedLengthError as exc:
            raise PacketError(f"{self.what}: variable byte integer longer than 4 bytes") from exc
        if read is None:
            raise PacketError(f"{self.what} ends early")
        value, self.at = read
        return value

    def binary(self) -> bytes:
        n = self.u16()
        self._need(n)
        self.at += n
        return self.data[self.at - n : self.at]

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError(f"{self.what}: a string that is not UTF-8") from exc
        if "\x00" in text:
            raise PacketError(f"{self.what}: a string holding U+0000")
        return text

    def rest(self) -> bytes:
        out = self.data[self.at :]
        self.at = len(self.data)
        return out

    def properties(self, allowed: frozenset[int]) -> tuple[dict[int, PropValue], bytes]:
        """The property values by id (user properties left out), and the bytes of those
        to forward: everything but message expiry, topic alias and subscription ids."""
        length = self.varint()
        self._need(length)
        end = self.at + length
        values: dict[int, PropValue] = {}
        forward = bytearray()
        while self.at < end:
            start = self.at
            ident = self.varint()
            kind = _KINDS.get(ident)
            if kind is None or ident not in allowed:
                raise PacketError(
                    f"{self.what}: property 0x{ident:02x} does not belong here",
                    Reason.PROTOCOL_ERROR,
                )
            value = _READ_VALUE[kind](self)
            if self.at > end:
                raise PacketError(f"{self.what}: a property runs past the property length")
            if ident not in _REPEATABLE:
                if ident in values:
                    raise PacketError(
                        f"{self.what}: property 0x{ident:02x} given twice", Reason.PROTOCOL_ERROR
                    )
                values[ident] = value
            if ident not in _NOT_FORWARDED:
                forward += self.data[start : self.at]
        return values, bytes(forward)


_READ_VALUE: dict[str, Callable[[_Reader], PropValue]] = {
    "1": _Reader.u8, "2": _Reader.u16, "4": _Reader.u32, "v": _Reader.varint,
    "s": _Reader.string, "b": _Reader.binary, "p": lambda r: (r.string(), r.string()),
}  # fmt: skip


# --- packets from clients ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: bytes
    """Forwarded as the client gave them (message expiry aside)."""
    expiry: int | None
    delay: int


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    clean_start: bool
    keepalive: int
    username: str | None
    password: bytes | None
    will: Will | None
    session_expiry: int
    receive_maximum: int
    maximum_packet_size: int | None
    auth_method: str | None


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int
    """0 for QoS 0."""
    properties: bytes
    """Forwarded verbatim: everything but message expiry, topic alias and subscription ids."""
    expiry: int | None
    topic_alias: int | None
    has_subscription_id: bool


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    filter: str
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    requests: tuple[SubscriptionRequest, ...]
    subscription_id: int | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""

    kind: PacketType
    packet_id: int
    reason: int


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: int
    session_expiry: int | None


@dataclass(frozen=True, slots=True)
class Pingreq:
    pass


Packet = Connect | Publish | Subscribe | Unsubscribe | Ack | Disconnect | Pingreq

_FIXED_FLAGS = {
    PacketType.CONNECT: 0, PacketType.PUBACK: 0, PacketType.PUBREC: 0, PacketType.PUBREL: 2,
    PacketType.PUBCOMP: 0, PacketType.SUBSCRIBE: 2, PacketType.UNSUBSCRIBE: 2,
    PacketType.PINGREQ: 0, PacketType.DISCONNECT: 0, PacketType.AUTH: 0,
}  # fmt: skip


def decode(first: int, body: bytes) -> Packet:
    """One packet a client sent, from its first byte and its body."""
    kind, flags = first >> 4, first & 0x0F
    if kind == PacketType.PUBLISH:
        return _publish(flags, body)
    if kind not in _FIXED_FLAGS:
        name = PacketType(kind).name if kind else "reserved type 0"
        raise PacketError(f"a {name} packet, which clients do not send", Reason.PROTOCOL_ERROR)
    if flags != _FIXED_FLAGS[PacketType(kind)]:
        raise PacketError(f"{PacketType(kind).name} with fixed-header flags {flags:#x}")
    if kind == PacketType.CONNECT:
        return _connect(body)
    if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        return _ack(PacketType(kind), body)
    if kind == PacketType.SUBSCRIBE:
        return _subscribe(body)
    if kind == PacketType.UNSUBSCRIBE:
        return _unsubscribe(body)
    if kind == PacketType.PINGREQ:
        if body:
            raise PacketError("PINGREQ with a body")
        return Pingreq()
    if kind == PacketType.DISCONNECT:
        return _disconnect(body)
    raise PacketError("AUTH: enhanced authentication is not offered", Reason.PROTOCOL_ERROR)


def _connect(body: bytes) -> Connect:
    r = _Reader(body, "CONNECT")
    name = r.binary()
    level = r.u8()
    if name not in (b"MQTT", b"MQIsdp"):
        raise PacketError(f"CONNECT for protocol {name!r}", Reason.UNSUPPORTED_PROTOCOL)
    if level != 5:
        raise UnsupportedProtocolError(level)
    flags = r.u8()
    if flags & 0x01:
        raise PacketError("CONNECT: reserved flag set")
    will_flag, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
    if will_qos == 3 or (not will_flag and (will_qos or will_retain)):
        raise PacketError("CONNECT: will QoS or retain without a will, or will QoS 3")
    keepalive = r.u16()
    props, _ = r.properties(_CONNECT_PROPS)
    client_id = r.string()
    will = None
    if will_flag:
        will_props, forward = r.properties(_WILL_PROPS)
        topic = r.string()
        payload = r.binary()
        if not topic or "+" in topic or "#" in topic:
            raise PacketError(f"CONNECT: will topic {topic!r}", Reason.TOPIC_NAME_INVALID)
        expiry = will_props.get(Prop.MESSAGE_EXPIRY)
        will = Will(topic=topic, payload=payload, qos=will_qos, retain=will_retain,
                    properties=forward, expiry=expiry if isinstance(expiry, int) else None,
                    delay=_int(will_props, Prop.WILL_DELAY, 0))  # fmt: skip
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    if r.left:
        raise PacketError("CONNECT: bytes after the payload")
    receive_maximum = _int(props, Prop.RECEIVE_MAXIMUM, 65_535)
    max_packet = props.get(Prop.MAXIMUM_PACKET_SIZE)
    if receive_maximum == 0 or max_packet == 0:
        raise PacketError("CONNECT: receive maximum or maximum packet size 0",
                              Reason.PROTOCOL_ERROR)  # fmt: skip
    method = props.get(Prop.AUTH_METHOD)
    return Connect(
        client_id=client_id,
        clean_start=bool(flags & 0x02),
        keepalive=keepalive,
        username=username,
        password=password,
        will=will,
        session_expiry=_int(props, Prop.SESSION_EXPIRY, 0),
        receive_maximum=receive_maximum,
        maximum_packet_size=max_packet if isinstance(max_packet, int) else None,
        auth_method=method if isinstance(method, str) else None,
    )


def _int(props: dict[int, PropValue], ident: int, default: int) -> int:
    value = props.get(ident, default)
    return value if isinstance(value, int) else default


def _publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise PacketError("PUBLISH with QoS 3")
    if qos == 0 and flags & 0x08:
        raise PacketError("PUBLISH: DUP set on QoS 0")
    r = _Reader(body, "PUBLISH")
    topic = r.string()
    packet_id = 0
    if qos:
        packet_id = r.u16()
        if packet_id == 0:
            raise PacketError("PUBLISH: packet identifier 0", Reason.PROTOCOL_ERROR)
    if body[r.at : r.at + 1] == b"\x00":  # the common case: no property at all
        r.at += 1
        props: dict[int, PropValue] = {}
        forward = b""
    else:
        props, forward = r.properties(_PUBLISH_PROPS)
    expiry, alias = props.get(Prop.MESSAGE_EXPIRY), props.get(Prop.TOPIC_ALIAS)
    return Publish(
        topic=topic,
        payload=r.rest(),
        qos=qos,
        retain=bool(flags & 0x01),
        dup=bool(flags & 0x08),
        packet_id=packet_id,
        properties=forward,
        expiry=expiry if isinstance(expiry, int) else None,
        topic_alias=alias if isinstance(alias, int) else None,
        has_subscription_id=Prop.SUBSCRIPTION_ID in props,
    )


def _ack(kind: PacketType, body: bytes) -> Ack:
    r = _Reader(body, kind.name)
    packet_id = r.u16()
    reason = r.u8() if r.left else 0
    if r.left:
        r.properties(_SIMPLE_PROPS)
    return Ack(kind=kind, packet_id=packet_id, reason=reason)


def _subscribe(body: bytes) -> Subscribe:
    r = _Reader(body, "SUBSCRIBE")
    packet_id = r.u16()
    props, _ = r.properties(_SUBSCRIBE_PROPS)
    sub_id = props.get(Prop.SUBSCRIPTION_ID)
    if sub_id == 0:
        raise PacketError("SUBSCRIBE: subscription identifier 0", Reason.PROTOCOL_ERROR)
    requests = []
    while r.left:
        text = r.string()
        options = r.u8()
        if options & 0xC0 or options & 0x03 == 3 or (options >> 4) & 0x03 == 3:
            raise PacketError(f"SUBSCRIBE: options {options:#04x} for {text!r}")
        request = SubscriptionRequest(filter=text, qos=options & 0x03,
                                      no_local=bool(options & 0x04),
                                      retain_as_published=bool(options & 0x08),
                                      retain_handling=(options >> 4) & 0x03)  # fmt: skip
        requests.append(request)
    if not requests:
        raise PacketError("SUBSCRIBE without a topic filter", Reason.PROTOCOL_ERROR)
    return Subscribe(packet_id=packet_id, requests=tuple(requests),
                     subscription_id=sub_id if isinstance(sub_id, int) else None)  # fmt: skip


def _unsubscribe(body: bytes) -> Unsubscribe:
    r = _Reader(body, "UNSUBSCRIBE")
    packet_id = r.u16()
    r.properties(_SIMPLE_PROPS)
    filters = []
    while r.left:
        filters.append(r.string())
    if not filters:
        raise PacketError("UNSUBSCRIBE without a topic filter", Reason.PROTOCOL_ERROR)
    return Unsubscribe(packet_id=packet_id, filters=tuple(filters))


def _disconnect(body: bytes) -> Disconnect:
    if not body:
        return Disconnect(reason=0, session_expiry=None)
    r = _Reader(body, "DISCONNECT")
    reason = r.u8()
    expiry = None
    if r.left:
        props, _ = r.properties(_DISCONNECT_PROPS)
        value = props.get(Prop.SESSION_EXPIRY)
        expiry = value if isinstance(value, int) else None
    return Disconnect(reason=reason, session_expiry=expiry)


# --- packets to clients -----------------------------------------------------------------


def prop_u8(ident: Prop, value: int) -> bytes:
    return bytes((ident, value))


def prop_u16(ident: Prop, value: int) -> bytes:
    return bytes((ident,)) + _U16.pack(value)


def prop_u32(ident: Prop, value: int) -> bytes:
    return bytes((ident,)) + _U32.pack(value)


def prop_varint(ident: Prop, value: int) -> bytes:
    return bytes((ident,)) + varint(value)


def prop_str(ident: Prop, value: str) -> bytes:
    return bytes((ident,)) + utf8(value)


def encode_connack(*, session_present: bool, reason: int, properties: bytes = b"") -> bytes:
    return packet(0x20, bytes((int(session_present), reason)) + varint(len(properties))
                   + properties)  # fmt: skip


def encode_publish(
    topic: bytes, payload: bytes, *, qos: int, retain: bool, dup: bool, packet_id: int,
    properties: bytes,
) -> bytes:  # fmt: skip
    """`topic` UTF-8 already; `properties` the encoded property list, without its length."""
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    head = _U16.pack(len(topic)) + topic
    if qos:
        head += _U16.pack(packet_id)
    return packet(first, head + varint(len(properties)) + properties + payload)


def encode_ack(kind: PacketType, packet_id: int, reason: int = 0) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP; success in the short form."""
    first = (kind << 4) | (0x02 if kind == PacketType.PUBREL else 0)
    if reason == 0:
        return bytes((first, 2)) + _U16.pack(packet_id)
    return bytes((first, 3)) + _U16.pack(packet_id) + bytes((reason,))


def encode_suback(packet_id: int, reasons: Sequence[int]) -> bytes:
    return packet(0x90, _U16.pack(packet_id) + b"\x00" + bytes(reasons))


def encode_unsuback(packet_id: int, reasons: Sequence[int]) -> bytes:
    return packet(0xB0, _U16.pack(packet_id) + b"\x00" + bytes(reasons))


def encode_disconnect(reason: int, text: str | None = None) -> bytes:
    props = b"" if text is None else prop_str(Prop.REASON_STRING, text[:200])
    return packet(0xE0, bytes((reason,)) + varint(len(props)) + props)
