"""Agent events as InfluxDB points (the measurement schema of docs/occupancy.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ruche.broker import (
    DoorHeldOpen,
    OfflineDecision,
    Presence,
    PresenceState,
    RawSummary,
    Tap,
    Topic,
    decode,
    encode,
)
from ruche.server.timeseries.lineprotocol import encode_point, encode_points
from ruche.server.timeseries.points import event_lines, points_of, time_ns

TS = datetime(2026, 11, 23, 9, 30, 0, 123456, tzinfo=UTC)
NS = 1795426200123456000
TOKEN = "ab" * 32


def line(topic: Topic, payload: object) -> str:
    message = decode(str(topic), encode(payload))  # type: ignore[arg-type]
    return encode_points(points_of(message)).decode().strip()


class TestPoints:
    """Each event kind becomes its measurement, at the agent's event time."""

    def test_time_is_exact_nanoseconds(self):
        assert time_ns(TS) == NS

    def test_presence(self):
        payload = Presence(seq=7, ts=TS, mono=1.0, state=PresenceState.OCCUPIED, confidence=0.9,
                           raw=RawSummary(distance_cm=80, energy=55))  # fmt: skip
        assert line(Topic.presence("lyon", "a1", "desk-3"), payload) == (
            "presence,agent=a1,desk=desk-3,sensor=radar,site=lyon "
            f"occupied=1i,confidence=0.9,heartbeat=false,seq=7i,distance_cm=80i,energy=55i {NS}"
        )

    def test_tap_carries_no_token(self):
        payload = Tap(seq=8, ts=TS, mono=1.0, token=TOKEN, reader="front-in", request_id="r1")
        text = line(Topic.tap("lyon", "a1", "front"), payload)
        assert text == f"door_tap,agent=a1,door=front,reader=front-in,site=lyon tap=1i,seq=8i {NS}"
        assert TOKEN not in text

    def test_door_events(self):
        held = DoorHeldOpen(seq=9, ts=TS, mono=1.0, open_s=31.5)
        assert line(Topic.door_event("lyon", "a1", "front"), held) == (
            f"door_event,agent=a1,door=front,kind=held_open,site=lyon seq=9i,open_s=31.5 {NS}"
        )
        offline = OfflineDecision(seq=10, ts=TS, mono=1.0, token=TOKEN, allowed=False,
                                  reason="revoked", tap_seq=9)  # fmt: skip
        assert line(Topic.door_event("lyon", "a1", "front"), offline) == (
            "door_event,agent=a1,door=front,kind=offline_decision,site=lyon "
            f'seq=10i,allowed=false,reason="revoked" {NS}'
        )


class TestEventLines:
    """`event_lines`, the ingestion's path, writes exactly what `encode_point` would."""

    @given(
        agent=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z"),
        desk=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z"),
        seq=st.integers(min_value=1, max_value=2**63 - 1),
        ts=st.datetimes(
            # hypothesis takes naive bounds and applies `timezones`
            min_value=datetime(1678, 1, 1),  # noqa: DTZ001
            max_value=datetime(2261, 12, 31),  # noqa: DTZ001
            timezones=st.just(UTC),
        ),
        state=st.sampled_from(PresenceState),
        confidence=st.floats(min_value=0, max_value=1),
        heartbeat=st.booleans(),
        sensor=st.sampled_from(["radar", "pir"]),
    )
    def test_presence_matches_the_generic_encoder(  # noqa: PLR0917 - one per field
        self, agent, desk, seq, ts, state, confidence, heartbeat, sensor
    ):
        payload = Presence(seq=seq, ts=ts, mono=1.0, state=state, confidence=confidence,
                           heartbeat=heartbeat, sensor=sensor)  # fmt: skip
        message = decode(str(Topic.presence("lyon", agent, desk)), encode(payload))
        assert event_lines(message) == [encode_point(p) for p in points_of(message)]

    def test_other_events_go_through_the_generic_encoder(self):
        payload = DoorHeldOpen(seq=3, ts=TS, mono=1.0, open_s=42.5)
        message = decode(str(Topic.door_event("lyon", "a1", "front")), encode(payload))
        assert event_lines(message) == [
            f"door_event,agent=a1,door=front,kind=held_open,site=lyon seq=3i,open_s=42.5 {NS}"
        ]
