"""Sites and their holidays."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from ruche.server.api.schemas.base import (
    Day,
    Label,
    LongName,
    Minutes,
    Page,
    RowId,
    Slug,
    Timezone,
    _In,
    _Out,
)
from ruche.server.registry.schedule_spec import ScheduleSpec as Schedule


class SiteCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"slug": "nice", "name": "Nice", "timezone": "Europe/Paris"}]
        },
    )

    slug: Slug
    name: LongName
    timezone: Timezone
    no_show_minutes: Minutes = 15
    share_key_with: RowId | None = Field(
        default=None,
        description="Another site whose badge key this site shares, so one enrolment opens both.",
    )
    opening_hours: Schedule | None = Field(
        default=None,
        description="When the site is open (utilisation measures against it), in a plan "
        "schedule's format; omitted: business hours.",
    )


class SiteUpdate(_In):
    name: LongName | None = None
    timezone: Timezone | None = None
    no_show_minutes: Minutes | None = None
    opening_hours: Schedule | None = Field(
        default=None, description="New opening hours; {'kind': 'business_hours'} resets them."
    )


class SitePublic(_Out):
    id: int
    slug: str
    name: str
    timezone: str
    no_show_minutes: int
    opening_hours: dict[str, Any] | None = Field(description="None: business hours.")


class SitesPublic(Page[SitePublic]):
    pass


class HolidayCreate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"day": "2030-05-01", "name": "May Day"}]}
    )

    day: Day
    name: Label = ""


class HolidayPublic(_Out):
    site_id: int
    day: date
    name: str


class HolidaysPublic(Page[HolidayPublic]):
    pass


class LockdownPublic(BaseModel):
    site_id: int
    locked_down: bool
    door_ids: list[int] = Field(description="The doors whose state was set.")
    audit_id: int
