"""What every schema shares: bounded ids, names and instants (a value the database cannot
hold is a 422, never a 500), the input and output bases, a page of results, and `patch`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from ruche.broker.topics import ID_PATTERN

MAX_ID = 2**31 - 1
"""Primary keys are 32-bit INTEGER columns on PostgreSQL."""
MAX_MINUTES = 24 * 60
MAX_PAGE = 500
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""No control characters: PostgreSQL refuses NUL in text, and names are shown to people."""

RowId = Annotated[int, Field(ge=1, le=MAX_ID, description="A row id.")]
Slug = Annotated[
    str,
    StringConstraints(pattern=f"^{ID_PATTERN}$", max_length=64),
    Field(description="A wire id: 1-64 letters, digits, '_', '.' or '-', starting alphanumeric."),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_PRINTABLE)]
LongName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)]
Label = Annotated[str, StringConstraints(max_length=100, pattern=_PRINTABLE)]
Email = Annotated[
    str,
    StringConstraints(max_length=320, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$"),
]
Timezone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$"),
    Field(description="An IANA timezone name, such as 'Europe/Paris'.", examples=["Europe/Paris"]),
]
Minutes = Annotated[int, Field(ge=0, le=MAX_MINUTES)]
GridPosition = Annotated[int, Field(ge=0, le=10_000)]
UidHex = Annotated[
    str,
    StringConstraints(pattern=r"^([0-9A-Fa-f]{2}){1,32}$"),
    Field(description="The card's UID in hex (1-32 bytes); stored only as a keyed HMAC."),
]


def _bounded(value: datetime) -> datetime:
    """An aware instant between EARLIEST and LATEST, converted to UTC."""
    if not EARLIEST <= value <= LATEST:
        raise ValueError("must be between 2000-01-01 and 2999-12-31")
    return value.astimezone(UTC)


Instant = Annotated[
    AwareDatetime,
    AfterValidator(_bounded),
    Field(description="ISO 8601 with an offset (2026-11-23T10:00:00+01:00), years 2000-2999."),
]
Day = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2999, 12, 31))]


class _In(BaseModel):
    """What clients send: unknown fields are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def patch(body: BaseModel, nullable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields a PATCH body sets; null leaves a field unchanged unless it is `nullable`."""
    return {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name in nullable
    }


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(_Out, Generic[T]):
    data: list[T]
    total: int = Field(description="How many match, over all pages.")
    limit: int
    offset: int
