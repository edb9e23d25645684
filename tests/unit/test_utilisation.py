"""Utilisation per bucket, desk, zone and site: pure, hand-computed, and properties."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.server.errors import Invalid
from ruche.server.occupancy import utilisation as module
from ruche.server.occupancy.utilisation import (
    Bucket,
    DeskBooking,
    DeskPlace,
    DeskTime,
    Figures,
    Level,
    Opening,
    Series,
    VisitTime,
    bucket_bounds,
    check_range,
    utilisation,
)
from ruche.server.registry.schedule import Schedule, Weekday

PARIS = ZoneInfo("Europe/Paris")
OFFICE = Opening(Schedule.business_hours(), PARIS)  # Mon-Fri 08:00-19:00, closed on holidays
ALWAYS = Opening(Schedule.always(), PARIS)
LATER = datetime(2027, 6, 1, tzinfo=UTC)  # well after every case: nothing cut by `now`
MONDAY = date(2026, 11, 23)
SPRING = date(2026, 3, 29)  # Paris springs forward: 02:00 CET -> 03:00 CEST, 23 hours
AUTUMN = date(2026, 10, 25)  # Paris falls back: 03:00 CEST -> 02:00 CET, 25 hours
DESKS = [DeskPlace("d1", "open space"), DeskPlace("d2", "open space"), DeskPlace("d3", "room")]
H = timedelta(hours=1)
M = timedelta(minutes=1)


def local(day: date, hour: int, minute: int = 0, *, fold: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS).replace(fold=fold)


def run(
    *,
    first: date = MONDAY,
    last: date | None = None,
    bucket: Bucket = Bucket.DAY,
    by: Level = Level.SITE,
    sessions: list[DeskTime] | None = None,
    bookings: list[DeskBooking] | None = None,
    visits: list[VisitTime] | None = None,
    opening: Opening = OFFICE,
    desks: list[DeskPlace] | None = None,
    now: datetime = LATER,
) -> list[Series]:
    return utilisation(
        site="lyon",
        desks=DESKS if desks is None else desks,
        sessions=sessions or [],
        bookings=bookings or [],
        visits=visits or [],
        opening=opening,
        first=first,
        last=last or first + timedelta(days=1),
        bucket=bucket,
        by=by,
        now=now,
    )


def site_total(**kwargs: object) -> Figures:
    [series] = run(**kwargs)  # type: ignore[arg-type]
    return series.total


class TestDocstring:
    """The module's example runs as written."""

    def test_doctest(self):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0


class TestBuckets:
    """Buckets follow the site's local clock, across DST changes."""

    def test_spring_forward_has_23_hours(self):
        bounds = bucket_bounds(SPRING, SPRING + timedelta(days=1), Bucket.HOUR, PARIS)
        assert len(bounds) == 23
        starts = [lo.astimezone(PARIS).strftime("%H:%M%z") for lo, _ in bounds]
        assert starts[:4] == ["00:00+0100", "01:00+0100", "03:00+0200", "04:00+0200"]
        assert all(hi - lo == H for lo, hi in bounds)

    def test_fall_back_repeats_an_hour(self):
        bounds = bucket_bounds(AUTUMN, AUTUMN + timedelta(days=1), Bucket.HOUR, PARIS)
        assert len(bounds) == 25
        starts = [lo.astimezone(PARIS).strftime("%H:%M%z") for lo, _ in bounds]
        assert starts[1:5] == ["01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100"]

    def test_days_are_23_or_25_hours(self):
        spring = bucket_bounds(SPRING, SPRING + timedelta(days=1), Bucket.DAY, PARIS)
        autumn = bucket_bounds(AUTUMN, AUTUMN + timedelta(days=1), Bucket.DAY, PARIS)
        assert [hi - lo for lo, hi in spring] == [23 * H]
        assert [hi - lo for lo, hi in autumn] == [25 * H]

    def test_weeks_run_monday_to_monday_cut_to_the_range(self):
        wednesday = date(2026, 11, 18)
        bounds = bucket_bounds(wednesday, wednesday + timedelta(days=14), Bucket.WEEK, PARIS)
        days = [(lo.astimezone(PARIS).date(), hi.astimezone(PARIS).date()) for lo, hi in bounds]
        assert days == [
            (date(2026, 11, 18), date(2026, 11, 23)),
            (date(2026, 11, 23), date(2026, 11, 30)),
            (date(2026, 11, 30), date(2026, 12, 2)),
        ]


class TestRange:
    """A range that is empty, or too long for its buckets, is refused saying why."""

    def test_empty(self):
        with pytest.raises(Invalid, match="must be before"):
            check_range(MONDAY, MONDAY, Bucket.DAY)

    def test_too_long_for_hours(self):
        check_range(MONDAY, MONDAY + timedelta(days=31), Bucket.HOUR)
        with pytest.raises(Invalid, match="too long a range for hour buckets"):
            run(last=MONDAY + timedelta(days=32), bucket=Bucket.HOUR)


class TestOpeningAndOccupancy:
    """Occupied time counts within opening hours; the rest is after hours."""

    def test_business_day(self):
        sessions = [DeskTime("d1", local(MONDAY, 9), local(MONDAY, 11, 30))]
        total = site_total(sessions=sessions)
        assert total.opening == 11 * H
        assert total.capacity == 33 * H
        assert total.occupied == 2.5 * H
        assert total.occupied_share == pytest.approx(2.5 / 33)
        assert total.after_hours == timedelta(0)

    def test_session_outside_opening_hours(self):
        sessions = [DeskTime("d1", local(MONDAY, 19, 30), local(MONDAY, 20, 30))]
        total = site_total(sessions=sessions)
        assert (total.occupied, total.after_hours, total.occupied_share) == (timedelta(0), H, 0.0)
        assert total.peak_desks == 1, "the peak counts any time of the bucket"

    def test_session_across_midnight(self):
        tuesday = MONDAY + timedelta(days=1)
        sessions = [DeskTime("d1", local(MONDAY, 17), local(tuesday, 9))]
        [series] = run(sessions=sessions, last=MONDAY + timedelta(days=2))
        monday, tue = (b.figures for b in series.buckets)
        assert (monday.occupied, monday.after_hours) == (2 * H, 5 * H)
        assert (tue.occupied, tue.after_hours) == (H, 8 * H)
        assert series.total.occupied == 3 * H

    def test_dst_day_in_hours(self):
        # 00:30 CET to 04:00 CEST is 2.5 real hours, over the local hours 00, 01 and 03.
        sessions = [DeskTime("d1", local(SPRING, 0, 30), local(SPRING, 4))]
        [series] = run(
            first=SPRING,
            bucket=Bucket.HOUR,
            by=Level.DESK,
            sessions=sessions,
            opening=ALWAYS,
            desks=DESKS[:1],
        )
        occupied = [b.figures.occupied for b in series.buckets]
        assert occupied[:4] == [30 * M, H, H, timedelta(0)]
        assert series.total.occupied == 2.5 * H
        assert series.total.opening == 23 * H

    def test_fall_back_day_is_25_hours_open(self):
        sessions = [DeskTime("d1", local(AUTUMN, 1, 30), local(AUTUMN, 3))]
        [series] = run(
            first=AUTUMN,
            bucket=Bucket.HOUR,
            by=Level.DESK,
            sessions=sessions,
            opening=ALWAYS,
            desks=DESKS[:1],
        )
        assert series.total.opening == 25 * H
        # 01:30 CEST to 03:00 CET: half of hour 01, both 02:00 hours.
        assert [b.figures.occupied for b in series.buckets[1:5]] == [30 * M, H, H, timedelta(0)]
        assert series.total.occupied == 2.5 * H

    def test_holiday_is_closed(self):
        opening = Opening(Schedule.business_hours(), PARIS, frozenset({MONDAY}))
        sessions = [DeskTime("d1", local(MONDAY, 9), local(MONDAY, 10))]
        total = site_total(sessions=sessions, opening=opening)
        assert (total.opening, total.occupied_share, total.after_hours) == (timedelta(0), None, H)

    def test_custom_hours(self):
        hours = Schedule.weekly({Weekday.MONDAY: ["08:00-12:00", "14:00-18:00"]})
        sessions = [DeskTime("d1", local(MONDAY, 11), local(MONDAY, 15))]
        total = site_total(sessions=sessions, opening=Opening(hours, PARIS))
        assert (total.opening, total.occupied, total.after_hours) == (8 * H, 2 * H, 2 * H)

    def test_an_open_session_counts_up_to_now(self):
        sessions = [DeskTime("d1", local(MONDAY, 9), None)]
        total = site_total(sessions=sessions, now=local(MONDAY, 12))
        assert (total.opening, total.occupied) == (4 * H, 3 * H)

    def test_nothing_after_now(self):
        [series] = run(last=MONDAY + timedelta(days=2), now=local(MONDAY, 10))
        monday, tuesday = (b.figures for b in series.buckets)
        assert monday.opening == 2 * H
        assert (tuesday.opening, tuesday.occupied_share) == (timedelta(0), None)

    def test_unknown_desks_are_left_out(self):
        sessions = [DeskTime("ghost", local(MONDAY, 9), local(MONDAY, 10))]
        assert site_total(sessions=sessions).occupied == timedelta(0)


class TestSuspect:
    """A suspect session is counted apart, never as occupied."""

    def test_suspect_session(self):
        sessions = [
            DeskTime("d1", local(MONDAY, 6), local(MONDAY, 20), suspect=True),
            DeskTime("d2", local(MONDAY, 9), local(MONDAY, 10)),
        ]
        total = site_total(sessions=sessions)
        assert (total.suspect, total.occupied, total.after_hours) == (11 * H, H, timedelta(0))
        assert total.peak_desks == 1


class TestPeaks:
    """Peaks count distinct desks, or people by their visits, at one instant."""

    sessions = (
        DeskTime("d1", local(MONDAY, 9), local(MONDAY, 11)),
        DeskTime("d2", local(MONDAY, 10), local(MONDAY, 12)),
        DeskTime("d3", local(MONDAY, 11), local(MONDAY, 13)),  # touches d1's end: no overlap
        DeskTime("d2", local(MONDAY, 12), local(MONDAY, 12, 30)),  # d2 again, back to back
    )

    def test_site_and_zones(self):
        [site] = run(sessions=list(self.sessions))
        assert site.total.peak_desks == 2
        zones = run(sessions=list(self.sessions), by=Level.ZONE)
        assert [(z.key, z.total.peak_desks, z.total.desks) for z in zones] == [
            ("open space", 2, 2),
            ("room", 1, 1),
        ]
        assert all(z.total.peak_people is None for z in zones)

    def test_per_hour(self):
        [site] = run(sessions=list(self.sessions), bucket=Bucket.HOUR)
        peaks = {b.start.hour: b.figures.peak_desks for b in site.buckets}
        assert [peaks[h] for h in range(8, 14)] == [0, 1, 2, 2, 2, 0]

    def test_people_from_visits(self):
        visits = [
            VisitTime(1, local(MONDAY, 8), local(MONDAY, 12)),
            VisitTime(2, local(MONDAY, 9), local(MONDAY, 10)),
            VisitTime(2, local(MONDAY, 9, 30), local(MONDAY, 11)),  # the same person twice
            VisitTime(3, local(MONDAY, 9, 45), None),
        ]
        total = site_total(visits=visits, now=local(MONDAY, 18))
        assert total.peak_people == 3


class TestBookings:
    """Booked, booked and used, used unbooked; bookings and no-shows by their start."""

    def test_figures(self):
        bookings = [
            DeskBooking("d1", local(MONDAY, 9), local(MONDAY, 13)),
            DeskBooking("d2", local(MONDAY, 9), local(MONDAY, 12), no_show=True),
            DeskBooking("d3", local(MONDAY, 18), local(MONDAY, 21)),  # 1 h within opening
        ]
        sessions = [
            DeskTime("d1", local(MONDAY, 10), local(MONDAY, 14)),  # 3 h booked, 1 h not
            DeskTime("d3", local(MONDAY, 8), local(MONDAY, 9)),  # unbooked
        ]
        total = site_total(sessions=sessions, bookings=bookings)
        assert total.booked == 8 * H
        assert total.booked_used == 3 * H
        assert total.used_unbooked == 2 * H
        assert total.occupied == 5 * H
        assert (total.bookings, total.no_shows) == (3, 1)
        assert total.no_show_rate == pytest.approx(1 / 3)

    def test_no_bookings_no_rate(self):
        assert site_total().no_show_rate is None

    def test_counted_in_the_bucket_they_start(self):
        bookings = [DeskBooking("d1", local(MONDAY, 18), local(MONDAY + timedelta(days=1), 10))]
        [series] = run(bookings=bookings, last=MONDAY + timedelta(days=2))
        assert [b.figures.bookings for b in series.buckets] == [1, 0]
        assert [b.figures.booked for b in series.buckets] == [H, 2 * H]


# --- properties --------------------------------------------------------------------------

SPAN_START = local(date(2026, 10, 23), 0)  # a Friday, two days before Paris falls back
SPAN_MINUTES = 6 * 24 * 60
TIMES = st.integers(min_value=-600, max_value=SPAN_MINUTES + 600).map(
    lambda m: SPAN_START + timedelta(minutes=m)
)
LENGTHS = st.integers(min_value=0, max_value=20 * 60).map(lambda m: timedelta(minutes=m))
DESK_IDS = st.sampled_from(["d1", "d2", "d3"])
SESSIONS = st.lists(
    st.builds(
        lambda desk, start, length, open_, suspect: DeskTime(
            desk, start, None if open_ else start + length, suspect
        ),
        DESK_IDS,
        TIMES,
        LENGTHS,
        st.booleans(),
        st.booleans(),
    ),
    max_size=12,
)
BOOKINGS = st.lists(
    st.builds(
        lambda desk, start, length, no_show: DeskBooking(desk, start, start + length + M, no_show),
        DESK_IDS,
        TIMES,
        LENGTHS,
        st.booleans(),
    ),
    max_size=8,
)
VISITS = st.lists(
    st.builds(
        lambda member, start, length, open_: VisitTime(
            member, start, None if open_ else start + length
        ),
        st.integers(min_value=1, max_value=4),
        TIMES,
        LENGTHS,
        st.booleans(),
    ),
    max_size=8,
)
OPENINGS = st.sampled_from(
    [
        OFFICE,
        ALWAYS,
        Opening(Schedule.weekly({Weekday.SUNDAY: ["01:00-03:30"]}), PARIS),
        Opening(Schedule.business_hours(), PARIS, frozenset({date(2026, 10, 26)})),
    ]
)
DURATIONS = (
    "opening",
    "capacity",
    "occupied",
    "after_hours",
    "suspect",
    "booked",
    "booked_used",
    "used_unbooked",
)


@settings(max_examples=200, deadline=None)
@given(
    sessions=SESSIONS,
    bookings=BOOKINGS,
    visits=VISITS,
    opening=OPENINGS,
    bucket=st.sampled_from(list(Bucket)),
    by=st.sampled_from(list(Level)),
    days=st.integers(min_value=1, max_value=6),
    now=TIMES,
)
def test_figures_hold_together(*, sessions, bookings, visits, opening, bucket, by, days, now):
    """Shares in [0, 1], occupied within capacity, buckets summing to the whole range."""
    first = SPAN_START.date()
    for series in run(
        first=first,
        last=first + timedelta(days=days),
        bucket=bucket,
        by=by,
        sessions=sessions,
        bookings=bookings,
        visits=visits,
        opening=opening,
        now=now,
    ):
        figures = [b.figures for b in series.buckets]
        for f in [*figures, series.total]:
            assert timedelta(0) <= f.occupied <= f.capacity
            assert f.booked_used <= min(f.booked, f.occupied)
            assert f.used_unbooked >= timedelta(0)
            assert f.occupied_share is None or 0.0 <= f.occupied_share <= 1.0
            assert f.no_show_rate is None or 0.0 <= f.no_show_rate <= 1.0
            assert 0 <= f.peak_desks <= f.desks
        for name in DURATIONS:
            total = sum((getattr(f, name) for f in figures), timedelta(0))
            assert total == getattr(series.total, name), name
        assert sum(f.bookings for f in figures) == series.total.bookings
        assert sum(f.no_shows for f in figures) == series.total.no_shows
        assert max(f.peak_desks for f in figures) == series.total.peak_desks
        if series.level is Level.SITE:
            assert max(f.peak_people or 0 for f in figures) == series.total.peak_people
        assert [b.start for b in series.buckets[1:]] == [b.end for b in series.buckets[:-1]]
