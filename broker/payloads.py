"""Versioned payload schemas: the payloads of docs/contract.md.

Every payload is a JSON object with `v` (the schema version). Unknown fields are
ignored so a newer sender can add fields; wrong types are rejected, never coerced
(`"5"` is not a sequence number). Times are timezone-aware ISO 8601 strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

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
    """The highest contiguous seq of this agent that the server has durably stored."""

    seq: int = Field(ge=0, le=MAX_SEQ)


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
