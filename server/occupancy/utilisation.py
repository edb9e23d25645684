"""Utilisation: how much of a site's opening hours its desks were occupied, booked and used.

Pure functions over values: the shell loads a site's desks, desk sessions, desk bookings
and door visits, and passes them with the opening hours and `now`. Nothing here reads a
clock or a database. Instants are timezone-aware; intervals are half-open, `[start, end)`.

    >>> from datetime import UTC, date, datetime
    >>> from zoneinfo import ZoneInfo
    >>> from ruche.server.registry.schedule import Schedule
    >>> paris = ZoneInfo("Europe/Paris")
    >>> [series] = utilisation(
    ...     site="lyon",
    ...     desks=[DeskPlace("d1", "open space")],
    ...     sessions=[DeskTime("d1", datetime(2026, 11, 23, 8, tzinfo=UTC),
    ...                        datetime(2026, 11, 23, 10, tzinfo=UTC))],
    ...     bookings=[], visits=[],
    ...     opening=Opening(Schedule.business_hours(), paris),
    ...     first=date(2026, 11, 23), last=date(2026, 11, 24),
    ...     bucket=Bucket.DAY, by=Level.SITE, now=datetime(2026, 12, 1, tzinfo=UTC))
    >>> series.total.occupied_share
    0.18181818181818182

## Buckets

`[first, last)` are local dates of the site. They are cut into buckets in the site's
timezone: `hour` (local clock hours: 23 of them on the day the clock springs forward, 25
on the day it falls back, when the repeated hour is two buckets), `day` (local midnight
to local midnight, 23 to 25 hours) or `week` (Monday to Monday; the first and last weeks
are cut to the range).

Nothing after `now` is counted: a bucket still under way counts up to `now`, one in the
future counts nothing (no opening seconds, so no share).

## Figures (per desk, per zone, for the site)

- `opening`: how long the site was open in the bucket (its opening hours; closed on its
  holidays unless the hours are `24/7`).
- `capacity`: `opening` times the number of desks, in desk-time; equal to `opening` for
  one desk.
- `occupied`: desk-time occupied by a desk session *within opening hours* (sessions
  still open count up to `now`). `after_hours`: occupied outside opening hours.
- `occupied_share`: `occupied / capacity`, None when the capacity is zero.
- `suspect`: desk-time within opening hours held by suspect sessions (a sensor stuck
  occupied). It is in none of the other figures.
- `booked`: desk-time within opening hours covered by desk bookings (not cancelled);
  `booked_used`: the part of it that was also occupied; `used_unbooked`: occupied
  desk-time no booking covered (`occupied - booked_used`).
- `peak_desks`: the most desks occupied at the same instant (any time in the bucket, not
  only in opening hours); 0 or 1 for one desk.
- `peak_people`: for the site only, the most members present at the same instant by
  their door visits; None for a zone or a desk (visits are per site).
- `bookings`: desk bookings starting in the bucket (before `now`); `no_shows`: those of
  them released as no-shows; `no_show_rate`: `no_shows / bookings`, None without
  bookings.

Each series also has a `total` over the whole range: every duration and count there is
the sum of the buckets', and each peak the largest of theirs.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from ruche.server.errors import Invalid
from ruche.server.registry.schedule import (
    Interval,
    Schedule,
    local_day,
    merge_intervals,
    open_intervals,
)

__all__ = [
    "MAX_DAYS",
    "Bucket",
    "BucketFigures",
    "DeskBooking",
    "DeskPlace",
    "DeskTime",
    "Figures",
    "Level",
    "Opening",
    "Series",
    "VisitTime",
    "bucket_bounds",
    "check_range",
    "utilisation",
]

_ZERO = timedelta(0)
_QUARTER = timedelta(minutes=15)


class Bucket(StrEnum):
    """How a range is cut, in the site's local time."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


class Level(StrEnum):
    """What each series describes."""

    SITE = "site"
    ZONE = "zone"
    DESK = "desk"


MAX_DAYS = {Bucket.HOUR: 31, Bucket.DAY: 366, Bucket.WEEK: 371}
"""The longest range, in local days, for each bucket size: bounds the answer's size."""


# --- values ------------------------------------------------------------------------------


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DeskPlace:
    """A desk of the site (its id on the wire) and the zone it is in (the zone's name)."""

    desk: str
    zone: str


@dataclass(frozen=True, slots=True)
class DeskTime:
    """A desk session: `[start, end)`, open (`end` None) while the desk is still occupied."""

    desk: str
    start: datetime
    end: datetime | None
    suspect: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "start"))
        if self.end is not None:
            object.__setattr__(self, "end", _utc(self.end, "end"))


@dataclass(frozen=True, slots=True)
class DeskBooking:
    """A desk booking that was not cancelled, and whether it was released as a no-show."""

    desk: str
    start: datetime
    end: datetime
    no_show: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "start"))
        object.__setattr__(self, "end", _utc(self.end, "end"))


@dataclass(frozen=True, slots=True)
class VisitTime:
    """A member's door visit: `[start, end)`, open (`end` None) while they are in."""

    member: int
    start: datetime
    end: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "start"))
        if self.end is not None:
            object.__setattr__(self, "end", _utc(self.end, "end"))


@dataclass(frozen=True, slots=True)
class Opening:
    """When a site is open: a weekly schedule in its timezone, and its holidays."""

    schedule: Schedule
    tz: ZoneInfo
    holidays: frozenset[date] = frozenset()


@dataclass(frozen=True, slots=True)
class Figures:
    """One bucket's (or the whole range's) figures for a desk, a zone or the site."""

    desks: int
    opening: timedelta
    capacity: timedelta
    occupied: timedelta
    after_hours: timedelta
    suspect: timedelta
    booked: timedelta
    booked_used: timedelta
    used_unbooked: timedelta
    peak_desks: int
    peak_people: int | None
    bookings: int
    no_shows: int

    @property
    def occupied_share(self) -> float | None:
        return None if self.capacity <= _ZERO else self.occupied / self.capacity

    @property
    def no_show_rate(self) -> float | None:
        return None if self.bookings == 0 else self.no_shows / self.bookings


@dataclass(frozen=True, slots=True)
class BucketFigures:
    start: datetime
    """In the site's local time (its UTC offset says which of a repeated hour it is)."""
    end: datetime
    figures: Figures


@dataclass(frozen=True, slots=True)
class Series:
    """The figures of one desk, one zone or the site, bucket by bucket and in total."""

    level: Level
    key: str
    """The desk's id, the zone's name or the site's id."""
    buckets: tuple[BucketFigures, ...]
    total: Figures


# --- buckets -----------------------------------------------------------------------------


def check_range(first: date, last: date, bucket: Bucket) -> None:
    """Invalid, saying what to ask instead, unless `[first, last)` suits `bucket`."""
    if last <= first:
        raise Invalid(
            f"the range is empty: 'from' ({first.isoformat()}) must be before 'to' "
            f"({last.isoformat()}), which is excluded"
        )
    days = (last - first).days
    if days > MAX_DAYS[bucket]:
        raise Invalid(
            f"{days} days is too long a range for {bucket.value} buckets (at most "
            f"{MAX_DAYS[bucket]}): ask for a shorter range or larger buckets"
        )


def bucket_bounds(first: date, last: date, bucket: Bucket, tz: ZoneInfo) -> list[Interval]:
    """The UTC bounds of the buckets cutting local dates `[first, last)`: contiguous, in order."""
    if last <= first:
        return []
    starts: list[datetime] = []
    day = first
    while day < last:
        day_start, day_end = local_day(day, tz)
        if bucket is Bucket.HOUR:
            starts.extend(_hour_starts(day_start, day_end, tz))
        elif bucket is Bucket.DAY or day == first or day.weekday() == 0:
            starts.append(day_start)
        day += timedelta(days=1)
    end = local_day(last, tz)[0]
    return list(zip(starts, [*starts[1:], end], strict=True))


def _hour_starts(day_start: datetime, day_end: datetime, tz: ZoneInfo) -> list[datetime]:
    """Each instant of a local day at which the site's clock shows a whole hour.

    Every UTC offset in use since 1970 is a whole number of quarter hours, so stepping by
    a quarter hour from local midnight meets them all, and meets a repeated hour twice.
    """
    starts = [day_start]
    at = day_start + _QUARTER
    while at < day_end:
        local = at.astimezone(tz)
        if local.minute == 0 and local.second == 0:
            starts.append(at)
        at += _QUARTER
    return starts


# --- interval arithmetic over sorted, disjoint UTC lists ---------------------------------


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _per_bucket(intervals: Sequence[Interval], bounds: Sequence[Interval]) -> list[timedelta]:
    """How much of `intervals` falls in each bucket."""
    out = [_ZERO] * len(bounds)
    ends = [hi for _, hi in bounds]
    for start, end in intervals:
        k = bisect.bisect_right(ends, start)
        while k < len(bounds) and bounds[k][0] < end:
            lo, hi = bounds[k]
            out[k] += min(end, hi) - max(start, lo)
            k += 1
    return out


def _peaks(intervals: Iterable[Interval], bounds: Sequence[Interval]) -> list[int]:
    """The most `intervals` covering one instant, in each bucket."""
    # An end sorts before a start at the same instant: touching intervals never overlap.
    changes = sorted(
        change for start, end in intervals if start < end for change in ((start, 1), (end, -1))
    )
    out: list[int] = []
    count = p = 0
    for lo, hi in bounds:
        while p < len(changes) and changes[p][0] <= lo:
            count += changes[p][1]
            p += 1
        peak = count
        while p < len(changes) and changes[p][0] < hi:
            count += changes[p][1]
            peak = max(peak, count)
            p += 1
        out.append(peak)
    return out


def _count_starts(starts: Iterable[datetime], bounds: Sequence[Interval]) -> list[int]:
    out = [0] * len(bounds)
    ends = [hi for _, hi in bounds]
    for start in starts:
        k = bisect.bisect_right(ends, start)
        if k < len(bounds) and bounds[k][0] <= start:
            out[k] += 1
    return out


# --- figures -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    """One desk's (or the site's) measures over a list of buckets."""

    opening: list[timedelta]
    occupied: list[timedelta]
    after_hours: list[timedelta]
    suspect: list[timedelta]
    booked: list[timedelta]
    booked_used: list[timedelta]
    bookings: list[int]
    no_shows: list[int]


@dataclass(frozen=True, slots=True)
class _Desk:
    """One desk's intervals, clipped to the counted span."""

    occupied: list[Interval]
    suspect: list[Interval]
    booked: list[Interval]
    booking_starts: list[datetime]
    no_show_starts: list[datetime]


def _desk_column(desk: _Desk, hours: list[Interval], bounds: Sequence[Interval]) -> _Column:
    occupied = _per_bucket(_intersect(desk.occupied, hours), bounds)
    anytime = _per_bucket(desk.occupied, bounds)
    return _Column(
        opening=_per_bucket(hours, bounds),
        occupied=occupied,
        after_hours=[a - o for a, o in zip(anytime, occupied, strict=True)],
        suspect=_per_bucket(_intersect(desk.suspect, hours), bounds),
        booked=_per_bucket(_intersect(desk.booked, hours), bounds),
        booked_used=_per_bucket(_intersect(_intersect(desk.booked, desk.occupied), hours), bounds),
        bookings=_count_starts(desk.booking_starts, bounds),
        no_shows=_count_starts(desk.no_show_starts, bounds),
    )


_SUMMED = ("occupied", "booked_used", "after_hours", "suspect", "booked")


def _figures(
    columns: Sequence[_Column],
    opening: list[timedelta],
    peak_desks: list[int],
    peak_people: list[int] | None,
    k: int,
    *,
    sums: dict[str, list[timedelta]] | None = None,
) -> Figures:
    def total(name: str) -> timedelta:
        if sums is not None:
            return sums[name][k]
        return sum((getattr(c, name)[k] for c in columns), _ZERO)

    occupied, booked_used = total("occupied"), total("booked_used")
    return Figures(
        desks=len(columns),
        opening=opening[k],
        capacity=opening[k] * len(columns),
        occupied=occupied,
        after_hours=total("after_hours"),
        suspect=total("suspect"),
        booked=total("booked"),
        booked_used=booked_used,
        used_unbooked=occupied - booked_used,
        peak_desks=peak_desks[k],
        peak_people=None if peak_people is None else peak_people[k],
        bookings=sum(c.bookings[k] for c in columns),
        no_shows=sum(c.no_shows[k] for c in columns),
    )


@dataclass(frozen=True, slots=True)
class _Frame:
    """The buckets, the whole range as one bucket, and the opening hours counted."""

    hours: list[Interval]
    bounds: list[Interval]
    whole: list[Interval]
    tz: ZoneInfo


def _series(
    level: Level,
    key: str,
    desks: Sequence[_Desk],
    frame: _Frame,
    people: list[Interval] | None,
) -> Series:
    hours = frame.hours

    def measure(spans: Sequence[Interval]) -> tuple[list[_Column], list[timedelta], list[int]]:
        columns = [_desk_column(desk, hours, spans) for desk in desks]
        occupied = [interval for desk in desks for interval in desk.occupied]
        return columns, _per_bucket(hours, spans), _peaks(occupied, spans)

    columns, opening, peak_desks = measure(frame.bounds)
    total_columns, total_opening, total_peak = measure(frame.whole)
    peak_people = None if people is None else _peaks(people, frame.bounds)
    total_people = None if people is None else _peaks(people, frame.whole)
    # Each figure summed over the desks once per bucket, not once per figure and bucket.
    sums = {name: [sum(per_desk, _ZERO)
                   for per_desk in zip(*(getattr(c, name) for c in columns), strict=True)]
            for name in _SUMMED} if columns else None  # fmt: skip
    return Series(
        level=level,
        key=key,
        buckets=tuple(
            BucketFigures(
                start=lo.astimezone(frame.tz),
                end=hi.astimezone(frame.tz),
                figures=_figures(columns, opening, peak_desks, peak_people, k, sums=sums),
            )
            for k, (lo, hi) in enumerate(frame.bounds)
        ),
        total=_figures(total_columns, total_opening, total_peak, total_people, 0),
    )


def utilisation(
    *,
    site: str,
    desks: Iterable[DeskPlace],
    sessions: Iterable[DeskTime],
    bookings: Iterable[DeskBooking],
    visits: Iterable[VisitTime],
    opening: Opening,
    first: date,
    last: date,
    bucket: Bucket,
    by: Level,
    now: datetime,
) -> list[Series]:
    """The site's figures over local dates `[first, last)`, per `bucket`, for each desk, each
    zone or the whole site (`by`), by the rules in the module docstring.

    Sessions and bookings of desks not in `desks` are left out. Series come in the order of
    `desks` (desks, or zones by their first desk); the site's is alone.
    """
    now = _utc(now, "now")
    check_range(first, last, bucket)
    tz = opening.tz
    bounds = bucket_bounds(first, last, bucket, tz)
    lo, hi = bounds[0][0], bounds[-1][1]
    whole = [(lo, hi)]
    until = min(hi, max(lo, now))  # nothing after `now` counts
    hours = open_intervals(opening.schedule, opening.holidays, tz, lo, until)

    places = list(dict.fromkeys(desks))
    known = {place.desk for place in places}
    occupied: dict[str, list[Interval]] = defaultdict(list)
    suspect: dict[str, list[Interval]] = defaultdict(list)
    for s in sessions:
        if s.desk in known:
            end = s.end if s.end is not None else max(s.start, now)
            (suspect if s.suspect else occupied)[s.desk].append((s.start, end))
    booked: dict[str, list[Interval]] = defaultdict(list)
    starts: dict[str, list[datetime]] = defaultdict(list)
    no_show_starts: dict[str, list[datetime]] = defaultdict(list)
    for b in bookings:
        if b.desk not in known:
            continue
        booked[b.desk].append((b.start, b.end))
        if lo <= b.start < until:
            starts[b.desk].append(b.start)
            if b.no_show:
                no_show_starts[b.desk].append(b.start)

    per_desk = {
        place.desk: _Desk(
            occupied=merge_intervals(occupied[place.desk], lo, until),
            suspect=merge_intervals(suspect[place.desk], lo, until),
            booked=merge_intervals(booked[place.desk], lo, until),
            booking_starts=starts[place.desk],
            no_show_starts=no_show_starts[place.desk],
        )
        for place in places
    }

    frame = _Frame(hours, bounds, whole, tz)
    if by is Level.DESK:
        return [_series(Level.DESK, p.desk, [per_desk[p.desk]], frame, None) for p in places]
    if by is Level.ZONE:
        zones: dict[str, list[_Desk]] = defaultdict(list)
        for place in places:
            zones[place.zone].append(per_desk[place.desk])
        return [_series(Level.ZONE, zone, members, frame, None) for zone, members in zones.items()]
    stays: dict[int, list[Interval]] = defaultdict(list)
    for v in visits:
        stays[v.member].append((v.start, v.end if v.end is not None else max(v.start, now)))
    people = [i for spans in stays.values() for i in merge_intervals(spans, lo, until)]
    return [_series(Level.SITE, site, list(per_desk.values()), frame, people)]
