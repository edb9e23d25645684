"""A schedule as plans and sites store it, and as the API takes and shows it: the one
typed model of that JSON, checked once where it comes in, and turned into the rules'
`Schedule` (`ruche.server.registry.schedule`) where it is used.

    >>> spec = parse_schedule({"kind": "custom", "days": {"fri": ["13:00-19:00", "08:00-12"]}})
    Traceback (most recent call last):
    ...
    ruche.server.errors.Invalid: schedule: days.fri.1: String should match pattern ...
    >>> spec = parse_schedule({"kind": "custom", "days": {"fri": ["13:00-19:00", "08:00-12:00"]}})
    >>> schedule_json(spec)
    {'kind': 'custom', 'days': {'fri': ['08:00-12:00', '13:00-19:00']}}

`{"kind": "24/7"}`; `{"kind": "business_hours"}` (the hours are the door rules' to define;
holidays closed); `{"kind": "custom", "days": {"mon": ["08:00-18:00"], ...}}` with local
"HH:MM-HH:MM" ranges, start before end, "24:00" allowed as an end. A range past midnight
is written as two: "22:00-24:00" on one day, "00:00-02:00" on the next.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ruche.server.errors import Invalid
from ruche.server.registry.schedule import Schedule, Weekday

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_INDEX = dict(zip(WEEKDAYS, Weekday, strict=True))
_RANGE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")

DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
TimeRangeText = Annotated[
    str,
    Field(
        pattern=r"^\d\d:\d\d-\d\d:\d\d$",
        description="Local 'HH:MM-HH:MM', start before end; '24:00' may end a day.",
    ),
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlwaysOpen(_Spec):
    """Every hour of every day."""

    kind: Literal["24/7"]

    def to_schedule(self) -> Schedule:
        return Schedule.always()


class BusinessHours(_Spec):
    """The door rules' business hours; closed on holidays."""

    kind: Literal["business_hours"]

    def to_schedule(self) -> Schedule:
        return Schedule.business_hours()


class CustomHours(_Spec):
    """Ranges per weekday, in the site's local time; a day left out is closed."""

    kind: Literal["custom"]
    days: dict[DayName, Annotated[tuple[TimeRangeText, ...], Field(max_length=24)]]

    @field_validator("days")
    @classmethod
    def _ordered(cls, days: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """Each day's ranges sorted and checked not to overlap; days in week order."""
        normal = {day: _day_ranges(day, ranges) for day, ranges in days.items()}
        return {day: normal[day] for day in WEEKDAYS if day in normal}

    def to_schedule(self) -> Schedule:
        return Schedule.weekly({_DAY_INDEX[day]: ranges for day, ranges in self.days.items()})


ScheduleSpec = Annotated[AlwaysOpen | BusinessHours | CustomHours, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AlwaysOpen | BusinessHours | CustomHours] = TypeAdapter(ScheduleSpec)


def parse_schedule(
    value: AlwaysOpen | BusinessHours | CustomHours | Mapping[str, Any],
) -> AlwaysOpen | BusinessHours | CustomHours:
    """A schedule checked and normalised; Invalid naming what is wrong."""
    if isinstance(value, AlwaysOpen | BusinessHours | CustomHours):
        return value
    try:
        return _ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise Invalid(f"schedule: {_first_problem(exc)}") from exc


def schedule_json(spec: AlwaysOpen | BusinessHours | CustomHours) -> dict[str, Any]:
    """The JSON a plan's `schedule` or a site's `opening_hours` column holds."""
    return spec.model_dump(mode="json")


def plan_schedule(stored: Mapping[str, Any], *, booking_only: bool) -> Schedule | None:
    """A plan's stored schedule as the rules' `Schedule`; None for a booking-only plan."""
    return None if booking_only else parse_schedule(stored).to_schedule()


def opening_schedule(stored: Mapping[str, Any] | None) -> Schedule:
    """A site's stored opening hours as a `Schedule`; business hours when unset."""
    return (
        BusinessHours(kind="business_hours").to_schedule()
        if stored is None
        else (parse_schedule(stored).to_schedule())
    )


def _day_ranges(day: str, ranges: tuple[str, ...]) -> tuple[str, ...]:
    spans = []
    for text in ranges:
        match = _RANGE.match(text)
        if match is None:
            raise ValueError(f"{day}: {text!r} is not 'HH:MM-HH:MM'")
        start, end = _minutes(match[1], match[2], text), _minutes(match[3], match[4], text)
        if start >= end:
            raise ValueError(f"{day}: {text!r} ends before it starts (split it at midnight)")
        spans.append((start, end, text))
    spans.sort()
    for (_, end, before), (start, _, after) in itertools.pairwise(spans):
        if start < end:
            raise ValueError(f"{day}: {before!r} and {after!r} overlap")
    return tuple(text for _, _, text in spans)


def _minutes(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m != 0):
        raise ValueError(f"{text!r}: not a time of day")
    return h * 60 + m


def _first_problem(exc: ValidationError) -> str:
    """Pydantic's first error as a sentence: where, then what (its own words)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"] if p not in {"custom", "24/7", "business_hours"})
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "union_tag_invalid":
        message = f"kind must be one of 24/7, business_hours, custom ({message})"
    return f"{where}: {message}" if where else message
