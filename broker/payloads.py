"""Versioned payload schemas: the payloads of docs/contract.md.

Every payload is a JSON object with `v` (the schema version). Unknown fields are
ignored so a newer sender can add fields; wrong types are rejected, never coerced
(`"5"` is not a sequence number). Times are timezone-aware ISO 8601 strings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticKnownError

from ruche.broker.topics import ID_PATTERN

SCHEMA_VERSION = 1
MAX_INT64 = 2**63 - 1
"""The largest whole number the contract accepts anywhere: InfluxDB's integer fields and
SQL's BIGINT are signed 64-bit, and a number the stores cannot hold must be refused at the
door (`bad_value`), not fail later in an encoder or a gauge."""
MAX_SEQ = MAX_INT64

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
BadgeToken = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
"""HMAC-SHA256 of a badge UID under the site key, lowercase hex: never the raw UID."""
ReasonCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]
EARLIEST_TS = datetime(1678, 1, 1, tzinfo=UTC)
LATEST_TS = datetime(2262, 1, 1, tzinfo=UTC)
"""Event times outside these are refused: InfluxDB stores nanoseconds in an int64
(1677-09-21 to 2262-04-11), and a point it cannot hold would never leave the spool.
A Pi without a clock starts in 1970, well inside."""


class _Payload(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, allow_inf_nan=False, str_max_length=4096
    )

    v: Literal[1] = 1

    @field_validator("v", mode="before")
    @classmethod
    def _integer_version(cls, value: object) -> object:
        # A Literal accepts anything equal to 1 (`true`, `1.0`); the version must be an int.
        if type(value) is not int:
            raise PydanticKnownError("int_type")
        return value


class _Event(_Payload):
    """What every agent event carries: its place in the agent's stream and its time."""

    seq: Seq
    """Grows by one per event of this agent and survives restarts; the server dedupes on it."""
    ts: AwareDatetime
    """The agent's wall clock when the event happened (a Pi has no RTC: may be skewed)."""
    mono: float = Field(ge=0)
    """The agent's monotonic clock in seconds, to order events when the wall clock jumps."""

    @field_validator("ts")
    @classmethod
    def _storable_time(cls, value: datetime) -> datetime:
        if not EARLIEST_TS <= value < LATEST_TS:
            raise ValueError(f"must be from {EARLIEST_TS.year} to {LATEST_TS.year - 1}")
        return value


# --- agent -> all -----------------------------------------------------------------


class Status(_Payload):
    """Retained on `status`, and the last will: is the agent up, and how far behind."""

    state: Literal["online", "offline"]
    ts: AwareDatetime
    version: str = Field(default="", max_length=64)
    uptime_s: float = Field(default=0.0, ge=0)
    outbox_depth: int = Field(default=0, ge=0, le=MAX_INT64)
    faults: tuple[Id, ...] = Field(default=(), max_length=64)
    """Desks or doors whose sensor is not reporting (e.g. a radar gone silent)."""
    config_version: int | None = Field(default=None, ge=0, le=MAX_INT64)
    """The version of the server's `config` the agent runs; None when it runs its file's."""
    config_refused: str | None = Field(default=None, max_length=500)
    """Why the latest `config` from the server was not applied (the previous one runs)."""


# --- agent -> server --------------------------------------------------------------


class RawSummary(_Payload):
    """What the sensor saw when the state changed, for diagnosis; never the raw frames."""

    distance_cm: int | None = Field(default=None, ge=0, le=100_000)
    energy: int | None = Field(default=None, ge=0, le=100)


class PresenceState(StrEnum):
    OCCUPIED = "occupied"
    VACANT = "vacant"


class Presence(_Event):
    """A desk changed state (or a heartbeat repeating the current one)."""

    state: PresenceState
    confidence: float = Field(default=1.0, ge=0, le=1)
    sensor: Literal["radar", "pir"] = "radar"
    heartbeat: bool = False
    raw: RawSummary | None = None


class DeskBadge(_Event):
    """A member checked in at a desk with their badge."""

    token: BadgeToken


class Tap(_Event):
    """A badge presented at a door reader; sent as an MQTT v5 request.

    The request's response topic is the agent's `cmd` topic and its correlation
    data the `request_id`, echoed in the server's `unlock` or `deny` answer.
    """

    token: BadgeToken
    reader: Id
    request_id: str = Field(min_length=1, max_length=64)


class DoorOpened(_Event):
    kind: Literal["opened"] = "opened"


class DoorClosed(_Event):
    kind: Literal["closed"] = "closed"


class DoorForced(_Event):
    """The door opened while the strike was locked."""

    kind: Literal["forced"] = "forced"


class DoorHeldOpen(_Event):
    """The door stayed open past its limit."""

    kind: Literal["held_open"] = "held_open"
    open_s: float = Field(ge=0)


class OfflineDecision(_Event):
    """The agent decided a tap from its cached allow-list because the server did not answer."""

    kind: Literal["offline_decision"] = "offline_decision"
    token: BadgeToken
    allowed: bool
    reason: ReasonCode
    tap_seq: Seq
    allowlist_version: int | None = Field(default=None, ge=0, le=MAX_INT64)


DoorEvent = Annotated[
    DoorOpened | DoorClosed | DoorForced | DoorHeldOpen | OfflineDecision,
    Field(discriminator="kind"),
]


# --- server -> agent --------------------------------------------------------------


class Unlock(_Payload):
    """Release a door's strike for `ms`; the answer to an allowed tap, or a remote unlock."""

    cmd: Literal["unlock"] = "unlock"
    door: Id
    ms: int = Field(ge=1, le=600_000)
    request_id: str | None = Field(default=None, min_length=1, max_length=64)


class Deny(_Payload):
    """The answer to a refused tap, so the agent does not fall back to its cache."""

    cmd: Literal["deny"] = "deny"
    door: Id
    request_id: str = Field(min_length=1, max_length=64)
    reason: ReasonCode


class Lockdown(_Payload):
    """Lock one door (or all the agent's doors when `door` is None) until lifted."""

    cmd: Literal["lockdown"] = "lockdown"
    door: Id | None = None
    active: bool = True


class Reload(_Payload):
    """Re-read configuration and re-request the allow-list."""

    cmd: Literal["reload"] = "reload"


Command = Annotated[Unlock | Deny | Lockdown | Reload, Field(discriminator="cmd")]


Pin = Annotated[int, Field(ge=0, le=40)]
"""A BCM GPIO number on the Pi's header."""

_NFC_DEVICE = re.compile(r"^(usb(:[0-9a-fA-F:]+)?|tty:[\w./-]+(:\w+)?|udp(:[\w.-]+)?(:\d+)?)$")


class DoorHardware(_Payload):
    """How a door is wired to its agent's Pi, and how long its strike stays released."""

    reader: str = Field(default="usb", max_length=128)
    """The nfcpy device string of this door's reader."""
    relay_pin: Pin
    contact_pin: Pin
    """The door contact (reed switch, made when closed): forced and held-open alarms need it."""
    exit_pin: Pin | None = None
    relay_active_high: bool = True
    exit_ms: int = Field(default=5000, ge=100, le=60_000)
    unlock_ms: int = Field(default=3000, ge=100, le=60_000)
    """How long a tap the agent allows offline releases the strike."""
    held_open_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("reader")
    @classmethod
    def _nfc_device(cls, value: str) -> str:
        if not _NFC_DEVICE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an nfcpy device: use usb, usb:VID:PID, tty:PORT:DRIVER "
                "or udp:HOST:PORT"
            )
        return value

    @property
    def pins(self) -> tuple[int, ...]:
        return tuple(p for p in (self.relay_pin, self.contact_pin, self.exit_pin) if p is not None)

    @model_validator(mode="after")
    def _distinct_pins(self) -> Self:
        if len(self.pins) != len(set(self.pins)):
            raise ValueError(f"a door uses one pin twice: {list(self.pins)}")
        return self


class DoorSetup(DoorHardware):
    id: Id


class DeskSensor(_Payload):
    """A desk's presence sensor on its agent's Pi: an LD2410 radar or a PIR; and, if it
    has one, the NFC reader a member checks in at the desk with (`desk_badge` events)."""

    serial: str | None = Field(default=None, min_length=1, max_length=256)
    """Serial port of an LD2410 radar (e.g. /dev/ttyUSB0)."""
    baudrate: int = Field(default=256_000, ge=9600, le=4_000_000)
    pir_pin: Pin | None = None
    arrive_s: float = Field(default=5.0, ge=0, le=600)
    leave_s: float = Field(default=60.0, ge=0, le=3600)
    heartbeat_s: float = Field(default=300.0, gt=0, le=86_400)
    reader: str | None = Field(default=None, max_length=128)
    """The nfcpy device string of the desk's badge reader, if it has one."""

    @field_validator("reader")
    @classmethod
    def _nfc_device(cls, value: str | None) -> str | None:
        return None if value is None else DoorHardware._nfc_device(value)

    @model_validator(mode="after")
    def _one_sensor(self) -> Self:
        if (self.serial is None) == (self.pir_pin is None):
            raise ValueError("a desk needs exactly one of serial (radar) or pir_pin")
        return self


class DeskSetup(DeskSensor):
    id: Id


def check_setup(doors: tuple[DoorSetup, ...], desks: tuple[DeskSetup, ...]) -> None:
    """One agent's doors and desks side by side: unique ids, no pin or serial port used twice."""
    for kind, ids in (("door", [d.id for d in doors]), ("desk", [d.id for d in desks])):
        if len(ids) != len(set(ids)):
            raise ValueError(f"{kind} ids must be unique: {ids}")
    pins = [p for d in doors for p in d.pins] + [d.pir_pin for d in desks if d.pir_pin is not None]
    if len(pins) != len(set(pins)):
        raise ValueError(f"a pin is wired to two things: {sorted(pins)}")
    ports = [d.serial for d in desks if d.serial is not None]
    if len(ports) != len(set(ports)):
        raise ValueError(f"a serial port reads two desks: {sorted(ports)}")
    readers = [d.reader for d in doors] + [d.reader for d in desks if d.reader is not None]
    if len(readers) != len(set(readers)):
        raise ValueError(f"one badge reader serves two doors or desks: {sorted(readers)}")


class AgentConfig(_Payload):
    """Retained per agent: its doors and desks as the registry has them.

    An agent whose file lists no doors and no desks runs this; it applies a new version
    without a restart and reports the version it runs (or why it refused one) in its
    status.
    """

    version: int = Field(ge=0, le=MAX_INT64)
    issued: AwareDatetime
    doors: tuple[DoorSetup, ...] = Field(default=(), max_length=64)
    desks: tuple[DeskSetup, ...] = Field(default=(), max_length=512)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_setup(self.doors, self.desks)
        return self


class Window(_Payload):
    """A time interval in which a badge may open the agent's doors."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("window end must be after its start")
        return self


class AllowEntry(_Payload):
    token: BadgeToken
    windows: tuple[Window, ...] = Field(max_length=1000)
    doors: tuple[Id, ...] | None = None
    """The doors this entry opens; None means all of the agent's doors."""


class Allowlist(_Payload):
    """Retained per agent: what its doors may do when the server does not answer."""

    version: int = Field(ge=0, le=MAX_INT64)
    issued: AwareDatetime
    expires: AwareDatetime
    entries: tuple[AllowEntry, ...] = Field(default=(), max_length=100_000)
    revoked: tuple[BadgeToken, ...] = Field(default=(), max_length=100_000)

    @model_validator(mode="after")
    def _ordered(self) -> Allowlist:
        if self.expires <= self.issued:
            raise ValueError("allow-list expires before it was issued")
        return self


class Ack(_Payload):
    """The highest contiguous seq of this agent that the server has durably stored (or
    durably refused: an event it will never store does not hold the agent back)."""

    seq: int = Field(ge=0, le=MAX_SEQ)
    refused: tuple[Seq, ...] | None = Field(default=None, min_length=1, max_length=1000)
    """Seqs this ack passes over that the server refused (kept in its `refused_events`
    with the reason), for the agent to record."""


Payload = (
    Status
    | Presence
    | DeskBadge
    | Tap
    | DoorOpened
    | DoorClosed
    | DoorForced
    | DoorHeldOpen
    | OfflineDecision
    | Unlock
    | Deny
    | Lockdown
    | Reload
    | Allowlist
    | Ack
    | AgentConfig
)

EventPayload = (
    Presence
    | DeskBadge
    | Tap
    | DoorOpened
    | DoorClosed
    | DoorForced
    | DoorHeldOpen
    | OfflineDecision
)
"""Payloads that carry `(agent, seq)`: they travel through the agent's outbox."""
