"""MQTT's wire primitives, written once: the Variable Byte Integer, the length-prefixed
string and the fixed header. Standard library only: the load
generator's lean client, `ruche.paho_internals.BufferedClient` and the tests that speak raw MQTT
share them."""

from __future__ import annotations

import struct

_U16 = struct.Struct("!H")


class MalformedLengthError(ValueError):
    """A Variable Byte Integer longer than the four bytes MQTT allows."""


def varint(value: int) -> bytes:
    """MQTT's Variable Byte Integer: 7 bits a byte, least significant first."""
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """(value, offset after it) of the Variable Byte Integer at `at`, or None if `data`
    ends inside it; MalformedLengthError past four bytes."""
    value, shift, end = 0, 0, len(data)
    while True:
        if at >= end:
            return None
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 21:  # the fourth byte said more follows
            raise MalformedLengthError("a Variable Byte Integer longer than four bytes")


def utf8(text: str | bytes) -> bytes:
    """A UTF-8 string (or binary data) with its two-byte length before it."""
    data = text.encode() if isinstance(text, str) else text
    return _U16.pack(len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    """A whole packet: its first byte, the remaining length, the body."""
    return bytes((first,)) + varint(len(body)) + body
