"""Utilisation folded onto the hours of the day: over a period, how booked and how used
each local hour (9:00-10:00, ...) was, all days added up. Pure, over the hour buckets of
`ruche.server.occupancy.utilisation`.

    >>> from datetime import UTC, date, datetime
    >>> from zoneinfo import ZoneInfo
    >>> from ruche.server.occupancy.utilisation import (Bucket, DeskPlace, DeskTime, Level,
    ...     Opening, utilisation)
    >>> from ruche.server.registry.schedule import Schedule
    >>> [zone] = utilisation(site="lyon", desks=[DeskPlace("d1", "Open space")],
    ...     sessions=[DeskTime("d1", datetime(2026, 11, 23, 8, 30, tzinfo=UTC),
    ...                        datetime(2026, 11, 23, 9, 0, tzinfo=UTC))],
    ...     bookings=[], visits=[], opening=Opening(Schedule.business_hours(), UTC),
    ...     first=date(2026, 11, 23), last=date(2026, 11, 25), bucket=Bucket.HOUR,
    ...     by=Level.ZONE, now=datetime(2026, 12, 1, tzinfo=UTC))
    >>> [(h.hour, h.used, h.used_share) for h in by_hour_of_day(zone)][:2]
    [(8, datetime.timedelta(seconds=1800), 0.25), (9, datetime.timedelta(0), 0.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ruche.server.occupancy.utilisation import Series

__all__ = ["HourOfDay", "by_hour_of_day"]

_ZERO = timedelta(0)


@dataclass(frozen=True, slots=True)
class HourOfDay:
    """One local hour of the day, every day of the period added up."""

    hour: int
    """0 to 23: the hour from `hour`:00 to `hour + 1`:00, site time."""
    capacity: timedelta
    """Desk-time open in that hour (opening hours times desks)."""
    booked: timedelta
    used: timedelta
    """Desk-time occupied within opening hours."""
    booked_used: timedelta
    """Booked and occupied."""

    @property
    def booked_share(self) -> float | None:
        return None if self.capacity <= _ZERO else self.booked / self.capacity

    @property
    def used_share(self) -> float | None:
        return None if self.capacity <= _ZERO else self.used / self.capacity


def by_hour_of_day(series: Series) -> list[HourOfDay]:
    """`series` (hour buckets) summed by local hour of the day, in hour order; an hour
    never open, booked nor used in the period is left out. On the night the clocks go
    back, both of the repeated hour's buckets count for it."""
    sums: dict[int, list[timedelta]] = {}
    for bucket in series.buckets:
        figures = bucket.figures
        row = sums.setdefault(bucket.start.hour, [_ZERO, _ZERO, _ZERO, _ZERO])
        row[0] += figures.capacity
        row[1] += figures.booked
        row[2] += figures.occupied
        row[3] += figures.booked_used
    return [
        HourOfDay(hour, capacity, booked, used, booked_used)
        for hour, (capacity, booked, used, booked_used) in sorted(sums.items())
        if capacity > _ZERO or booked > _ZERO or used > _ZERO
    ]
