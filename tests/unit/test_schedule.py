"""Weekly access schedules in a site's timezone: presets, holidays, ranges past midnight, DST."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.server.registry.schedule import (
    Interval,
    Schedule,
    TimeRange,
    Weekday,
    is_open,
    local_day,
    merge_intervals,
    open_intervals,
)

PROPERTIES = settings(max_examples=300, deadline=None)

PARIS = ZoneInfo("Europe/Paris")
NO_HOLIDAYS: frozenset[date] = frozenset()
LABOUR_DAY = date(2026, 5, 1)  # a Friday
SPRING_FORWARD = date(2026, 3, 29)  # Sunday: 02:00 CET -> 03:00 CEST at 01:00 UTC
FALL_BACK = date(2026, 10, 25)  # Sunday: 03:00 CEST -> 02:00 CET at 01:00 UTC

OFFICE = Schedule.business_hours()  # Monday to Friday, 08:00-19:00
FRIDAY_NIGHTS = Schedule.weekly({Weekday.FRIDAY: ["22:00-02:00"]})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=UTC)


def paris(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    """A Paris wall-clock time as a UTC instant (`fold=1`: the second of a repeated time)."""
    return datetime(year, month, day, hour, minute, tzinfo=PARIS, fold=fold).astimezone(UTC)


def sunday(*ranges: str) -> Schedule:
    return Schedule.weekly({Weekday.SUNDAY: ranges})


class TestTimeRange:
    """A range parses from HH:MM-HH:MM, holds naive times, and crosses midnight if end <= start."""

    @pytest.mark.parametrize(
        ("text", "start", "end", "crosses"),
        [
            ("08:00-19:00", time(8), time(19), False),
            ("8:30-9:45", time(8, 30), time(9, 45), False),
            ("22:00-02:00", time(22), time(2), True),
            ("00:00-24:00", time(0), time(0), True),
            ("00:00-00:00", time(0), time(0), True),
            (" 07:00 - 07:00 ", time(7), time(7), True),
        ],
    )
    def test_parse(self, text: str, start: time, end: time, crosses: bool) -> None:
        span = TimeRange.parse(text)
        assert (span.start, span.end, span.crosses_midnight) == (start, end, crosses)

    @pytest.mark.parametrize("text", ["", "08:00", "8-19", "25:00-26:00", "08:60-09:00", "a-b"])
    def test_parse_refuses(self, text: str) -> None:
        with pytest.raises(ValueError, match="range"):
            TimeRange.parse(text)

    def test_refuses_aware_times(self) -> None:
        with pytest.raises(ValueError, match="local wall-clock"):
            TimeRange(time(8, tzinfo=UTC), time(19))

    def test_str(self) -> None:
        assert str(TimeRange.parse("22:00-02:00")) == "22:00-02:00"


class TestSchedulePresets:
    """The presets and weekly() build seven days of ranges, Monday first, and a holiday rule."""

    def test_always(self) -> None:
        always = Schedule.always()
        assert always.week == ((TimeRange.all_day(),),) * 7
        assert always.on_holidays == (TimeRange.all_day(),)

    def test_business_hours(self) -> None:
        hours = (TimeRange(time(8), time(19)),)
        assert OFFICE.week == (hours,) * 5 + ((), ())
        assert OFFICE.on_holidays == ()

    def test_business_hours_options(self) -> None:
        shop = Schedule.business_hours(
            opens=time(9), closes=time(13), days={Weekday.SATURDAY}, open_on_holidays=True
        )
        hours = (TimeRange(time(9), time(13)),)
        assert shop.week == ((),) * 5 + (hours, ())
        assert shop.on_holidays == hours

    def test_weekly(self) -> None:
        night = Schedule.weekly(
            {Weekday.MONDAY: ["08:00-12:00", TimeRange(time(14), time(18))]},
            on_holidays=["10:00-12:00"],
        )
        assert night.week[0] == (TimeRange.parse("08:00-12:00"), TimeRange.parse("14:00-18:00"))
        assert night.week[1:] == ((),) * 6
        assert night.on_holidays == (TimeRange.parse("10:00-12:00"),)

    def test_refuses_a_week_that_is_not_seven_days(self) -> None:
        with pytest.raises(ValueError, match="7 days"):
            Schedule(week=((),) * 6)

    def test_ranges_on_a_holiday(self) -> None:
        assert OFFICE.ranges_on(LABOUR_DAY, {LABOUR_DAY}) == ()
        assert OFFICE.ranges_on(LABOUR_DAY, NO_HOLIDAYS) == (TimeRange.parse("08:00-19:00"),)


class TestIsOpen:
    """is_open says whether the site's clock is in a range of the right day, holidays counted."""

    @pytest.mark.parametrize(
        ("schedule", "holidays", "instant", "expected"),
        [
            pytest.param(
                OFFICE, NO_HOLIDAYS, paris(2026, 3, 25, 7, 59), False, id="before-opening"
            ),
            pytest.param(OFFICE, NO_HOLIDAYS, paris(2026, 3, 25, 8, 0), True, id="at-opening"),
            pytest.param(
                OFFICE, NO_HOLIDAYS, paris(2026, 3, 25, 18, 59), True, id="before-closing"
            ),
            pytest.param(OFFICE, NO_HOLIDAYS, paris(2026, 3, 25, 19, 0), False, id="at-closing"),
            pytest.param(OFFICE, NO_HOLIDAYS, paris(2026, 3, 28, 10, 0), False, id="saturday"),
            pytest.param(OFFICE, NO_HOLIDAYS, paris(2026, 5, 1, 10, 0), True, id="not-a-holiday"),
            pytest.param(OFFICE, {LABOUR_DAY}, paris(2026, 5, 1, 10, 0), False, id="holiday"),
            pytest.param(
                OFFICE, {LABOUR_DAY}, paris(2026, 4, 30, 10, 0), True, id="eve-of-holiday"
            ),
            pytest.param(
                Schedule.business_hours(open_on_holidays=True),
                {LABOUR_DAY},
                paris(2026, 5, 1, 10, 0),
                True,
                id="open-on-holidays",
            ),
            pytest.param(
                Schedule.weekly({}, on_holidays=["10:00-12:00"]),
                {date(2026, 5, 2)},
                paris(2026, 5, 2, 11, 0),
                True,
                id="holiday-hours-in",
            ),
            pytest.param(
                Schedule.weekly({}, on_holidays=["10:00-12:00"]),
                {date(2026, 5, 2)},
                paris(2026, 5, 2, 12, 0),
                False,
                id="holiday-hours-out",
            ),
            pytest.param(
                Schedule.always(), {LABOUR_DAY}, paris(2026, 5, 1, 3, 0), True, id="24/7-holiday"
            ),
            pytest.param(
                Schedule.always(), NO_HOLIDAYS, paris(2026, 3, 28, 0, 0), True, id="24/7-midnight"
            ),
            pytest.param(
                FRIDAY_NIGHTS, NO_HOLIDAYS, paris(2026, 3, 27, 21, 59), False, id="night-before"
            ),
            pytest.param(
                FRIDAY_NIGHTS, NO_HOLIDAYS, paris(2026, 3, 27, 22, 0), True, id="night-start"
            ),
            pytest.param(
                FRIDAY_NIGHTS, NO_HOLIDAYS, paris(2026, 3, 28, 0, 0), True, id="night-midnight"
            ),
            pytest.param(
                FRIDAY_NIGHTS, NO_HOLIDAYS, paris(2026, 3, 28, 1, 59), True, id="night-late"
            ),
            pytest.param(
                FRIDAY_NIGHTS, NO_HOLIDAYS, paris(2026, 3, 28, 2, 0), False, id="night-end"
            ),
            pytest.param(
                FRIDAY_NIGHTS, NO_HOLIDAYS, paris(2026, 3, 29, 1, 0), False, id="no-sat-night"
            ),
            pytest.param(
                FRIDAY_NIGHTS,
                {date(2026, 5, 2)},
                paris(2026, 5, 2, 1, 0),
                True,
                id="night-into-holiday",
            ),
            pytest.param(
                FRIDAY_NIGHTS, {LABOUR_DAY}, paris(2026, 5, 1, 23, 0), False, id="holiday-night"
            ),
            pytest.param(
                FRIDAY_NIGHTS,
                {LABOUR_DAY},
                paris(2026, 5, 2, 1, 0),
                False,
                id="after-holiday-night",
            ),
            pytest.param(
                Schedule.weekly({}), NO_HOLIDAYS, paris(2026, 3, 25, 12), False, id="never"
            ),
        ],
    )
    def test_table(
        self, schedule: Schedule, holidays: frozenset[date], instant: datetime, expected: bool
    ) -> None:
        assert is_open(schedule, holidays, PARIS, instant) is expected

    def test_any_timezone_of_the_instant(self) -> None:
        instant = paris(2026, 3, 25, 8, 0)
        tokyo = instant.astimezone(ZoneInfo("Asia/Tokyo"))
        assert is_open(OFFICE, NO_HOLIDAYS, PARIS, tokyo)
        assert not is_open(OFFICE, NO_HOLIDAYS, PARIS, tokyo - timedelta(microseconds=1))

    def test_refuses_a_naive_instant(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            is_open(OFFICE, NO_HOLIDAYS, PARIS, datetime(2026, 3, 25, 10))  # noqa: DTZ001


class TestOpenIntervals:
    """open_intervals gives the open UTC intervals within a range: sorted, merged, clipped."""

    def test_a_week_of_business_hours(self) -> None:
        week = open_intervals(OFFICE, {LABOUR_DAY}, PARIS, paris(2026, 4, 27), paris(2026, 5, 4))
        assert week == [
            (paris(2026, 4, day, 8), paris(2026, 4, day, 19)) for day in (27, 28, 29, 30)
        ]

    def test_intervals_are_in_utc(self) -> None:
        start = datetime(2026, 3, 25, tzinfo=PARIS)
        [(opens, closes)] = open_intervals(
            OFFICE, NO_HOLIDAYS, PARIS, start, start + timedelta(days=1)
        )
        assert opens.tzinfo is UTC
        assert closes.tzinfo is UTC
        assert (opens, closes) == (utc(2026, 3, 25, 7), utc(2026, 3, 25, 18))

    def test_clipped_to_the_range(self) -> None:
        start, end = paris(2026, 3, 28, 1), paris(2026, 3, 28, 23)
        nights = open_intervals(FRIDAY_NIGHTS, NO_HOLIDAYS, PARIS, start, end)
        assert nights == [(start, paris(2026, 3, 28, 2))]

    def test_touching_ranges_merge(self) -> None:
        split = Schedule.weekly({Weekday.WEDNESDAY: ["08:00-12:00", "12:00-14:00", "13:00-15:00"]})
        day = open_intervals(split, NO_HOLIDAYS, PARIS, paris(2026, 3, 25), paris(2026, 3, 26))
        assert day == [(paris(2026, 3, 25, 8), paris(2026, 3, 25, 15))]

    def test_a_night_range_joins_the_next_day(self) -> None:
        late = Schedule.weekly({Weekday.FRIDAY: ["18:00-02:00"], Weekday.SATURDAY: ["02:00-04:00"]})
        nights = open_intervals(late, NO_HOLIDAYS, PARIS, paris(2026, 3, 27), paris(2026, 3, 29))
        assert nights == [(paris(2026, 3, 27, 18), paris(2026, 3, 28, 4))]

    @pytest.mark.parametrize("hours", [0, -1])
    def test_empty_range(self, hours: int) -> None:
        start = paris(2026, 3, 25, 10)
        assert (
            open_intervals(OFFICE, NO_HOLIDAYS, PARIS, start, start + timedelta(hours=hours)) == []
        )

    def test_refuses_naive_bounds(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            open_intervals(OFFICE, NO_HOLIDAYS, PARIS, utc(2026, 3, 25), datetime(2026, 3, 26))  # noqa: DTZ001


class TestMergeIntervals:
    """merge_intervals unions intervals within bounds into sorted, disjoint, non-touching ones."""

    @pytest.mark.parametrize(
        ("intervals", "expected"),
        [
            pytest.param([], [], id="none"),
            pytest.param([(2, 4), (0, 1)], [(0, 1), (2, 4)], id="sorted"),
            pytest.param([(0, 2), (2, 3)], [(0, 3)], id="touching"),
            pytest.param([(0, 5), (1, 2)], [(0, 5)], id="nested"),
            pytest.param([(-5, 1), (9, 20)], [(0, 1), (9, 10)], id="clipped"),
            pytest.param([(3, 3), (11, 12), (-2, -1)], [], id="empty-or-outside"),
        ],
    )
    def test_table(self, intervals: list[tuple[int, int]], expected: list[tuple[int, int]]) -> None:
        base = utc(2026, 1, 1)

        def at(hours: int) -> datetime:
            return base + timedelta(hours=hours)

        merged = merge_intervals([(at(s), at(e)) for s, e in intervals], at(0), at(10))
        assert merged == [(at(s), at(e)) for s, e in expected]


class TestLocalDay:
    """A local day runs from one local midnight to the next: 23 or 25 hours on a DST change."""

    @pytest.mark.parametrize(
        ("day", "start", "hours"),
        [
            pytest.param(date(2026, 3, 28), utc(2026, 3, 27, 23), 24, id="winter"),
            pytest.param(SPRING_FORWARD, utc(2026, 3, 28, 23), 23, id="spring-forward"),
            pytest.param(date(2026, 3, 30), utc(2026, 3, 29, 22), 24, id="summer"),
            pytest.param(FALL_BACK, utc(2026, 10, 24, 22), 25, id="fall-back"),
        ],
    )
    def test_paris(self, day: date, start: datetime, hours: int) -> None:
        assert local_day(day, PARIS) == (start, start + timedelta(hours=hours))

    def test_midnight_skipped_by_the_clock(self) -> None:
        # Santiago springs forward at midnight: 2026-09-06 starts at 01:00 local.
        santiago = ZoneInfo("America/Santiago")
        start, _ = local_day(date(2026, 9, 6), santiago)
        _, previous_end = local_day(date(2026, 9, 5), santiago)
        assert start == previous_end == utc(2026, 9, 6, 4)
        assert start.astimezone(santiago).time() == time(1)


class TestDaylightSaving:
    """Across Paris DST changes a range opens the first time the clock reaches its start and
    closes the last time it reaches its end; a skipped time is reached at the jump."""

    @pytest.mark.parametrize(
        ("schedule", "day", "expected"),
        [
            # 2026-03-29: the clock goes from 01:59:59 CET (00:59:59 UTC) to 03:00 CEST.
            pytest.param(
                sunday("01:00-02:30"),
                SPRING_FORWARD,
                [(utc(2026, 3, 29, 0), utc(2026, 3, 29, 1))],
                id="spring-ends-in-gap",
            ),
            pytest.param(
                sunday("02:30-04:00"),
                SPRING_FORWARD,
                [(utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))],
                id="spring-starts-in-gap",
            ),
            pytest.param(sunday("02:15-02:45"), SPRING_FORWARD, [], id="spring-inside-gap"),
            pytest.param(
                sunday("01:30-03:30"),
                SPRING_FORWARD,
                [(utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30))],
                id="spring-across-gap",
            ),
            pytest.param(
                sunday("00:00-00:00"),
                SPRING_FORWARD,
                [(utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))],
                id="spring-whole-day",
            ),
            # 2026-10-25: the clock goes from 02:59:59 CEST (00:59:59 UTC) back to 02:00 CET.
            pytest.param(
                sunday("01:00-02:30"),
                FALL_BACK,
                [(utc(2026, 10, 24, 23), utc(2026, 10, 25, 1, 30))],
                id="fall-ends-in-repeat",
            ),
            pytest.param(
                sunday("02:30-04:00"),
                FALL_BACK,
                [(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3))],
                id="fall-starts-in-repeat",
            ),
            pytest.param(
                sunday("02:15-02:45"),
                FALL_BACK,
                [(utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 1, 45))],
                id="fall-inside-repeat",
            ),
            pytest.param(
                sunday("00:00-00:00"),
                FALL_BACK,
                [(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))],
                id="fall-whole-day",
            ),
            pytest.param(
                Schedule.business_hours(days=set(Weekday)),
                SPRING_FORWARD,
                [(utc(2026, 3, 29, 6), utc(2026, 3, 29, 17))],
                id="spring-business-hours",
            ),
            pytest.param(
                Schedule.business_hours(days=set(Weekday)),
                FALL_BACK,
                [(utc(2026, 10, 25, 7), utc(2026, 10, 25, 18))],
                id="fall-business-hours",
            ),
        ],
    )
    def test_ranges_on_the_day_of_the_change(
        self, schedule: Schedule, day: date, expected: list[Interval]
    ) -> None:
        start, end = local_day(day, PARIS)
        assert open_intervals(schedule, NO_HOLIDAYS, PARIS, start, end) == expected

    @pytest.mark.parametrize(
        ("day", "expected"),
        [
            pytest.param(
                date(2026, 3, 28), (utc(2026, 3, 28, 21), utc(2026, 3, 29, 4)), id="spring-7-hours"
            ),
            pytest.param(
                date(2026, 10, 24), (utc(2026, 10, 24, 20), utc(2026, 10, 25, 5)), id="fall-9-hours"
            ),
        ],
    )
    def test_night_range_across_the_change(self, day: date, expected: Interval) -> None:
        night = Schedule.weekly({Weekday.SATURDAY: ["22:00-06:00"]})
        start = datetime.combine(day, time(0), tzinfo=UTC)
        assert open_intervals(night, NO_HOLIDAYS, PARIS, start, start + timedelta(days=2)) == [
            expected
        ]

    @pytest.mark.parametrize(
        ("friday", "friday_opens", "monday_opens"),
        [
            pytest.param(
                date(2026, 3, 27),
                utc(2026, 3, 27, 7),
                utc(2026, 3, 30, 6),
                id="spring",
            ),
            pytest.param(
                date(2026, 10, 23),
                utc(2026, 10, 23, 6),
                utc(2026, 10, 26, 7),
                id="fall",
            ),
        ],
    )
    def test_business_hours_keep_local_time(
        self, friday: date, friday_opens: datetime, monday_opens: datetime
    ) -> None:
        start = datetime.combine(friday, time(0), tzinfo=UTC)
        opens = [
            s
            for s, _ in open_intervals(OFFICE, NO_HOLIDAYS, PARIS, start, start + timedelta(days=4))
        ]
        assert opens == [friday_opens, monday_opens]
        assert not is_open(OFFICE, NO_HOLIDAYS, PARIS, monday_opens - timedelta(seconds=1))
        assert is_open(OFFICE, NO_HOLIDAYS, PARIS, monday_opens)

    @pytest.mark.parametrize(
        "instant",
        [
            pytest.param(utc(2026, 3, 29, 0, 59, s=59), id="spring-before-jump"),
            pytest.param(utc(2026, 3, 29, 1), id="spring-at-jump"),
            pytest.param(paris(2026, 10, 25, 2, 30, fold=0), id="fall-first-0230"),
            pytest.param(paris(2026, 10, 25, 2, 30, fold=1), id="fall-second-0230"),
        ],
    )
    def test_24_7_stays_open(self, instant: datetime) -> None:
        assert is_open(Schedule.always(), NO_HOLIDAYS, PARIS, instant)
        start, end = instant - timedelta(days=3), instant + timedelta(days=3)
        assert open_intervals(Schedule.always(), NO_HOLIDAYS, PARIS, start, end) == [(start, end)]

    @pytest.mark.parametrize(
        ("instant", "expected"),
        [
            pytest.param(utc(2026, 3, 29, 0, 59, s=59), False, id="spring-before-jump"),
            pytest.param(utc(2026, 3, 29, 1), True, id="spring-at-jump"),
            pytest.param(utc(2026, 3, 29, 1, 59, s=59), True, id="spring-last-second"),
            pytest.param(utc(2026, 3, 29, 2), False, id="spring-04:00"),
        ],
    )
    def test_range_opening_in_the_gap(self, instant: datetime, expected: bool) -> None:
        assert is_open(sunday("02:30-04:00"), NO_HOLIDAYS, PARIS, instant) is expected

    @pytest.mark.parametrize(
        ("instant", "expected"),
        [
            pytest.param(paris(2026, 10, 25, 2, 29, fold=0), False, id="first-0229"),
            pytest.param(paris(2026, 10, 25, 2, 30, fold=0), True, id="first-0230"),
            pytest.param(paris(2026, 10, 25, 2, 29, fold=1), True, id="second-0229"),
            pytest.param(paris(2026, 10, 25, 3, 59), True, id="0359"),
            pytest.param(paris(2026, 10, 25, 4, 0), False, id="0400"),
        ],
    )
    def test_range_opening_at_a_repeated_time(self, instant: datetime, expected: bool) -> None:
        assert is_open(sunday("02:30-04:00"), NO_HOLIDAYS, PARIS, instant) is expected


# --- properties ------------------------------------------------------------------------

ZONES = [
    ZoneInfo(name)
    for name in (
        "Europe/Paris",
        "America/New_York",
        "America/Santiago",  # changes at midnight: local midnight may not exist
        "Australia/Lord_Howe",  # changes by 30 minutes
        "Asia/Kolkata",  # no DST
        "UTC",
    )
]
CHANGES = [
    utc(2026, 3, 8, 7),  # New York
    utc(2026, 3, 29, 1),  # Paris
    utc(2026, 4, 4, 15),  # Lord Howe
    utc(2026, 4, 5, 3),  # Santiago
    utc(2026, 9, 6, 4),  # Santiago
    utc(2026, 10, 3, 15, 30),  # Lord Howe
    utc(2026, 10, 25, 1),  # Paris
    utc(2026, 11, 1, 6),  # New York
]

clock_times = st.builds(
    time,
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]) | st.integers(0, 59),
)
time_ranges = st.builds(TimeRange, clock_times, clock_times)
schedules = st.builds(
    Schedule,
    week=st.tuples(*[st.lists(time_ranges, max_size=3).map(tuple)] * 7),
    on_holidays=st.lists(time_ranges, max_size=2).map(tuple),
)
holiday_sets = st.frozensets(
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)), max_size=40
)
# Instants anywhere in 2026, and instants within a day of a DST change.
instants = st.datetimes(
    min_value=datetime(2026, 1, 3),  # noqa: DTZ001 (bounds are naive; the instants are UTC)
    max_value=datetime(2026, 12, 28),  # noqa: DTZ001
    timezones=st.just(UTC),
) | st.builds(
    lambda change, seconds: change + timedelta(seconds=seconds),
    st.sampled_from(CHANGES),
    st.integers(-86_400, 86_400),
)


def wall_clock_open(
    schedule: Schedule, holidays: frozenset[date], tz: ZoneInfo, instant: datetime
) -> bool | None:
    """An oracle: is the clock's reading in a range of its day? None for a reading shown twice."""
    local = instant.astimezone(tz)
    other = local.replace(fold=1 - local.fold).astimezone(UTC)
    if other != instant:
        return None
    day, now = local.date(), local.time().replace(fold=0)
    today = any(
        span.start <= now and (span.crosses_midnight or now < span.end)
        for span in schedule.ranges_on(day, holidays)
    )
    yesterday = any(
        span.crosses_midnight and now < span.end
        for span in schedule.ranges_on(day - timedelta(days=1), holidays)
    )
    return today or yesterday


class TestScheduleProperties:
    """For any schedule, zone and instant, is_open, open_intervals and the wall clock agree."""

    @PROPERTIES
    @given(schedules, holiday_sets, st.sampled_from(ZONES), instants, st.integers(1, 72))
    def test_is_open_iff_in_open_intervals(
        self,
        schedule: Schedule,
        holidays: frozenset[date],
        tz: ZoneInfo,
        instant: datetime,
        hours: int,
    ) -> None:
        start, end = instant - timedelta(hours=hours), instant + timedelta(hours=hours)
        intervals = open_intervals(schedule, holidays, tz, start, end)
        inside = any(s <= instant < e for s, e in intervals)
        assert is_open(schedule, holidays, tz, instant) is inside

    @PROPERTIES
    @given(schedules, holiday_sets, st.sampled_from(ZONES), instants, st.integers(1, 200))
    def test_intervals_are_sorted_disjoint_and_clipped(
        self,
        schedule: Schedule,
        holidays: frozenset[date],
        tz: ZoneInfo,
        start: datetime,
        hours: int,
    ) -> None:
        end = start + timedelta(hours=hours)
        intervals = open_intervals(schedule, holidays, tz, start, end)
        flat = [t for interval in intervals for t in interval]
        assert flat == sorted(flat)
        assert all(s < e for s, e in intervals)
        assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(intervals))
        assert all(start <= t <= end and t.tzinfo is UTC for t in flat)

    @PROPERTIES
    @given(schedules, holiday_sets, st.sampled_from(ZONES), instants, st.integers(1, 48))
    def test_split_ranges_give_the_same_intervals(
        self,
        schedule: Schedule,
        holidays: frozenset[date],
        tz: ZoneInfo,
        middle: datetime,
        hours: int,
    ) -> None:
        start, end = middle - timedelta(hours=hours), middle + timedelta(hours=hours)
        halves = open_intervals(schedule, holidays, tz, start, middle) + open_intervals(
            schedule, holidays, tz, middle, end
        )
        assert merge_intervals(halves, start, end) == open_intervals(
            schedule, holidays, tz, start, end
        )

    @PROPERTIES
    @given(schedules, holiday_sets, st.sampled_from(ZONES), instants)
    def test_is_open_follows_the_wall_clock(
        self, schedule: Schedule, holidays: frozenset[date], tz: ZoneInfo, instant: datetime
    ) -> None:
        expected = wall_clock_open(schedule, holidays, tz, instant)
        if expected is not None:  # a reading shown twice is covered by the DST tables
            assert is_open(schedule, holidays, tz, instant) is expected
