"""Payload schemas and the codec: what goes on the wire and what decode accepts or refuses."""

from __future__ import annotations

import json
import re
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ruche.broker import (
    MAX_ALLOWLIST_BYTES,
    MAX_EVENT_BYTES,
    Ack,
    AgentConfig,
    AllowEntry,
    Allowlist,
    Channel,
    ContractError,
    Deny,
    DeskBadge,
    DeskSetup,
    DoorClosed,
    DoorForced,
    DoorHeldOpen,
    DoorOpened,
    DoorSetup,
    EventPayload,
    Lockdown,
    Message,
    OfflineDecision,
    Payload,
    Presence,
    PresenceState,
    RawSummary,
    Reason,
    Reload,
    Status,
    Tap,
    Topic,
    Unlock,
    Window,
    badge_token,
    decode,
    decode_payload,
    encode,
    encode_for,
    max_bytes,
)
from ruche.broker.payloads import MAX_INT64, MAX_SEQ

SITE = "paris-11"
AGENT = "pi-hall"
SITE_KEY = b"0123456789abcdef-site-key"
TS = datetime(2024, 5, 6, 9, 30, 15, 250_000, tzinfo=UTC)
TOKEN = badge_token(SITE_KEY, bytes.fromhex("04a224b2c35e80"))
OTHER_TOKEN = badge_token(SITE_KEY, bytes.fromhex("04a224b2c35e81"))
REVOKED_TOKEN = badge_token(SITE_KEY, bytes.fromhex("deadbeef"))

STATUS = Topic.status(SITE, AGENT)
PRESENCE = Topic.presence(SITE, AGENT, "desk-07")
DESK_BADGE = Topic.desk_badge(SITE, AGENT, "desk-07")
TAP = Topic.tap(SITE, AGENT, "front")
DOOR_EVENT = Topic.door_event(SITE, AGENT, "front")
CMD = Topic.cmd(SITE, AGENT)
ALLOWLIST = Topic.allowlist(SITE, AGENT)
ACK = Topic.ack(SITE, AGENT)
CONFIG = Topic.config(SITE, AGENT)

TOPICS: dict[Channel, Topic] = {
    topic.channel: topic
    for topic in (STATUS, PRESENCE, DESK_BADGE, TAP, DOOR_EVENT, CMD, ALLOWLIST, ACK, CONFIG)
}
CONFIG_SAMPLE = AgentConfig(
    version=12,
    issued=TS,
    doors=(DoorSetup(id="front", reader="udp:127.0.0.1:54321", relay_pin=17, contact_pin=27),),
    desks=(
        DeskSetup(id="desk-07", serial="/dev/ttyUSB0"),
        DeskSetup(id="desk-08", pir_pin=5, leave_s=30.0),
    ),
)

ALLOWLIST_SAMPLE = Allowlist(
    version=7,
    issued=TS,
    expires=TS + timedelta(days=1),
    entries=(
        AllowEntry(
            token=TOKEN,
            windows=(
                Window(start=TS, end=TS + timedelta(hours=8)),
                Window(start=TS + timedelta(days=1), end=TS + timedelta(days=1, hours=8)),
            ),
            doors=("front", "back.door"),
        ),
        AllowEntry(
            token=OTHER_TOKEN,
            windows=(
                Window(
                    start=datetime(2024, 5, 6, 8, 0, tzinfo=timezone(timedelta(hours=2))),
                    end=datetime(2024, 5, 6, 20, 0, tzinfo=timezone(timedelta(hours=2))),
                ),
            ),
        ),
        AllowEntry(token=REVOKED_TOKEN, windows=()),
    ),
    revoked=(REVOKED_TOKEN,),
)

# A representative instance of every payload type, on the topic it travels on.
SAMPLES: list[tuple[Topic, Payload]] = [
    (
        STATUS,
        Status(state="online", ts=TS, version="0.1.0", uptime_s=3600.5, outbox_depth=12),
    ),
    (STATUS, Status(state="offline", ts=TS)),
    (
        PRESENCE,
        Presence(
            seq=1,
            ts=TS,
            mono=12.75,
            state=PresenceState.OCCUPIED,
            confidence=0.875,
            sensor="radar",
            raw=RawSummary(distance_cm=85, energy=42),
        ),
    ),
    (
        PRESENCE,
        Presence(
            seq=MAX_SEQ,
            ts=datetime(2024, 5, 6, 11, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            mono=0.0,
            state=PresenceState.VACANT,
            confidence=0.0,
            sensor="pir",
            heartbeat=True,
            raw=RawSummary(),
        ),
    ),
    (DESK_BADGE, DeskBadge(seq=2, ts=TS, mono=13.0, token=TOKEN)),
    (TAP, Tap(seq=3, ts=TS, mono=14.5, token=TOKEN, reader="front-in", request_id="req-0001")),
    (DOOR_EVENT, DoorOpened(seq=4, ts=TS, mono=15.0)),
    (DOOR_EVENT, DoorClosed(seq=5, ts=TS, mono=21.0)),
    (DOOR_EVENT, DoorForced(seq=6, ts=TS, mono=22.0)),
    (DOOR_EVENT, DoorHeldOpen(seq=7, ts=TS, mono=83.0, open_s=60.25)),
    (
        DOOR_EVENT,
        OfflineDecision(
            seq=8,
            ts=TS,
            mono=90.0,
            token=TOKEN,
            allowed=True,
            reason="in_window",
            tap_seq=3,
            allowlist_version=7,
        ),
    ),
    (
        DOOR_EVENT,
        OfflineDecision(
            seq=9,
            ts=TS,
            mono=91.0,
            token=OTHER_TOKEN,
            allowed=False,
            reason="no_allowlist",
            tap_seq=9,
        ),
    ),
    (CMD, Unlock(door="front", ms=3000, request_id="req-0001")),
    (CMD, Unlock(door="front", ms=600_000)),
    (CMD, Deny(door="front", request_id="req-0002", reason="revoked")),
    (CMD, Lockdown(door="front")),
    (CMD, Lockdown(active=False)),
    (CMD, Reload()),
    (ALLOWLIST, ALLOWLIST_SAMPLE),
    (ALLOWLIST, Allowlist(version=0, issued=TS, expires=TS + timedelta(seconds=1))),
    (ACK, Ack(seq=0)),
    (ACK, Ack(seq=MAX_SEQ)),
    (ACK, Ack(seq=9, refused=(7,))),
    (CONFIG, CONFIG_SAMPLE),
    (CONFIG, AgentConfig(version=0, issued=TS)),
]
SAMPLE_IDS = [f"{topic.channel}-{type(payload).__name__}" for topic, payload in SAMPLES]


def sample_dict(channel: Channel) -> dict[str, Any]:
    """The JSON object of a valid payload on `channel`, to spoil one field of."""
    payload = next(p for t, p in SAMPLES if t.channel is channel)
    data: dict[str, Any] = json.loads(encode(payload))
    return data


def refusal(topic: Topic, data: bytes | dict[str, Any]) -> ContractError:
    """The ContractError that decoding `data` on `topic` raises."""
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    with pytest.raises(ContractError) as info:
        decode(str(topic), raw)
    return info.value


def with_field(channel: Channel, **fields: Any) -> dict[str, Any]:
    return {**sample_dict(channel), **fields}


class TestRoundTrip:
    """Every payload type decodes from its encoding on its topic to an equal payload."""

    @pytest.mark.parametrize(("topic", "payload"), SAMPLES, ids=SAMPLE_IDS)
    def test_decode_of_encode_is_identity(self, topic: Topic, payload: Payload) -> None:
        message = decode(str(topic), encode(payload))
        assert message == Message(topic, payload)
        assert type(message.payload) is type(payload)

    @pytest.mark.parametrize(("topic", "payload"), SAMPLES, ids=SAMPLE_IDS)
    def test_timestamps_keep_their_offset(self, topic: Topic, payload: Payload) -> None:
        decoded = decode(str(topic), encode(payload)).payload
        for name in ("ts", "issued", "expires"):
            if hasattr(payload, name):
                assert getattr(decoded, name).utcoffset() == getattr(payload, name).utcoffset()

    def test_samples_cover_every_payload_type(self) -> None:
        assert {type(p) for _, p in SAMPLES} == set(typing.get_args(Payload))

    def test_samples_cover_every_channel(self) -> None:
        assert {t.channel for t, _ in SAMPLES} == set(Channel)

    def test_event_payloads_all_carry_seq(self) -> None:
        for event in typing.get_args(EventPayload):
            assert {"seq", "ts", "mono"} <= set(event.model_fields)

    def test_allowlist_keeps_windows_doors_and_revocations(self) -> None:
        decoded = decode(str(ALLOWLIST), encode(ALLOWLIST_SAMPLE)).payload
        assert isinstance(decoded, Allowlist)
        first, second, third = decoded.entries
        assert first.doors == ("front", "back.door")
        assert first.windows[1].end - first.windows[1].start == timedelta(hours=8)
        assert second.doors is None
        assert third.windows == ()
        assert decoded.revoked == (REVOKED_TOKEN,)

    @pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
    def test_decode_accepts_any_bytes_like(self, wrap: type) -> None:
        data = wrap(encode(Ack(seq=5)))
        assert decode(str(ACK), data).payload == Ack(seq=5)
        assert decode_payload(Channel.ACK, data) == Ack(seq=5)


class TestEncode:
    """Encoding writes compact JSON that carries the version and leaves out absent options."""

    def test_compact_json_with_version(self) -> None:
        assert encode(Ack(seq=5)) == b'{"v":1,"seq":5}'

    def test_tag_is_written(self) -> None:
        assert json.loads(encode(DoorForced(seq=1, ts=TS, mono=0.0)))["kind"] == "forced"
        assert json.loads(encode(Reload())) == {"v": 1, "cmd": "reload"}

    def test_absent_options_are_left_out(self) -> None:
        data = json.loads(encode(Unlock(door="front", ms=3000)))
        assert data == {"v": 1, "cmd": "unlock", "door": "front", "ms": 3000}
        assert "door" not in json.loads(encode(Lockdown()))

    def test_timestamps_are_iso_8601_with_offset(self) -> None:
        data = json.loads(encode(Status(state="online", ts=TS)))
        assert data["ts"] == "2024-05-06T09:30:15.250000Z"
        assert datetime.fromisoformat(data["ts"]) == TS

    def test_payloads_are_frozen(self) -> None:
        ack = Ack(seq=1)
        with pytest.raises(ValueError, match="frozen"):
            ack.seq = 2  # type: ignore[misc]


class TestUnknownFields:
    """Fields a newer sender adds are ignored, at the top level and inside nested objects."""

    def test_top_level(self) -> None:
        data = b'{"v":1,"seq":3,"future":"x","more":{"a":[1,2,null]}}'
        assert decode(str(ACK), data).payload == Ack(seq=3)

    def test_tagged_union(self) -> None:
        data = with_field(Channel.DOOR_EVENT, colour="red")
        payload = decode(str(DOOR_EVENT), json.dumps(data).encode()).payload
        assert payload == DoorOpened(seq=4, ts=TS, mono=15.0)

    def test_command(self) -> None:
        data = b'{"cmd":"reload","reason":"config changed","at":"2024-05-06T09:30:15Z"}'
        assert decode(str(CMD), data).payload == Reload()

    def test_nested(self) -> None:
        data = sample_dict(Channel.ALLOWLIST)
        data["entries"][0]["note"] = "visitor"
        data["entries"][0]["windows"][0]["label"] = "morning"
        payload = decode(str(ALLOWLIST), json.dumps(data).encode()).payload
        assert payload == ALLOWLIST_SAMPLE

    def test_missing_version_means_v1(self) -> None:
        assert decode(str(ACK), b'{"seq":3}').payload == Ack(seq=3)

    def test_surrounding_whitespace(self) -> None:
        assert decode(str(ACK), b' \n{"seq": 3}\r\n ').payload == Ack(seq=3)


class TestBadJson:
    """Bytes that are not JSON raise bad_json."""

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b" ",
            b"{",
            b"not json",
            b'{"seq":1,}',
            b"{'seq': 1}",
            b'{"seq":1} {"seq":2}',
            b'{"seq":1} trailing',
            b"\xff\xfe",
            b'{"seq":1,"x":"\xff"}',
            b"\xef\xbb\xbf" + b'{"seq":1}',
            b'{"seq":1,"x":"\\ud800"}',
            b"[" * 4000,
        ],
    )
    def test_bad_json(self, data: bytes) -> None:
        assert refusal(ACK, data).reason is Reason.BAD_JSON

    @pytest.mark.parametrize("channel", list(Channel))
    def test_every_channel(self, channel: Channel) -> None:
        assert refusal(TOPICS[channel], b'{"v":1,').reason is Reason.BAD_JSON

    def test_deep_nesting_in_a_large_allowlist(self) -> None:
        assert refusal(ALLOWLIST, b'{"a":' * 100_000).reason is Reason.BAD_JSON


class TestWrongType:
    """A JSON value of the wrong type raises wrong_type: nothing is coerced."""

    @pytest.mark.parametrize("data", [b"[]", b"[1]", b"5", b'"ack"', b"null", b"true", b"1.5"])
    @pytest.mark.parametrize("channel", list(Channel))
    def test_non_object(self, channel: Channel, data: bytes) -> None:
        assert refusal(TOPICS[channel], data).reason is Reason.WRONG_TYPE

    @pytest.mark.parametrize(
        ("channel", "fields"),
        [
            pytest.param(Channel.ACK, {"seq": "5"}, id="seq-string"),
            pytest.param(Channel.ACK, {"seq": 5.0}, id="seq-float"),
            pytest.param(Channel.ACK, {"seq": True}, id="seq-bool"),
            pytest.param(Channel.ACK, {"seq": [5]}, id="seq-list"),
            pytest.param(Channel.ACK, {"seq": None}, id="seq-null"),
            pytest.param(Channel.PRESENCE, {"seq": "1"}, id="event-seq-string"),
            pytest.param(Channel.PRESENCE, {"seq": False}, id="event-seq-bool"),
            pytest.param(Channel.PRESENCE, {"mono": "12.5"}, id="mono-string"),
            pytest.param(Channel.PRESENCE, {"mono": True}, id="mono-bool"),
            pytest.param(Channel.PRESENCE, {"confidence": True}, id="confidence-bool"),
            pytest.param(Channel.PRESENCE, {"heartbeat": 1}, id="heartbeat-int"),
            pytest.param(Channel.PRESENCE, {"heartbeat": "true"}, id="heartbeat-string"),
            pytest.param(Channel.PRESENCE, {"ts": 1714987815}, id="ts-epoch"),
            pytest.param(Channel.PRESENCE, {"raw": "85cm"}, id="raw-string"),
            pytest.param(Channel.PRESENCE, {"raw": {"energy": True}}, id="raw-energy-bool"),
            pytest.param(Channel.STATUS, {"outbox_depth": True}, id="outbox-bool"),
            pytest.param(Channel.STATUS, {"uptime_s": "1"}, id="uptime-string"),
            pytest.param(Channel.STATUS, {"version": 1}, id="version-int"),
            pytest.param(Channel.TAP, {"token": 5}, id="token-int"),
            pytest.param(Channel.TAP, {"request_id": 17}, id="request-id-int"),
            pytest.param(Channel.DOOR_EVENT, {"seq": "4"}, id="door-seq-string"),
            pytest.param(Channel.CMD, {"ms": "3000"}, id="unlock-ms-string"),
            pytest.param(Channel.CMD, {"ms": 3000.0}, id="unlock-ms-float"),
            pytest.param(Channel.ALLOWLIST, {"version": "7"}, id="allowlist-version-string"),
            pytest.param(Channel.ALLOWLIST, {"revoked": "abc"}, id="revoked-string"),
            pytest.param(Channel.ALLOWLIST, {"entries": {}}, id="entries-object"),
        ],
    )
    def test_wrong_field_type(self, channel: Channel, fields: dict[str, Any]) -> None:
        assert refusal(TOPICS[channel], with_field(channel, **fields)).reason is Reason.WRONG_TYPE

    def test_offline_decision_allowed_string(self) -> None:
        data = sample_dict(Channel.DOOR_EVENT) | {
            "kind": "offline_decision",
            "token": TOKEN,
            "allowed": "true",
            "reason": "in_window",
            "tap_seq": 3,
        }
        assert refusal(DOOR_EVENT, data).reason is Reason.WRONG_TYPE

    @pytest.mark.parametrize("version", [True, 1.0, "1", None, [1]])
    def test_version_must_be_an_int(self, version: object) -> None:
        assert refusal(ACK, {"v": version, "seq": 1}).reason is Reason.WRONG_TYPE


class TestMissingField:
    """An object without a required field, or without its union tag, raises missing_field."""

    @pytest.mark.parametrize(
        ("channel", "field"),
        [
            (Channel.STATUS, "state"),
            (Channel.STATUS, "ts"),
            (Channel.PRESENCE, "seq"),
            (Channel.PRESENCE, "ts"),
            (Channel.PRESENCE, "mono"),
            (Channel.PRESENCE, "state"),
            (Channel.DESK_BADGE, "token"),
            (Channel.TAP, "reader"),
            (Channel.TAP, "request_id"),
            (Channel.DOOR_EVENT, "kind"),
            (Channel.DOOR_EVENT, "seq"),
            (Channel.CMD, "cmd"),
            (Channel.CMD, "door"),
            (Channel.ALLOWLIST, "version"),
            (Channel.ALLOWLIST, "expires"),
            (Channel.ACK, "seq"),
        ],
    )
    def test_missing(self, channel: Channel, field: str) -> None:
        data = sample_dict(channel)
        del data[field]
        error = refusal(TOPICS[channel], data)
        assert error.reason is Reason.MISSING_FIELD
        assert field in error.detail

    @pytest.mark.parametrize("channel", list(Channel))
    def test_empty_object(self, channel: Channel) -> None:
        # Even on `cmd`, where `{}` could pass for a Reload: the tag is required.
        assert refusal(TOPICS[channel], b"{}").reason is Reason.MISSING_FIELD

    def test_nested_window_end(self) -> None:
        data = sample_dict(Channel.ALLOWLIST)
        del data["entries"][0]["windows"][0]["end"]
        assert refusal(ALLOWLIST, data).reason is Reason.MISSING_FIELD

    def test_offline_decision_without_tap_seq(self) -> None:
        data = sample_dict(Channel.DOOR_EVENT) | {
            "kind": "offline_decision",
            "token": TOKEN,
            "allowed": False,
            "reason": "expired",
        }
        assert refusal(DOOR_EVENT, data).reason is Reason.MISSING_FIELD


class TestUnsupportedVersion:
    """A payload of another schema version raises unsupported_version, on every channel."""

    @pytest.mark.parametrize("version", [2, 0, -1, 100])
    @pytest.mark.parametrize("channel", list(Channel))
    def test_other_version(self, channel: Channel, version: int) -> None:
        error = refusal(TOPICS[channel], with_field(channel, v=version))
        assert error.reason is Reason.UNSUPPORTED_VERSION

    def test_version_checked_before_other_fields(self) -> None:
        assert refusal(ACK, b'{"v":2,"seq":"five"}').reason is Reason.UNSUPPORTED_VERSION

    @pytest.mark.parametrize("kind", ["opened", "held_open", "offline_decision"])
    def test_door_event_kinds(self, kind: str) -> None:
        data = {"v": 2, "kind": kind, "seq": 1, "ts": TS.isoformat(), "mono": 0}
        assert refusal(DOOR_EVENT, data).reason is Reason.UNSUPPORTED_VERSION

    @pytest.mark.parametrize("cmd", ["unlock", "deny", "lockdown", "reload"])
    def test_command_kinds(self, cmd: str) -> None:
        assert refusal(CMD, {"v": 2, "cmd": cmd}).reason is Reason.UNSUPPORTED_VERSION


class TestBadValue:
    """A value of the right type that the contract forbids raises bad_value."""

    @pytest.mark.parametrize(
        ("channel", "fields"),
        [
            pytest.param(Channel.STATUS, {"ts": "2024-05-06T09:30:15"}, id="naive-ts"),
            pytest.param(Channel.STATUS, {"ts": "2024-05-06"}, id="date-only"),
            pytest.param(Channel.STATUS, {"ts": "yesterday"}, id="ts-words"),
            pytest.param(Channel.STATUS, {"ts": "2024-05-06T09:30:15+25:00"}, id="ts-offset"),
            pytest.param(Channel.STATUS, {"state": "busy"}, id="status-state"),
            pytest.param(Channel.STATUS, {"outbox_depth": -1}, id="negative-outbox"),
            pytest.param(Channel.STATUS, {"outbox_depth": 2**70}, id="outbox-beyond-int64"),
            pytest.param(Channel.STATUS, {"outbox_depth": MAX_INT64 + 1}, id="outbox-int64-1"),
            pytest.param(Channel.STATUS, {"uptime_s": -0.5}, id="negative-uptime"),
            pytest.param(Channel.STATUS, {"version": "x" * 65}, id="long-version"),
            pytest.param(Channel.PRESENCE, {"ts": "2024-05-06T09:30:15"}, id="event-naive"),
            pytest.param(Channel.PRESENCE, {"ts": "2262-01-01T00:00:00Z"}, id="ts-after-influx"),
            pytest.param(Channel.PRESENCE, {"ts": "1677-12-31T23:59:59Z"}, id="ts-before-influx"),
            pytest.param(Channel.PRESENCE, {"seq": -5}, id="negative-seq"),
            pytest.param(Channel.PRESENCE, {"seq": 0}, id="zero-seq"),
            pytest.param(Channel.PRESENCE, {"seq": MAX_SEQ + 1}, id="seq-overflow"),
            pytest.param(Channel.PRESENCE, {"mono": -1.0}, id="negative-mono"),
            pytest.param(Channel.PRESENCE, {"state": "busy"}, id="presence-state"),
            pytest.param(Channel.PRESENCE, {"confidence": 1.5}, id="confidence-high"),
            pytest.param(Channel.PRESENCE, {"sensor": "camera"}, id="sensor"),
            pytest.param(Channel.PRESENCE, {"raw": {"energy": 101}}, id="energy"),
            pytest.param(Channel.DESK_BADGE, {"token": TOKEN.upper()}, id="token-upper"),
            pytest.param(Channel.DESK_BADGE, {"token": TOKEN[:-1]}, id="token-short"),
            pytest.param(Channel.DESK_BADGE, {"token": TOKEN + "0"}, id="token-long"),
            pytest.param(Channel.DESK_BADGE, {"token": "g" * 64}, id="token-not-hex"),
            pytest.param(Channel.DESK_BADGE, {"token": "04a224b2c35e80"}, id="token-raw-uid"),
            pytest.param(Channel.TAP, {"reader": "front/in"}, id="reader-slash"),
            pytest.param(Channel.TAP, {"reader": ""}, id="reader-empty"),
            pytest.param(Channel.TAP, {"request_id": ""}, id="request-id-empty"),
            pytest.param(Channel.TAP, {"request_id": "r" * 65}, id="request-id-long"),
            pytest.param(Channel.DOOR_EVENT, {"kind": "exploded"}, id="door-kind"),
            pytest.param(Channel.DOOR_EVENT, {"kind": 3}, id="door-kind-int"),
            pytest.param(Channel.CMD, {"cmd": "explode"}, id="cmd-unknown"),
            pytest.param(Channel.CMD, {"ms": 0}, id="unlock-ms-zero"),
            pytest.param(Channel.CMD, {"ms": 600_001}, id="unlock-ms-long"),
            pytest.param(Channel.CMD, {"door": "+"}, id="unlock-door-wildcard"),
            pytest.param(Channel.ALLOWLIST, {"version": -1}, id="allowlist-version"),
            pytest.param(Channel.ALLOWLIST, {"version": MAX_INT64 + 1}, id="allowlist-version-big"),
            pytest.param(
                Channel.DOOR_EVENT,
                {
                    "kind": "offline_decision",
                    "token": TOKEN,
                    "allowed": True,
                    "reason": "schedule",
                    "tap_seq": 3,
                    "allowlist_version": 2**64,
                },
                id="offline-allowlist-version-big",
            ),
            pytest.param(Channel.ALLOWLIST, {"expires": TS.isoformat()}, id="expires-at-issue"),
            pytest.param(Channel.ALLOWLIST, {"revoked": ["x"]}, id="revoked-token"),
            pytest.param(Channel.ACK, {"seq": -1}, id="ack-negative"),
            pytest.param(Channel.ACK, {"seq": MAX_SEQ + 1}, id="ack-overflow"),
        ],
    )
    def test_bad_value(self, channel: Channel, fields: dict[str, Any]) -> None:
        assert refusal(TOPICS[channel], with_field(channel, **fields)).reason is Reason.BAD_VALUE

    @pytest.mark.parametrize(
        ("door", "request_id", "reason"),
        [
            ("front", "req-1", "Not Allowed"),
            ("front", "req-1", ""),
            ("front", "req-1", "r" * 41),
            ("front", "", "revoked"),
            ("$front", "req-1", "revoked"),
        ],
    )
    def test_bad_deny(self, door: str, request_id: str, reason: str) -> None:
        data = {"cmd": "deny", "door": door, "request_id": request_id, "reason": reason}
        assert refusal(CMD, data).reason is Reason.BAD_VALUE

    @pytest.mark.parametrize("end_offset", [timedelta(hours=-1), timedelta(0)])
    def test_window_must_end_after_it_starts(self, end_offset: timedelta) -> None:
        data = sample_dict(Channel.ALLOWLIST)
        data["entries"][0]["windows"][0]["end"] = (TS + end_offset).isoformat()
        error = refusal(ALLOWLIST, data)
        assert error.reason is Reason.BAD_VALUE
        assert "after its start" in error.detail

    def test_window_refused_when_built(self) -> None:
        with pytest.raises(ValueError, match="after its start"):
            Window(start=TS, end=TS - timedelta(seconds=1))

    def test_allowlist_must_expire_after_issue(self) -> None:
        expires = (TS - timedelta(minutes=1)).isoformat()
        assert refusal(ALLOWLIST, with_field(Channel.ALLOWLIST, expires=expires)).reason is (
            Reason.BAD_VALUE
        )

    def test_allowed_door_must_be_an_id(self) -> None:
        data = sample_dict(Channel.ALLOWLIST)
        data["entries"][0]["doors"] = ["front", "#"]
        assert refusal(ALLOWLIST, data).reason is Reason.BAD_VALUE

    def test_naive_timestamp_refused_when_built(self) -> None:
        with pytest.raises(ValueError, match="timezone"):
            Status(state="online", ts=datetime(2024, 5, 6, 9, 30))  # noqa: DTZ001


class TestNumbersFitTheStores:
    """Every whole number the contract accepts fits a signed 64-bit integer, what InfluxDB's
    integer fields and SQL's BIGINT hold: a larger one is refused as bad_value at decode."""

    @staticmethod
    def _integers(schema: dict[str, Any], where: str = "") -> typing.Iterator[tuple[str, Any]]:
        if schema.get("type") == "integer":
            yield where, schema
        for key, value in schema.items():
            if isinstance(value, dict):
                yield from TestNumbersFitTheStores._integers(value, f"{where}.{key}")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        yield from TestNumbersFitTheStores._integers(item, f"{where}.{key}{i}")

    @pytest.mark.parametrize("model", typing.get_args(Payload), ids=lambda m: m.__name__)
    def test_every_integer_is_bounded_to_int64(self, model: type[Any]) -> None:
        found = list(self._integers(model.model_json_schema()))
        for where, schema in found:
            high = schema.get("const", schema.get("maximum", MAX_INT64 + 1))
            low = schema.get("const", schema.get("minimum", -(2**63) - 1))
            assert -(2**63) <= low <= high <= MAX_INT64, f"{model.__name__}{where}"

    def test_the_walk_finds_the_integers(self) -> None:
        paths = {w for w, _ in self._integers(OfflineDecision.model_json_schema())}
        assert {".properties.seq", ".properties.tap_seq"} <= paths
        assert any(p.endswith("allowlist_version.anyOf0") for p in paths), paths

    def test_the_largest_accepted_number_decodes(self) -> None:
        data = with_field(Channel.STATUS, outbox_depth=MAX_INT64)
        decoded = decode(str(TOPICS[Channel.STATUS]), json.dumps(data).encode())
        assert isinstance(decoded.payload, Status)
        assert decoded.payload.outbox_depth == MAX_INT64


class TestNonFinite:
    """NaN and infinities are not numbers the contract carries."""

    @pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
    @pytest.mark.parametrize("field", [b"mono", b"confidence"])
    def test_float_fields(self, field: bytes, literal: bytes) -> None:
        data = (
            b'{"seq":1,"ts":"2024-05-06T09:30:15Z","mono":1,"state":"occupied","'
            + field
            + b'":'
            + literal
            + b"}"
        )
        assert refusal(PRESENCE, data).reason is Reason.BAD_VALUE

    def test_held_open_duration(self) -> None:
        data = b'{"kind":"held_open","seq":1,"ts":"2024-05-06T09:30:15Z","mono":1,"open_s":NaN}'
        assert refusal(DOOR_EVENT, data).reason is Reason.BAD_VALUE

    @pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
    def test_int_fields(self, literal: bytes) -> None:
        assert refusal(ACK, b'{"seq":' + literal + b"}").reason is Reason.WRONG_TYPE

    def test_refused_when_built(self) -> None:
        with pytest.raises(ValueError, match="finite"):
            Presence(seq=1, ts=TS, mono=float("nan"), state=PresenceState.VACANT)


class TestSizeLimits:
    """Payloads over their channel's limit raise oversized before they are parsed."""

    def test_limits(self) -> None:
        assert MAX_EVENT_BYTES == 4 * 1024
        assert MAX_ALLOWLIST_BYTES == 4 * 1024 * 1024
        assert max_bytes(Channel.CONFIG) == 256 * 1024
        for channel in set(Channel) - {Channel.CONFIG}:
            expected = MAX_ALLOWLIST_BYTES if channel is Channel.ALLOWLIST else MAX_EVENT_BYTES
            assert max_bytes(channel) == expected

    @pytest.mark.parametrize("channel", sorted(set(Channel) - {Channel.ALLOWLIST, Channel.CONFIG}))
    def test_event_at_limit_decodes(self, channel: Channel) -> None:
        data = json.dumps(sample_dict(channel)).encode()
        padded = data + b" " * (MAX_EVENT_BYTES - len(data))
        assert len(padded) == MAX_EVENT_BYTES
        assert decode(str(TOPICS[channel]), padded).topic == TOPICS[channel]

    @pytest.mark.parametrize("channel", sorted(set(Channel) - {Channel.ALLOWLIST, Channel.CONFIG}))
    def test_event_over_limit(self, channel: Channel) -> None:
        data = json.dumps(sample_dict(channel)).encode()
        padded = data + b" " * (MAX_EVENT_BYTES + 1 - len(data))
        error = refusal(TOPICS[channel], padded)
        assert error.reason is Reason.OVERSIZED
        assert str(MAX_EVENT_BYTES + 1) in error.detail

    def test_oversized_is_checked_before_json(self) -> None:
        assert refusal(ACK, b"\xff" * (MAX_EVENT_BYTES + 1)).reason is Reason.OVERSIZED

    def test_allowlist_may_exceed_the_event_limit(self) -> None:
        entries = tuple(
            AllowEntry(
                token=badge_token(SITE_KEY, i.to_bytes(4, "big")),
                windows=(Window(start=TS, end=TS + timedelta(hours=9)),),
            )
            for i in range(200)
        )
        allowlist = Allowlist(version=8, issued=TS, expires=TS + timedelta(days=1), entries=entries)
        data = encode(allowlist)
        assert MAX_EVENT_BYTES < len(data) <= MAX_ALLOWLIST_BYTES
        assert decode(str(ALLOWLIST), data).payload == allowlist

    def test_allowlist_at_limit_decodes(self) -> None:
        data = encode(ALLOWLIST_SAMPLE)
        padded = data + b" " * (MAX_ALLOWLIST_BYTES - len(data))
        assert decode(str(ALLOWLIST), padded).payload == ALLOWLIST_SAMPLE

    def test_allowlist_over_limit(self) -> None:
        data = encode(ALLOWLIST_SAMPLE)
        padded = data + b" " * (MAX_ALLOWLIST_BYTES + 1 - len(data))
        assert refusal(ALLOWLIST, padded).reason is Reason.OVERSIZED

    def test_config_over_limit(self) -> None:
        data = encode(CONFIG_SAMPLE)
        padded = data + b" " * (max_bytes(Channel.CONFIG) + 1 - len(data))
        assert refusal(CONFIG, padded).reason is Reason.OVERSIZED

    def test_oversized_event_refused_on_decode_payload_too(self) -> None:
        with pytest.raises(ContractError) as info:
            decode_payload(Channel.TAP, b" " * (MAX_EVENT_BYTES + 1))
        assert info.value.reason is Reason.OVERSIZED


class TestTopicChecks:
    """decode refuses a bad topic before it looks at the payload."""

    def test_bad_topic(self) -> None:
        with pytest.raises(ContractError) as info:
            decode("ruche/v1/s/a/unknown", encode(Ack(seq=1)))
        assert info.value.reason is Reason.BAD_TOPIC

    def test_other_topic_version(self) -> None:
        with pytest.raises(ContractError) as info:
            decode("ruche/v2/s/a/ack", encode(Ack(seq=1)))
        assert info.value.reason is Reason.UNSUPPORTED_VERSION

    def test_payload_of_another_channel(self) -> None:
        assert refusal(ACK, encode(Reload())).reason is Reason.MISSING_FIELD

    def test_error_detail_names_channel_and_field(self) -> None:
        error = refusal(ACK, b'{"seq":"5"}')
        assert error.detail.startswith("ack: seq: ")
        assert str(error).startswith("wrong_type: ack: seq: ")


class TestBadgeToken:
    """badge_token is a keyed, deterministic 64-hex-digit digest that refuses weak input."""

    def test_rfc_4231_vector(self) -> None:
        # RFC 4231 test case 3: HMAC-SHA-256, key 0xaa * 20, data 0xdd * 50.
        assert badge_token(b"\xaa" * 20, b"\xdd" * 50) == (
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        )

    def test_deterministic(self) -> None:
        uid = bytes.fromhex("04a224b2c35e80")
        assert badge_token(SITE_KEY, uid) == badge_token(SITE_KEY, uid) == TOKEN

    def test_64_lowercase_hex(self) -> None:
        for uid in (b"\x00", b"\x04\xa2\x24\xb2", bytes(range(256))):
            assert re.fullmatch(r"[0-9a-f]{64}", badge_token(SITE_KEY, uid))

    def test_differs_per_site_key(self) -> None:
        uid = b"\x04\xa2\x24\xb2"
        assert badge_token(b"k" * 16, uid) != badge_token(b"K" * 16, uid)

    def test_differs_per_uid(self) -> None:
        assert badge_token(SITE_KEY, b"\x01") != badge_token(SITE_KEY, b"\x02")

    def test_never_contains_the_uid(self) -> None:
        uid = bytes.fromhex("04a224b2c35e80")
        assert uid.hex() not in badge_token(SITE_KEY, uid)

    def test_shortest_key(self) -> None:
        assert len(badge_token(b"k" * 16, b"\x01")) == 64

    @pytest.mark.parametrize("key", [b"", b"short", b"k" * 15])
    def test_refuses_short_key(self, key: bytes) -> None:
        with pytest.raises(ValueError, match="at least 16 bytes"):
            badge_token(key, b"\x04\xa2")

    def test_refuses_empty_uid(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            badge_token(SITE_KEY, b"")

    def test_token_is_accepted_by_the_schema(self) -> None:
        token = badge_token(SITE_KEY, b"\x01\x02\x03\x04")
        assert DeskBadge(seq=1, ts=TS, mono=0.0, token=token).token == token


class TestEncodeFor:
    """Publishers refuse an oversized payload before it reaches the broker."""

    def test_payload_within_the_limit_encodes(self) -> None:
        assert encode_for(Channel.ACK, Ack(seq=3)) == encode(Ack(seq=3))

    def test_payload_over_the_channels_limit_is_refused(self) -> None:
        entries = tuple(
            AllowEntry(
                token=badge_token(SITE_KEY, i.to_bytes(4, "big")),
                windows=(Window(start=TS, end=TS + timedelta(hours=9)),),
            )
            for i in range(200)
        )
        big = Allowlist(version=8, issued=TS, expires=TS + timedelta(days=1), entries=entries)
        assert len(encode_for(Channel.ALLOWLIST, big)) > MAX_EVENT_BYTES
        with pytest.raises(ContractError) as info:
            encode_for(Channel.STATUS, big)  # a 4 KiB channel
        assert info.value.reason is Reason.OVERSIZED


class TestAgentConfig:
    """A config the agent could not wire is refused by the contract, naming why."""

    @pytest.mark.parametrize(
        ("change", "words"),
        [
            pytest.param({"doors": [{"id": "a", "relay_pin": 1, "contact_pin": 1}]},
                         "one pin twice", id="door-pin-twice"),
            pytest.param({"doors": [{"id": "a", "relay_pin": 1, "contact_pin": 2},
                                    {"id": "b", "relay_pin": 2, "contact_pin": 3}]},
                         "wired to two things", id="pin-shared-by-doors"),
            pytest.param({"doors": [{"id": "a", "relay_pin": 1, "contact_pin": 2}],
                          "desks": [{"id": "d", "pir_pin": 2}]},
                         "wired to two things", id="pin-shared-by-door-and-pir"),
            pytest.param({"desks": [{"id": "d", "serial": "/dev/x"},
                                    {"id": "e", "serial": "/dev/x"}]},
                         "serial port reads two desks", id="serial-twice"),
            pytest.param({"desks": [{"id": "d"}]}, "exactly one of", id="desk-without-sensor"),
            pytest.param({"doors": [{"id": "a", "relay_pin": 1, "contact_pin": 2,
                                     "reader": "udp:h:1"}],
                          "desks": [{"id": "d", "pir_pin": 3, "reader": "udp:h:1"}]},
                         "one badge reader serves two", id="reader-shared-by-door-and-desk"),
            pytest.param({"desks": [{"id": "d", "pir_pin": 1}, {"id": "d", "pir_pin": 2}]},
                         "unique", id="desk-id-twice"),
            pytest.param({"doors": [{"id": "a", "relay_pin": 1, "contact_pin": 2,
                                     "reader": "bluetooth"}]},
                         "not an nfcpy device", id="bad-reader"),
            pytest.param({"doors": [{"id": "a", "relay_pin": 41, "contact_pin": 2}]},
                         "less than or equal to 40", id="pin-off-the-header"),
        ],
    )  # fmt: skip
    def test_refused(self, change: dict[str, Any], words: str) -> None:
        data = {"v": 1, "version": 1, "issued": "2026-01-05T09:00:00+01:00", **change}
        error = refusal(CONFIG, data)
        assert error.reason in (Reason.BAD_VALUE, Reason.MISSING_FIELD)
        assert words in error.detail
