"""InfluxDB line protocol: points in, bytes out, exact escaping, no I/O.

    >>> encode_points([Point("desk", {"site": "lyon 2"}, {"occupied": True}, 1_700_000_000)])
    b'desk,site=lyon\\\\ 2 occupied=true 1700000000\\n'

The escaping follows the line protocol reference shared by InfluxDB 1.x, 2.x and 3.x:

| element | escaped with a backslash |
|---|---|
| measurement | comma, space |
| tag key, tag value, field key | comma, equals sign, space |
| string field value (between double quotes) | double quote, backslash |

What no version can read back unchanged is refused with `LineProtocolError` rather than
written wrong: newlines anywhere (the protocol has no escape for them), a backslash in a
name that would read as an escape (at the end, or before a backslash, comma, equals sign,
space or double quote: 1.x and 2.x unescape those differently), a measurement starting
with `#` (a comment line), a measurement or field key starting with a tab or NUL (InfluxDB
skips those as whitespace), the key `time`, empty names, NaN and infinities, integers
outside int64 and timestamps outside InfluxDB's range. Empty tag values are omitted, as
the protocol requires. Tags are written sorted by key, which InfluxDB prefers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FieldValue = int | float | bool | str

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# InfluxDB reserves the two extreme int64 values; it answers 400 "time outside range".
TIME_MIN_NS = -(2**63) + 2
TIME_MAX_NS = 2**63 - 2

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
# After a literal backslash these would read as an escape sequence in some version.
_AMBIGUOUS_AFTER_BACKSLASH = frozenset('\\,= "')
# InfluxDB skips these (unescaped) before a measurement and before the field set.
_SKIPPED_AS_WHITESPACE = ("\t", "\x00")


class LineProtocolError(ValueError):
    """A point that cannot be written as line protocol; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point: the timestamp is the event's own time, in nanoseconds since the epoch."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int


def _check_name(what: str, name: str) -> None:
    if not name:
        raise LineProtocolError(f"{what} is empty: InfluxDB needs a non-empty name")
    _check_text(what, name)
    for i, char in enumerate(name):
        if char == "\\" and (i + 1 == len(name) or name[i + 1] in _AMBIGUOUS_AFTER_BACKSLASH):
            raise LineProtocolError(
                f"{what} {name!r} has a backslash at the end or before a backslash, comma, "
                "equals sign, space or double quote, which InfluxDB would read as an escape: "
                "drop or replace it"
            )


def _check_start(what: str, name: str) -> None:
    if name.startswith(_SKIPPED_AS_WHITESPACE):
        raise LineProtocolError(
            f"{what} {name!r} starts with a tab or NUL, which InfluxDB skips as whitespace"
        )


def _check_text(what: str, text: str) -> None:
    if "\n" in text:
        raise LineProtocolError(
            f"{what} {text!r} contains a newline, which line protocol cannot carry"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LineProtocolError(f"{what} {text!r} is not valid Unicode: {exc.reason}") from exc


@functools.lru_cache(maxsize=1024)
def _field_key(key: str) -> str:
    """A field key checked and escaped; cached, as the few keys repeat on every point."""
    _check_name("field key", key)
    _check_start("field key", key)
    if key == "time":
        raise LineProtocolError("field key 'time' is reserved by InfluxDB (it drops it silently)")
    return key.translate(_KEY)


def _encode_field(key: str, value: FieldValue) -> str:
    encoded_key = _field_key(key)
    if isinstance(value, bool):
        return f"{encoded_key}={'true' if value else 'false'}"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineProtocolError(f"field {key!r}: integer {value} does not fit in int64")
        return f"{encoded_key}={value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(
                f"field {key!r}: {value} is not a finite number; InfluxDB stores no NaN or infinity"
            )
        return f"{encoded_key}={value!r}"
    if isinstance(value, str):
        _check_text(f"string value of field {key!r}", value)
        return f'{encoded_key}="{value.translate(_STRING)}"'
    raise LineProtocolError(
        f"field {key!r}: {type(value).__name__} is not a field type (int, float, bool or str)"
    )


@functools.lru_cache(maxsize=1024)
def _measurement(name: str) -> str:
    _check_name("measurement", name)
    _check_start("measurement", name)
    if name.startswith("#"):
        raise LineProtocolError(
            f"measurement {name!r} starts with '#', which makes the line a comment"
        )
    return name.translate(_MEASUREMENT)


@functools.lru_cache(maxsize=65_536)
def _tag(key: str, value: str) -> str:
    """`,key=value` checked and escaped, or "" for an empty value; cached, as a site's
    desks, doors and agents repeat on every point."""
    _check_name("tag key", key)
    if key == "time":
        raise LineProtocolError("tag key 'time' is reserved by InfluxDB")
    if value == "":
        return ""  # the protocol has no empty tag value: the tag is simply absent
    _check_name(f"value of tag {key!r}", value)
    return f",{key.translate(_KEY)}={value.translate(_KEY)}"


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """The line's start, measurement and tags (sorted, escaped, empty ones left out)."""
    parts = [_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if not isinstance(value, str):
            raise LineProtocolError(f"tag {key!r}: tag values are strings, not {type(value)}")
        parts.append(_tag(key, value))
    return "".join(parts)


def check_time(time_ns: int) -> int:
    """`time_ns` if InfluxDB can store it; LineProtocolError otherwise."""
    if isinstance(time_ns, bool) or not isinstance(time_ns, int):
        raise LineProtocolError(f"time_ns must be an int of nanoseconds, not {time_ns!r}")
    if not TIME_MIN_NS <= time_ns <= TIME_MAX_NS:
        raise LineProtocolError(
            f"timestamp {time_ns} ns is outside InfluxDB's range {TIME_MIN_NS}..{TIME_MAX_NS}"
        )
    return time_ns


def encode_point(point: Point) -> str:
    """One point as one line of line protocol, without the trailing newline."""
    series = series_key(point.measurement, point.tags)
    if not point.fields:
        raise LineProtocolError(f"point in {point.measurement!r} has no field: it needs one")
    fields = ",".join(_encode_field(key, value) for key, value in point.fields.items())
    return f"{series} {fields} {check_time(point.time_ns)}"


def encode_points(points: Iterable[Point]) -> bytes:
    """Points as line protocol: one UTF-8 line per point, each ending with a newline."""
    return "".join(f"{encode_point(point)}\n" for point in points).encode("utf-8")
