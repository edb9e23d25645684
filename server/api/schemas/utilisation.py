"""Bookings against reality, and utilisation figures."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import (
    BaseModel,
    Field,
)

from ruche.server.api.schemas.base import Page, _Out
from ruche.server.occupancy.utilisation import Bucket, Level
from ruche.server.registry.schedule_spec import ScheduleSpec as Schedule


class DeskSessionPublic(_Out):
    """A desk's occupied interval, derived from its sensor's events."""

    id: int
    desk: str = Field(description="The desk's id on the wire.")
    agent: str
    opened_seq: int = Field(description="With the site and desk, the session's stable key.")
    start: datetime
    end: datetime | None = Field(description="None while the desk is still occupied.")
    closed_by: str
    suspect: bool
    reason: str | None
    member_id: int | None
    attributed_by: str = Field(description="badge, booking or none.")
    booking_id: int | None


class DeskSessionsPublic(Page[DeskSessionPublic]):
    pass


class UtilisationFiguresPublic(BaseModel):
    """Durations in seconds; see docs/occupancy.md for each figure's definition."""

    desks: int
    opening_s: float = Field(description="How long the site was open (up to now).")
    capacity_s: float = Field(description="opening_s times the number of desks.")
    occupied_s: float = Field(description="Desk-seconds occupied within opening hours.")
    occupied_share: float | None = Field(description="occupied_s / capacity_s; null if 0.")
    after_hours_s: float = Field(description="Desk-seconds occupied outside opening hours.")
    suspect_s: float = Field(description="Desk-seconds of suspect sessions in opening hours.")
    booked_s: float = Field(description="Desk-seconds booked within opening hours.")
    booked_used_s: float = Field(description="Booked desk-seconds that were occupied.")
    used_unbooked_s: float = Field(description="Occupied desk-seconds no booking covered.")
    peak_desks: int = Field(description="Most desks occupied at one instant.")
    peak_people: int | None = Field(description="Most members in at one instant (site only).")
    bookings: int = Field(description="Desk bookings starting in the bucket.")
    no_shows: int = Field(description="Of those, released as no-shows.")
    no_show_rate: float | None = Field(description="no_shows / bookings; null without any.")


class UtilisationBucketPublic(UtilisationFiguresPublic):
    start: datetime = Field(description="Local time with its UTC offset.")
    end: datetime


class UtilisationSeriesPublic(BaseModel):
    level: Level
    id: int = Field(description="The site's, zone's or desk's row id.")
    key: str = Field(description="The site's or desk's id on the wire, or the zone's name.")
    buckets: list[UtilisationBucketPublic]
    total: UtilisationFiguresPublic = Field(description="The whole range.")


class UtilisationPublic(BaseModel):
    site_id: int
    timezone: str
    from_day: date = Field(description="The first local date.")
    to_day: date = Field(description="The local date the range ends at (excluded).")
    bucket: Bucket
    by: Level
    opening_hours: Schedule = Field(description="The schedule the site's hours follow.")
    counted_until: datetime = Field(description="Nothing after this instant is counted.")
    series: list[UtilisationSeriesPublic]
