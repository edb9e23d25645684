"""Property tests: whatever comes off the wire, decode gives a Message or a ContractError."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.broker import (
    Ack,
    Channel,
    ContractError,
    Message,
    Presence,
    PresenceState,
    RawSummary,
    Tap,
    Topic,
    badge_token,
    decode,
    encode,
)
from ruche.broker.payloads import MAX_SEQ, Allowlist, Command, DoorEvent, Status
from ruche.broker.topics import ID_PATTERN

FUZZ = settings(max_examples=300, deadline=None)

SITE = "paris-11"
AGENT = "pi-hall"
SITE_KEY = b"0123456789abcdef-site-key"

VALID_TOPICS: dict[Channel, Topic] = {
    Channel.STATUS: Topic.status(SITE, AGENT),
    Channel.PRESENCE: Topic.presence(SITE, AGENT, "desk-07"),
    Channel.DESK_BADGE: Topic.desk_badge(SITE, AGENT, "desk-07"),
    Channel.TAP: Topic.tap(SITE, AGENT, "front"),
    Channel.DOOR_EVENT: Topic.door_event(SITE, AGENT, "front"),
    Channel.CMD: Topic.cmd(SITE, AGENT),
    Channel.ALLOWLIST: Topic.allowlist(SITE, AGENT),
    Channel.ACK: Topic.ack(SITE, AGENT),
    Channel.CONFIG: Topic.config(SITE, AGENT),
}

TS = "2024-05-06T09:30:15Z"
TOKEN = badge_token(SITE_KEY, b"\x04\xa2\x24\xb2")
EVENT = {"v": 1, "seq": 1, "ts": TS, "mono": 1.5}

# A valid JSON object per channel (several for the unions), to spoil one field of.
VALID_OBJECTS: list[tuple[Channel, dict[str, Any]]] = [
    (Channel.STATUS, {"v": 1, "state": "online", "ts": TS, "version": "1", "outbox_depth": 0}),
    (
        Channel.PRESENCE,
        EVENT | {"state": "occupied", "confidence": 0.5, "raw": {"distance_cm": 80}},
    ),
    (Channel.DESK_BADGE, EVENT | {"token": TOKEN}),
    (Channel.TAP, EVENT | {"token": TOKEN, "reader": "front-in", "request_id": "r1"}),
    (Channel.DOOR_EVENT, EVENT | {"kind": "opened"}),
    (Channel.DOOR_EVENT, EVENT | {"kind": "held_open", "open_s": 61.0}),
    (
        Channel.DOOR_EVENT,
        EVENT
        | {
            "kind": "offline_decision",
            "token": TOKEN,
            "allowed": True,
            "reason": "in_window",
            "tap_seq": 1,
            "allowlist_version": 3,
        },
    ),
    (Channel.CMD, {"v": 1, "cmd": "unlock", "door": "front", "ms": 3000, "request_id": "r1"}),
    (Channel.CMD, {"v": 1, "cmd": "deny", "door": "front", "request_id": "r1", "reason": "no"}),
    (Channel.CMD, {"v": 1, "cmd": "lockdown", "door": "front", "active": True}),
    (Channel.CMD, {"v": 1, "cmd": "reload"}),
    (
        Channel.ALLOWLIST,
        {
            "v": 1,
            "version": 3,
            "issued": TS,
            "expires": "2024-05-07T09:30:15Z",
            "entries": [
                {
                    "token": TOKEN,
                    "windows": [{"start": TS, "end": "2024-05-06T18:00:00+02:00"}],
                    "doors": ["front"],
                }
            ],
            "revoked": [TOKEN],
        },
    ),
    (Channel.ACK, {"v": 1, "seq": 5}),
    (
        Channel.CONFIG,
        {
            "v": 1,
            "version": 4,
            "issued": TS,
            "doors": [{"id": "front", "relay_pin": 17, "contact_pin": 27, "reader": "usb"}],
            "desks": [{"id": "desk-07", "serial": "/dev/ttyUSB0"}, {"id": "d8", "pir_pin": 5}],
        },
    ),
]

# Every field name any payload of the contract knows, so random objects hit real fields.
FIELD_NAMES = sorted(
    {
        name
        for model in (
            Status,
            Presence,
            RawSummary,
            Tap,
            Ack,
            Allowlist,
            *typing.get_args(typing.get_args(DoorEvent)[0]),
            *typing.get_args(typing.get_args(Command)[0]),
        )
        for name in model.model_fields
    }
    | {"start", "end", "windows", "doors", "token"}
)

# -- strategies ----------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["online", "occupied", "opened", "offline_decision", "unlock", "reload", TS, TOKEN]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def to_json(value: object) -> bytes:
    """JSON as a careless sender writes it: NaN and Infinity included."""
    return json.dumps(value, allow_nan=True).encode()


ids = st.from_regex(ID_PATTERN, fullmatch=True)
tokens = st.binary(min_size=1, max_size=10).map(lambda uid: badge_token(SITE_KEY, uid))
# ISO 8601 offsets are whole minutes, strictly within a day.
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
any_datetimes = st.datetimes(timezones=st.just(UTC) | offsets)
# Event times InfluxDB can hold (EARLIEST_TS..LATEST_TS), a day in from each end so
# that no offset takes them out; hypothesis takes naive bounds.
event_datetimes = st.datetimes(
    min_value=datetime(1678, 1, 2),  # noqa: DTZ001
    max_value=datetime(2261, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC) | offsets,
)
seqs = st.integers(min_value=1, max_value=MAX_SEQ)
monos = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
request_ids = st.text(min_size=1, max_size=64)

raw_summaries = st.builds(
    RawSummary,
    distance_cm=st.none() | st.integers(min_value=0, max_value=100_000),
    energy=st.none() | st.integers(min_value=0, max_value=100),
)
presences = st.builds(
    Presence,
    seq=seqs,
    ts=event_datetimes,
    mono=monos,
    state=st.sampled_from(PresenceState),
    confidence=st.floats(min_value=0, max_value=1),
    sensor=st.sampled_from(["radar", "pir"]),
    heartbeat=st.booleans(),
    raw=st.none() | raw_summaries,
)
taps = st.builds(
    Tap,
    seq=seqs,
    ts=event_datetimes,
    mono=monos,
    token=tokens,
    reader=ids,
    request_id=request_ids,
)
acks = st.builds(Ack, seq=st.integers(min_value=0, max_value=MAX_SEQ))


@st.composite
def topic_like(draw: st.DrawFn) -> str:
    """Strings shaped roughly like topics, mixing contract words with hostile levels."""
    words = st.sampled_from(
        [
            "ruche",
            "v1",
            "v2",
            SITE,
            AGENT,
            "desk",
            "door",
            "status",
            "presence",
            "badge",
            "tap",
            "event",
            "cmd",
            "allowlist",
            "ack",
            "+",
            "#",
            "$SYS",
            "$share",
            "",
            "caf\u00e9",
            "\x00",
            "x" * 65,
        ]
    )
    levels = draw(st.lists(words | st.text(max_size=6), max_size=9))
    return "/".join(levels)


def decode_or_refuse(topic: str, data: bytes) -> Message | None:
    """Decode, turning a ContractError into None; anything else escapes and fails the test."""
    try:
        message = decode(topic, data)
    except ContractError:
        return None
    assert isinstance(message, Message)
    return message


# -- properties ----------------------------------------------------------------------


class TestArbitraryBytes:
    """Any bytes on any channel's topic decode to a Message or raise ContractError, nothing else."""

    @FUZZ
    @given(channel=st.sampled_from(Channel), data=st.binary(max_size=512))
    def test_random_bytes(self, channel: Channel, data: bytes) -> None:
        decode_or_refuse(str(VALID_TOPICS[channel]), data)

    @FUZZ
    @given(channel=st.sampled_from(Channel), value=json_values)
    def test_random_json(self, channel: Channel, value: object) -> None:
        decode_or_refuse(str(VALID_TOPICS[channel]), to_json(value))

    @FUZZ
    @given(
        channel=st.sampled_from(Channel),
        value=json_values,
        cut=st.integers(min_value=0, max_value=200),
    )
    def test_truncated_json(self, channel: Channel, value: object, cut: int) -> None:
        data = to_json(value)
        decode_or_refuse(str(VALID_TOPICS[channel]), data[: len(data) - cut])


class TestArbitraryTopics:
    """Any text as a topic parses to a Topic that prints back the same, or raises ContractError."""

    @FUZZ
    @given(topic=st.text() | topic_like())
    def test_parse(self, topic: str) -> None:
        try:
            parsed = Topic.parse(topic)
        except ContractError:
            return
        assert str(parsed) == topic

    @FUZZ
    @given(topic=st.text() | topic_like(), data=st.sampled_from([b"{}", b'{"seq":1}', b"\xff"]))
    def test_decode(self, topic: str, data: bytes) -> None:
        decode_or_refuse(topic, data)

    @FUZZ
    @given(site=ids, agent=ids, device=ids, channel=st.sampled_from(Channel))
    def test_built_topics_round_trip(
        self, site: str, agent: str, device: str, channel: Channel
    ) -> None:
        topic = Topic(site, agent, channel, device if VALID_TOPICS[channel].device else None)
        assert Topic.parse(str(topic)) == topic


class TestStructuredRoundTrip:
    """Valid Presence, Tap and Ack payloads decode from their encoding to equal payloads."""

    @FUZZ
    @given(presence=presences, site=ids, agent=ids, desk=ids)
    def test_presence(self, presence: Presence, site: str, agent: str, desk: str) -> None:
        topic = Topic.presence(site, agent, desk)
        message = decode(str(topic), encode(presence))
        assert message == Message(topic, presence)
        assert isinstance(message.payload, Presence)
        assert message.payload.ts.utcoffset() == presence.ts.utcoffset()

    @FUZZ
    @given(tap=taps, door=ids)
    def test_tap(self, tap: Tap, door: str) -> None:
        topic = Topic.tap(SITE, AGENT, door)
        message = decode(str(topic), encode(tap))
        assert message == Message(topic, tap)
        assert isinstance(message.payload, Tap)
        assert message.payload.request_id == tap.request_id
        assert message.payload.ts.utcoffset() == tap.ts.utcoffset()

    @FUZZ
    @given(ack=acks)
    def test_ack(self, ack: Ack) -> None:
        topic = VALID_TOPICS[Channel.ACK]
        assert decode(str(topic), encode(ack)) == Message(topic, ack)


class TestWrongTypedFields:
    """Valid objects with one field replaced by any JSON value decode or raise ContractError."""

    @FUZZ
    @given(
        case=st.sampled_from(VALID_OBJECTS),
        field=st.sampled_from(FIELD_NAMES),
        value=json_values,
    )
    def test_one_field_replaced(
        self, case: tuple[Channel, dict[str, Any]], field: str, value: object
    ) -> None:
        channel, valid = case
        decode_or_refuse(str(VALID_TOPICS[channel]), to_json(valid | {field: value}))

    @FUZZ
    @given(
        case=st.sampled_from(VALID_OBJECTS),
        fields=st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, min_size=1, max_size=4),
    )
    def test_several_fields_replaced(
        self, case: tuple[Channel, dict[str, Any]], fields: dict[str, Any]
    ) -> None:
        channel, valid = case
        decode_or_refuse(str(VALID_TOPICS[channel]), to_json(valid | fields))

    @FUZZ
    @given(
        channel=st.sampled_from(Channel),
        fields=st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8),
    )
    def test_objects_of_known_fields(self, channel: Channel, fields: dict[str, Any]) -> None:
        decode_or_refuse(str(VALID_TOPICS[channel]), to_json(fields))

    def test_valid_objects_decode(self) -> None:
        for channel, valid in VALID_OBJECTS:
            assert decode_or_refuse(str(VALID_TOPICS[channel]), to_json(valid)) is not None
