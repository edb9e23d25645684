"""Billable usage per local day: merging, grace, midnight, DST and held-back spans."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ruche.server.billing.usage import PresenceSpan, Usage, billable_usage
from ruche.server.errors import Invalid
from ruche.server.occupancy.sessions import AttributedSession, DeskSession, Visit

PARIS = ZoneInfo("Europe/Paris")
GRACE = timedelta(minutes=15)


def paris(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=PARIS)


def usage(
    *spans: PresenceSpan,
    grace: timedelta = GRACE,
    first: date = date(2026, 1, 1),
    last: date = date(2026, 12, 31),
) -> Usage:
    return billable_usage(spans, tz=PARIS, join_gap=grace, first_day=first, last_day=last)


def minutes(result: Usage) -> dict[str, int]:
    return {d.day.isoformat(): d.minutes for d in result.days}


class TestMerging:
    """Overlaps bill once; a gap shorter than the grace is joined and billed."""

    def test_desk_session_inside_a_visit_bills_once(self) -> None:
        result = usage(
            PresenceSpan("visit", paris(11, 3, 9), paris(11, 3, 18)),
            PresenceSpan("desk", paris(11, 3, 9, 30), paris(11, 3, 12)),
        )
        [day] = result.days
        assert day.minutes == 9 * 60
        assert day.spans == ("desk", "visit")
        assert day.first_presence == paris(11, 3, 9).astimezone(UTC)

    def test_coffee_break_joined_by_the_grace(self) -> None:
        spans = (
            PresenceSpan("morning", paris(11, 3, 9), paris(11, 3, 10, 30)),
            PresenceSpan("late-morning", paris(11, 3, 10, 40), paris(11, 3, 12)),
        )
        assert minutes(usage(*spans, grace=timedelta(minutes=15))) == {"2026-11-03": 180}
        # A shorter grace keeps them apart: the ten minutes out are not billed.
        assert minutes(usage(*spans, grace=timedelta(minutes=5))) == {"2026-11-03": 170}
        # A gap exactly as long as the grace is not shorter than it.
        assert minutes(usage(*spans, grace=timedelta(minutes=10))) == {"2026-11-03": 170}

    def test_lunch_is_not_joined(self) -> None:
        result = usage(
            PresenceSpan("am", paris(11, 3, 9), paris(11, 3, 12)),
            PresenceSpan("pm", paris(11, 3, 13), paris(11, 3, 17)),
        )
        assert minutes(result) == {"2026-11-03": 7 * 60}

    def test_duplicates_and_order_do_not_matter(self) -> None:
        a = PresenceSpan("a", paris(11, 3, 9), paris(11, 3, 10))
        b = PresenceSpan("b", paris(11, 3, 9, 30), paris(11, 3, 11))
        assert usage(a, b) == usage(b, a, b, a)

    def test_conflicting_spans_under_one_id_are_refused(self) -> None:
        with pytest.raises(Invalid, match="share the id 'a'"):
            usage(
                PresenceSpan("a", paris(11, 3, 9), paris(11, 3, 10)),
                PresenceSpan("a", paris(11, 3, 9), paris(11, 3, 11)),
            )


class TestMinutes:
    """Minutes are whole, rounded down, per day; a day needs one to count as used."""

    def test_seconds_round_down(self) -> None:
        [day] = usage(PresenceSpan("a", paris(11, 3, 9), paris(11, 3, 9, 1, 59))).days
        assert (day.presence, day.minutes, day.used) == (timedelta(seconds=119), 1, True)

    def test_under_a_minute_is_not_a_used_day(self) -> None:
        [day] = usage(PresenceSpan("a", paris(11, 3, 9), paris(11, 3, 9, 0, 59))).days
        assert (day.minutes, day.used) == (0, False)

    def test_zero_length_span_bills_nothing(self) -> None:
        assert usage(PresenceSpan("a", paris(11, 3, 9), paris(11, 3, 9))).days == ()


class TestLocalDays:
    """Time is cut at the site's local midnights; DST days hold 23 or 25 hours."""

    def test_session_across_midnight(self) -> None:
        result = usage(PresenceSpan("night", paris(11, 20, 22), paris(11, 21, 2)))
        assert minutes(result) == {"2026-11-20": 120, "2026-11-21": 120}
        assert [d.spans for d in result.days] == [("night",), ("night",)]
        assert result.days[1].first_presence == paris(11, 21, 0).astimezone(UTC)

    def test_spring_forward_weekend(self) -> None:
        # 2026-03-29 in Paris: 02:00 becomes 03:00, the day holds 23 hours.
        result = usage(PresenceSpan("weekend", paris(3, 28, 22), paris(3, 30, 2)))
        assert minutes(result) == {"2026-03-28": 120, "2026-03-29": 23 * 60, "2026-03-30": 120}

    def test_fall_back_weekend(self) -> None:
        # 2026-10-25 in Paris: 03:00 becomes 02:00 again, the day holds 25 hours.
        result = usage(PresenceSpan("weekend", paris(10, 24, 22), paris(10, 26, 2)))
        assert minutes(result) == {"2026-10-24": 120, "2026-10-25": 25 * 60, "2026-10-26": 120}

    def test_night_across_the_fall_back(self) -> None:
        # 22:00 to 06:00 local across the change is nine hours, not eight.
        result = usage(PresenceSpan("night", paris(10, 24, 22), paris(10, 25, 6)))
        assert minutes(result) == {"2026-10-24": 120, "2026-10-25": 7 * 60}

    def test_days_outside_the_range_are_left_out(self) -> None:
        result = usage(
            PresenceSpan("night", paris(10, 31, 22), paris(11, 1, 2)),
            first=date(2026, 11, 1),
            last=date(2026, 11, 30),
        )
        assert minutes(result) == {"2026-11-01": 120}


class TestHeldBack:
    """Suspect spans and open ones are listed for review, not billed."""

    def test_stuck_desk_session_is_held_back(self) -> None:
        stuck = DeskSession(
            ("lyon", "pi-1", "desk-4"),
            paris(11, 3, 8).astimezone(UTC),
            paris(11, 4, 9).astimezone(UTC),
            opened_seq=41,
            closed_by="vacant",
            suspect=True,
            reason="stuck_occupied",
        )
        span = PresenceSpan.of_session(AttributedSession(stuck, 7, "badge", badge_seq=40))
        visit = PresenceSpan("visit", paris(11, 3, 9), paris(11, 3, 17))
        result = usage(span, visit)
        assert minutes(result) == {"2026-11-03": 8 * 60}
        assert result.days[0].spans == ("visit",)
        [held] = result.held_back
        assert (held.id, held.reason) == ("desk:lyon/pi-1/desk-4#41", "stuck_occupied")
        assert held.days == (date(2026, 11, 3), date(2026, 11, 4))

    def test_open_span_is_held_back_until_it_closes(self) -> None:
        result = usage(PresenceSpan("now", paris(11, 3, 9), None))
        assert result.days == ()
        assert [(h.id, h.reason, h.days) for h in result.held_back] == [
            ("now", "open", (date(2026, 11, 3),))
        ]

    def test_suspect_without_reason(self) -> None:
        result = usage(PresenceSpan("odd", paris(11, 3, 9), paris(11, 3, 10), suspect=True))
        assert [h.reason for h in result.held_back] == ["suspect"]

    def test_held_back_outside_the_range_is_left_out(self) -> None:
        span = PresenceSpan("odd", paris(10, 3, 9), paris(10, 3, 10), suspect=True)
        assert usage(span, first=date(2026, 11, 1)).held_back == ()


class TestSpanIds:
    """Visits and desk sessions get stable ids from their first event."""

    def test_visit_ids(self) -> None:
        start, end = paris(11, 3, 9).astimezone(UTC), paris(11, 3, 17).astimezone(UTC)
        visit = Visit("lyon", 7, start, end, "exit", (("door-pi", 12), ("door-pi", 13)))
        span = PresenceSpan.of_visit(visit)
        assert (span.id, span.start, span.end, span.suspect) == (
            "visit:lyon/door-pi#12",
            start,
            end,
            False,
        )
        bare = PresenceSpan.of_visit(Visit("lyon", 7, start, None, "open"))
        assert bare.id == "visit:lyon/7@2026-11-03T08:00:00+00:00"
        assert bare.end is None


class TestBadInput:
    """Bad values are refused with a message that says what is wrong."""

    def test_naive_datetime(self) -> None:
        with pytest.raises(Invalid, match="timezone-aware"):
            PresenceSpan("a", datetime(2026, 11, 3, 9), None)  # noqa: DTZ001

    def test_ends_before_it_starts(self) -> None:
        with pytest.raises(Invalid, match="before it starts"):
            PresenceSpan("a", paris(11, 3, 10), paris(11, 3, 9))

    def test_empty_id(self) -> None:
        with pytest.raises(Invalid, match="id"):
            PresenceSpan("", paris(11, 3, 9), None)

    def test_negative_grace(self) -> None:
        with pytest.raises(Invalid, match="join_gap"):
            usage(grace=timedelta(minutes=-1))

    def test_range_backwards(self) -> None:
        with pytest.raises(Invalid, match="before first_day"):
            usage(first=date(2026, 12, 1), last=date(2026, 11, 1))

    def test_timezone_must_be_zoneinfo(self) -> None:
        with pytest.raises(Invalid, match="ZoneInfo"):
            billable_usage(
                [],
                tz="Europe/Paris",  # type: ignore[arg-type]
                join_gap=GRACE,
                first_day=date(2026, 11, 1),
                last_day=date(2026, 11, 30),
            )

    def test_not_a_span(self) -> None:
        with pytest.raises(Invalid, match="PresenceSpan"):
            billable_usage(
                [(paris(11, 3, 9), paris(11, 3, 10))],  # type: ignore[list-item]
                tz=PARIS,
                join_gap=GRACE,
                first_day=date(2026, 11, 1),
                last_day=date(2026, 11, 30),
            )
