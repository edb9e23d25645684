"""Plans and memberships."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    ConfigDict,
    Field,
)

from ruche.server.api.schemas.base import Instant, Name, Page, RowId, _In, _Out
from ruche.server.registry.schedule_spec import ScheduleSpec as Schedule


class PlanCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Part time",
                    "site_ids": [1],
                    "schedule": {"kind": "custom", "days": {"mon": ["08:00-12:00"]}},
                }
            ]
        },
    )

    name: Name
    site_ids: Annotated[list[RowId], Field(max_length=1000)] = Field(default_factory=list)
    schedule: Schedule
    booking_only: bool = False


class PlanUpdate(_In):
    name: Name | None = None
    site_ids: Annotated[list[RowId], Field(max_length=1000)] | None = None
    schedule: Schedule | None = None
    booking_only: bool | None = None


class PlanPublic(_Out):
    id: int
    name: str
    site_ids: list[int]
    schedule: Schedule
    booking_only: bool


class PlansPublic(Page[PlanPublic]):
    pass


class MembershipCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"member_id": 1, "plan_id": 1, "starts_at": "2030-04-01T00:00:00+02:00"}]
        },
    )

    member_id: RowId
    plan_id: RowId
    starts_at: Instant
    ends_at: Instant | None = None


class MembershipUpdate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ends_at": "2030-12-31T00:00:00+01:00"}]}
    )

    ends_at: Instant = Field(description="When the membership ends (exclusive).")


class MembershipPublic(_Out):
    id: int
    member_id: int
    plan_id: int
    starts_at: datetime
    ends_at: datetime | None


class MembershipsPublic(Page[MembershipPublic]):
    pass


class BookingLimitSet(_In):
    """A site's rule (no `plan_id`) or a plan's there; every field null removes it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"plan_id": None, "days_ahead": 14,
                                         "max_minutes": 600, "at_once": 3}]},
    )  # fmt: skip

    plan_id: RowId | None = None
    days_ahead: Annotated[int, Field(ge=0, le=3660)] | None = None
    """The latest a booking may start: this many days after today (0: today only)."""
    max_minutes: Annotated[int, Field(ge=1, le=366 * 24 * 60)] | None = None
    """The longest one booking may last."""
    at_once: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """How many bookings a member may hold at once (booked, not yet ended)."""


class BookingLimitPublic(_Out):
    site_id: int
    plan_id: int | None
    days_ahead: int | None
    max_minutes: int | None
    at_once: int | None


class BookingLimitsPublic(Page[BookingLimitPublic]):
    pass
