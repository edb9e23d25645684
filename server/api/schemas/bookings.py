"""Bookings and day passes."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import (
    ConfigDict,
    Field,
)

from ruche.server.api.schemas.base import Day, Instant, Minutes, Page, RowId, _In, _Out
from ruche.server.storage.enums import BookingStatus


class BookingCreate(_In):
    """A booking is not edited: cancel it and book again, so the overlap rule stays one rule."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "member_id": 1,
                    "site_id": 1,
                    "desk_id": 1,
                    "starts_at": "2030-03-12T09:00:00+01:00",
                    "ends_at": "2030-03-12T13:00:00+01:00",
                    "grace_before": 10,
                }
            ]
        },
    )

    member_id: RowId | None = Field(
        default=None, description="Whose booking; a member key books for itself when omitted."
    )
    site_id: RowId
    desk_id: RowId | None = None
    zone_id: RowId | None = None
    starts_at: Instant
    ends_at: Instant
    grace_before: Minutes = 0
    grace_after: Minutes = 0


class BookingPublic(_Out):
    id: int
    member_id: int
    site_id: int
    desk_id: int | None
    zone_id: int | None
    starts_at: datetime
    ends_at: datetime
    grace_before: int
    grace_after: int
    status: BookingStatus
    created_at: datetime


class BookingsPublic(Page[BookingPublic]):
    pass


class DayPassCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"member_id": 1, "site_id": 1, "day": "2030-03-13"}]},
    )

    member_id: RowId
    site_id: RowId
    day: Day


class DayPassPublic(_Out):
    id: int
    member_id: int
    site_id: int
    day: date


class DayPassesPublic(Page[DayPassPublic]):
    pass
