"""Encode payloads for the wire and decode what comes off it.

`decode` is the one door through which bytes from MQTT enter Ruche: whatever the
topic and bytes, it returns a validated `Message` or raises `ContractError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter, ValidationError

from ruche.broker.errors import ContractError, Reason
from ruche.broker.payloads import (
    Ack,
    AgentConfig,
    Allowlist,
    Command,
    DeskBadge,
    DoorEvent,
    Payload,
    Presence,
    Status,
    Tap,
)
from ruche.broker.topics import Channel, Topic

MAX_EVENT_BYTES: Final = 4 * 1024
"""Largest payload on any channel but the allow-list: events are small by design."""

MAX_ALLOWLIST_BYTES: Final = 4 * 1024 * 1024
"""Largest allow-list: about 15,000 badges with a few windows each. Also the broker's
`message_size_limit`, so nothing larger ever reaches a client."""

MAX_CONFIG_BYTES: Final = 256 * 1024
"""Largest agent config: 64 doors and 512 desks fit in a third of it."""

_ADAPTERS: Final[dict[Channel, TypeAdapter[Any]]] = {
    Channel.STATUS: TypeAdapter(Status),
    Channel.PRESENCE: TypeAdapter(Presence),
    Channel.DESK_BADGE: TypeAdapter(DeskBadge),
    Channel.TAP: TypeAdapter(Tap),
    Channel.DOOR_EVENT: TypeAdapter(DoorEvent),
    Channel.CMD: TypeAdapter(Command),
    Channel.ALLOWLIST: TypeAdapter(Allowlist),
    Channel.ACK: TypeAdapter(Ack),
    Channel.CONFIG: TypeAdapter(AgentConfig),
}

_TAGGED_CHANNELS: Final = frozenset({Channel.DOOR_EVENT, Channel.CMD})
"""Channels whose payload is a union told apart by a tag field (`kind`, `cmd`)."""


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded message: where it travelled and what it said."""

    topic: Topic
    payload: Payload


def max_bytes(channel: Channel) -> int:
    """The size limit of a channel's payloads."""
    if channel is Channel.ALLOWLIST:
        return MAX_ALLOWLIST_BYTES
    return MAX_CONFIG_BYTES if channel is Channel.CONFIG else MAX_EVENT_BYTES


def encode(payload: BaseModel) -> bytes:
    """The wire form of a payload: compact JSON, absent optional fields left out."""
    return payload.model_dump_json(exclude_none=True).encode()


def encode_for(channel: Channel, payload: BaseModel) -> bytes:
    """`encode`, refusing a payload over the channel's size limit before it reaches a broker.

    Publishers use this: Mosquitto refuses an oversized v5 publish with a PUBACK that
    paho cannot parse, so paho would reconnect and resend it forever (docs/broker.md).
    """
    data = encode(payload)
    limit = max_bytes(channel)
    if len(data) > limit:
        raise ContractError(
            Reason.OVERSIZED, f"{channel} payload of {len(data)} bytes exceeds {limit}"
        )
    return data


def decode_payload(channel: Channel, data: bytes | bytearray | memoryview) -> Payload:
    """Validate the bytes of one channel's payload; raise ContractError with the reason."""
    raw = bytes(data)
    limit = max_bytes(channel)
    if len(raw) > limit:
        raise ContractError(
            Reason.OVERSIZED, f"{channel} payload of {len(raw)} bytes exceeds {limit}"
        )
    try:
        payload: Payload = _ADAPTERS[channel].validate_json(raw)
    except ValidationError as exc:
        raise _contract_error(channel, exc) from exc
    return payload


def decode(topic: str, data: bytes | bytearray | memoryview) -> Message:
    """Parse a topic and validate its payload against that topic's schema."""
    parsed = Topic.parse(topic)
    return Message(parsed, decode_payload(parsed.channel, data))


def _contract_error(channel: Channel, exc: ValidationError) -> ContractError:
    """Map pydantic's first error to the contract's reason, keeping its words as detail."""
    first = exc.errors(include_url=False, include_input=False)[0]
    kind = first["type"]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    # Tagged unions (door events, commands) prefix the location with the tag.
    field = first["loc"][1:] if channel in _TAGGED_CHANNELS else first["loc"]
    detail = f"{channel}: {where}: {first['msg']}"
    if kind == "json_invalid":
        reason = Reason.BAD_JSON
    elif kind in {"missing", "union_tag_not_found"}:
        reason = Reason.MISSING_FIELD
    elif field == ("v",) and kind == "literal_error":
        reason = Reason.UNSUPPORTED_VERSION
    elif kind.endswith("_type"):
        reason = Reason.WRONG_TYPE
    else:
        reason = Reason.BAD_VALUE
    return ContractError(reason, detail)
