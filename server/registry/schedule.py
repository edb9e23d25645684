"""Weekly access schedules in a site's timezone, and the UTC intervals they open.

A schedule is a list of local wall-clock ranges per weekday (`08:00-19:00`, or
`22:00-02:00`, which runs into the next day), plus the ranges that apply on the site's
holidays instead (none, for most schedules: closed). Pure functions over values: time
is always a parameter, instants are timezone-aware, and what comes back is in UTC.

    >>> from datetime import UTC, datetime
    >>> from zoneinfo import ZoneInfo
    >>> paris = ZoneInfo("Europe/Paris")
    >>> office = Schedule.business_hours()
    >>> is_open(office, frozenset(), paris, datetime(2026, 3, 30, 6, 0, tzinfo=UTC))
    True

How local times become instants (what happens on the 23- and 25-hour days):

- A range belongs to the local date it starts on. On a holiday, that date's ranges are
  replaced by the schedule's `on_holidays` ranges, so a Friday `22:00-02:00` still runs
  into a holiday Saturday, and a holiday Friday's night range does not run at all.
- A range opens the *first* time the site's clock reaches its start and closes the
  *last* time the clock reaches its end: when the clock falls back and shows a time
  twice, the range is one contiguous interval, never cut short. `01:00-02:30` on
  2026-10-25 in Paris is open from 01:00 CEST to the second 02:30 (CET), 2.5 hours.
- A time the clock skips when it springs forward is reached at the jump: a range that
  starts at 02:30 on 2026-03-29 in Paris opens at 03:00 CEST, and one that ends at 02:30
  closes at 02:00 CET, the same instant. A range wholly inside the gap is never open.
- A local day runs from the first time the clock reads its midnight to the first time
  it reads the next one: 23 hours on 2026-03-29 in Paris, 25 hours on 2026-10-25.

Intervals are half-open, `[start, end)`: open at `start`, closed at `end`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from typing import TypeAlias
from zoneinfo import ZoneInfo

__all__ = [
    "WORKDAYS",
    "Interval",
    "Schedule",
    "TimeRange",
    "Weekday",
    "is_open",
    "local_day",
    "merge_intervals",
    "open_intervals",
]

Interval: TypeAlias = tuple[datetime, datetime]
"""A half-open interval `[start, end)` of aware instants, in UTC when this module made it."""

_ONE_DAY = timedelta(days=1)
_MIDNIGHT = time(0)
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class Weekday(IntEnum):
    """Days of the week, numbered as `date.weekday()` numbers them."""

    MONDAY = 0
    TUESDAY = 1
    WEDNESDAY = 2
    THURSDAY = 3
    FRIDAY = 4
    SATURDAY = 5
    SUNDAY = 6


WORKDAYS = frozenset(
    {Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY}
)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Local wall-clock times from `start` to `end`; an `end` not after `start` is the next day.

    `22:00-02:00` runs past midnight; `00:00-00:00` is the whole day.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(
                "a schedule range holds local wall-clock times: drop the tzinfo, "
                "the site's timezone applies"
            )

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """`"08:00-19:00"`, `"22:00-02:00"` (past midnight) or `"00:00-24:00"` (whole day)."""
        match = _RANGE.match(text)
        if match is None:
            raise ValueError(f"a time range is written HH:MM-HH:MM, not {text!r}")
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if (h2, m2) == (24, 0):
            h2 = 0
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"{text!r} is not a range of times of day (00:00 to 24:00)")
        return cls(time(h1, m1), time(h2, m2))

    @classmethod
    def all_day(cls) -> TimeRange:
        return cls(_MIDNIGHT, _MIDNIGHT)

    @property
    def crosses_midnight(self) -> bool:
        """True when the range ends on the day after it starts (`00:00-00:00` included)."""
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a plan's members may come in: ranges per weekday, and on the site's holidays.

    `week` holds seven tuples of ranges, Monday first. `on_holidays` replaces a day's
    ranges when the day is one of the site's holidays; empty means closed on holidays.
    Build one with `always()`, `business_hours()` or `weekly()`.
    """

    week: tuple[tuple[TimeRange, ...], ...]
    on_holidays: tuple[TimeRange, ...] = ()

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError(f"a week has 7 days of ranges, Monday first, not {len(self.week)}")

    @classmethod
    def always(cls) -> Schedule:
        """24/7, holidays included."""
        day = (TimeRange.all_day(),)
        return cls(week=(day,) * 7, on_holidays=day)

    @classmethod
    def business_hours(
        cls,
        *,
        opens: time = time(8),
        closes: time = time(19),
        days: Collection[Weekday] = WORKDAYS,
        open_on_holidays: bool = False,
    ) -> Schedule:
        """The same hours on each of `days` (Monday to Friday unless told), closed on holidays."""
        hours = (TimeRange(opens, closes),)
        return cls(
            week=tuple(hours if day in days else () for day in Weekday),
            on_holidays=hours if open_on_holidays else (),
        )

    @classmethod
    def weekly(
        cls,
        ranges: Mapping[Weekday, Iterable[TimeRange | str]],
        *,
        on_holidays: Iterable[TimeRange | str] = (),
    ) -> Schedule:
        """Custom: ranges (or `"HH:MM-HH:MM"` strings) per weekday; days left out are closed."""
        return cls(
            week=tuple(_ranges(ranges.get(day, ())) for day in Weekday),
            on_holidays=_ranges(on_holidays),
        )

    def ranges_on(self, day: date, holidays: Collection[date]) -> tuple[TimeRange, ...]:
        """The ranges that start on local date `day`."""
        if day in holidays:
            return self.on_holidays
        return self.week[day.weekday()]


def is_open(
    schedule: Schedule, holidays: Collection[date], tz: ZoneInfo, instant: datetime
) -> bool:
    """Whether `schedule`, at a site in `tz` with `holidays`, lets members in at `instant`."""
    _require_aware(instant, "instant")
    day = instant.astimezone(tz).date()
    # Two days either side: a range may run into the next day, and a clock that falls
    # back (or a zone that skipped a date) can put an instant's date off by one more.
    return any(
        start <= instant < end
        for start, end in _occurrences(
            schedule, holidays, tz, day - 2 * _ONE_DAY, day + 2 * _ONE_DAY
        )
    )


def open_intervals(
    schedule: Schedule,
    holidays: Collection[date],
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
) -> list[Interval]:
    """The UTC intervals in `[start, end)` when `schedule` is open: sorted, merged, clipped.

    An instant is in one of them exactly when `is_open` says so.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    if end <= start:
        return []
    first = start.astimezone(tz).date() - 2 * _ONE_DAY
    last = end.astimezone(tz).date() + 2 * _ONE_DAY
    return merge_intervals(_occurrences(schedule, holidays, tz, first, last), start, end)


def local_day(day: date, tz: ZoneInfo) -> Interval:
    """Local date `day` in `tz` as UTC instants: 23 or 25 hours long on a DST change."""
    return (
        _instant(day, _MIDNIGHT, tz, latest=False),
        _instant(day + _ONE_DAY, _MIDNIGHT, tz, latest=False),
    )


def merge_intervals(
    intervals: Iterable[Interval], start: datetime, end: datetime
) -> list[Interval]:
    """The union of `intervals` within `[start, end)`, in UTC: sorted, disjoint, none touching."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    lo, hi = start.astimezone(UTC), end.astimezone(UTC)
    clipped = sorted((max(s.astimezone(UTC), lo), min(e.astimezone(UTC), hi)) for s, e in intervals)
    merged: list[Interval] = []
    for s, e in clipped:
        if s >= e:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _occurrences(
    schedule: Schedule, holidays: Collection[date], tz: ZoneInfo, first: date, last: date
) -> Iterator[Interval]:
    """Each range that starts on a local date from `first` to `last`, as a UTC interval."""
    day = first
    while day <= last:
        for span in schedule.ranges_on(day, holidays):
            end_day = day + _ONE_DAY if span.crosses_midnight else day
            start = _instant(day, span.start, tz, latest=False)
            end = _instant(end_day, span.end, tz, latest=True)
            if start < end:  # a range wholly inside a spring-forward gap opens nothing
                yield start, end
        day += _ONE_DAY


def _instant(day: date, at: time, tz: ZoneInfo, *, latest: bool) -> datetime:
    """The UTC instant at which the clock in `tz` reaches `at` on `day`.

    A time shown twice (the clock falls back) gives its first instant, or its last when
    `latest`; a time the clock skips (springs forward) gives the instant of the jump.
    """
    wall = datetime.combine(day, at)
    fold0 = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    fold1 = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if fold0 == fold1:
        return fold0
    earlier, later = min(fold0, fold1), max(fold0, fold1)
    if earlier.astimezone(tz).replace(tzinfo=None) == wall:  # shown twice
        return later if latest else earlier
    return _jump(earlier, later, tz)


def _jump(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The instant in `(before, after]` at which the UTC offset of `tz` changes.

    zoneinfo does not expose its transitions, so bisect on whole seconds: tz database
    transitions fall on whole seconds, and a gap is an hour or so (a dozen steps).
    """
    offset = before.astimezone(tz).utcoffset()
    lo, hi = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _ranges(items: Iterable[TimeRange | str]) -> tuple[TimeRange, ...]:
    return tuple(item if isinstance(item, TimeRange) else TimeRange.parse(item) for item in items)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), not {value!r}")
