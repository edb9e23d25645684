"""Agent events as InfluxDB points: pure, one function, the measurement schema in one place.

Measurements `presence`, `desk_badge`, `door_tap` and `door_event`; their tags and
fields are documented in docs/occupancy.md. `booking` charts desk bookings from SQL for
the dashboards (`booking_point`, docs/dashboards.md). Every point's time is the agent's event
time (`ts`, in nanoseconds), so a replayed or redelivered event rewrites the same
point instead of adding one. Badge tokens are not written to InfluxDB: it is for
counting and charting; who it was stays in SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ruche.broker import (
    DeskBadge,
    DoorHeldOpen,
    Message,
    OfflineDecision,
    Presence,
    PresenceState,
    Tap,
)
from ruche.server.timeseries.lineprotocol import (
    FieldValue,
    Point,
    check_time,
    encode_point,
    series_key,
)


@functools.lru_cache(maxsize=65_536)
def _presence_series(site: str, agent: str, desk: str, sensor: str) -> str:
    return series_key("presence", {"site": site, "agent": agent, "desk": desk, "sensor": sensor})


def event_lines(message: Message) -> list[str]:
    """The line protocol of the event's points: `encode_point` of each of `points_of`.

    Presence is most of the traffic (every desk's heartbeats), so its line is built
    here directly, its series key computed once per desk; `test_points` checks it is
    the line `encode_point` writes. Raises `LineProtocolError` like `encode_point`.
    """
    payload = message.payload
    if type(payload) is Presence and payload.raw is None:
        topic = message.topic
        series = _presence_series(topic.site, topic.agent, topic.device or "", payload.sensor)
        occupied = 1 if payload.state is PresenceState.OCCUPIED else 0
        heartbeat = "true" if payload.heartbeat else "false"
        return [
            f"{series} occupied={occupied}i,confidence={float(payload.confidence)!r},"
            f"heartbeat={heartbeat},seq={payload.seq}i {check_time(time_ns(payload.ts))}"
        ]
    return [encode_point(point) for point in points_of(message)]


def time_ns(moment: datetime) -> int:
    """An aware datetime as integer nanoseconds since the epoch, exactly (no float)."""
    whole = int(moment.timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000


def points_of(message: Message) -> list[Point]:
    """The points of one agent event; none for a message that is not an event."""
    topic, payload = message.topic, message.payload
    base = {"site": topic.site, "agent": topic.agent}
    device = topic.device or ""
    if isinstance(payload, Presence):
        fields: dict[str, FieldValue] = {
            "occupied": 1 if payload.state is PresenceState.OCCUPIED else 0,
            "confidence": float(payload.confidence),
            "heartbeat": payload.heartbeat,
            "seq": payload.seq,
        }
        if payload.raw is not None:
            if payload.raw.distance_cm is not None:
                fields["distance_cm"] = payload.raw.distance_cm
            if payload.raw.energy is not None:
                fields["energy"] = payload.raw.energy
        tags = {**base, "desk": device, "sensor": payload.sensor}
        return [Point("presence", tags, fields, time_ns(payload.ts))]
    if isinstance(payload, DeskBadge):
        tags = {**base, "desk": device}
        return [Point("desk_badge", tags, {"checkin": 1, "seq": payload.seq}, time_ns(payload.ts))]
    if isinstance(payload, Tap):
        tags = {**base, "door": device, "reader": payload.reader}
        return [Point("door_tap", tags, {"tap": 1, "seq": payload.seq}, time_ns(payload.ts))]
    kind = getattr(payload, "kind", None)
    seq = getattr(payload, "seq", None)
    ts = getattr(payload, "ts", None)
    if kind is None or seq is None or ts is None:
        return []
    fields = {"seq": seq}
    if isinstance(payload, DoorHeldOpen):
        fields["open_s"] = float(payload.open_s)
    if isinstance(payload, OfflineDecision):
        fields["allowed"] = payload.allowed
        fields["reason"] = payload.reason
    tags = {**base, "door": device, "kind": kind}
    return [Point("door_event", tags, fields, time_ns(ts))]


@dataclass(frozen=True, slots=True)
class ChartedBooking:
    """A desk booking that has started, as the dashboards chart it; who booked stays in SQL."""

    id: int
    site: str
    desk: str
    start: datetime
    end: datetime
    status: str
    """`booked`, `no_show` or `released`; cancelled bookings are not charted."""


def booking_point(booking: ChartedBooking) -> Point:
    """The booking's point at its start: tags site and desk, fields booking_id, minutes
    (its length), status and no_show (1 or 0). A desk holds one booking at a time, so a
    later status rewrites the same point (same series and time) instead of adding one."""
    fields: dict[str, FieldValue] = {
        "booking_id": booking.id,
        "minutes": (booking.end - booking.start).total_seconds() / 60,
        "status": booking.status,
        "no_show": 1 if booking.status == "no_show" else 0,
    }
    tags = {"site": booking.site, "desk": booking.desk}
    return Point("booking", tags, fields, time_ns(booking.start))


class PointWriter(Protocol):
    """Where points go (`ruche.server.timeseries.influx.InfluxWriter`): durable once `write`
    returns."""

    def write(self, points: Iterable[Point]) -> None: ...


class LineWriter(PointWriter, Protocol):
    """A `PointWriter` that also takes lines already encoded (`event_lines`)."""

    def write_lines(self, lines: Iterable[str]) -> None: ...


def write_events(writer: LineWriter, messages: Iterable[Message]) -> None:
    """Write the points of `messages` in one call (one fsync for the batch)."""
    writer.write_lines([line for message in messages for line in event_lines(message)])
