"""The rules of a member's own booking and of a desk's signed code: pure functions, no
database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from ruche.server.occupancy.checkin import desk_of, desk_reference
from ruche.server.registry.desk_booking import (
    HORIZON,
    BookingRefused,
    PlanSpan,
    Refusal,
    Rights,
    day_span,
    from_now,
    refusal,
)

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 8, 13, 37, 42, tzinfo=UTC)
LYON, PARIS_SITE = 1, 2
FLEX = PlanSpan(NOW - timedelta(days=30), None, frozenset({LYON}))
ON_FLEX = Rights((FLEX,))


def why(starts_at: datetime, ends_at: datetime, *, site: int = LYON,
        rights: Rights = ON_FLEX) -> Refusal | None:  # fmt: skip
    return refusal(rights=rights, site_id=site, zone=PARIS, starts_at=starts_at,
                   ends_at=ends_at, now=NOW)  # fmt: skip


class TestDaySpan:
    """A day, whole or some hours of it, in the site's time, as UTC instants."""

    def test_whole_day_across_a_dst_change(self):
        start, end = day_span(date(2026, 10, 25), PARIS)
        assert end - start == timedelta(hours=25)

    def test_hours(self):
        start, end = day_span(date(2026, 12, 8), PARIS, time(9), time(12, 30))
        assert (start.hour, end.hour, end.minute) == (8, 11, 30)

    @pytest.mark.parametrize(("start", "end"), [(time(12), time(9)), (time(9), None)])
    def test_an_end_not_after_its_start_is_refused(self, start, end):
        with pytest.raises(BookingRefused) as refused:
            day_span(date(2026, 12, 8), PARIS, start, end)
        assert refused.value.refusal is Refusal.ORDER


class TestRefusal:
    """Past, too far, outside the plan: in that order; a free desk is `book`'s to check."""

    def test_a_span_that_has_begun_is_booked_from_this_minute(self):
        start, end = day_span(NOW.date(), PARIS)
        assert from_now(start, NOW) == NOW.replace(second=0, microsecond=0)
        assert why(from_now(start, NOW), end) is None

    def test_an_ended_span_is_past(self):
        assert why(NOW - timedelta(hours=3), NOW - timedelta(hours=1)) is Refusal.PAST
        assert why(NOW - timedelta(hours=1), NOW) is Refusal.PAST

    def test_too_far_ahead(self):
        start = NOW + HORIZON + timedelta(minutes=1)
        assert why(start, start + timedelta(hours=1)) is Refusal.TOO_FAR
        assert why(NOW + HORIZON, NOW + HORIZON + timedelta(hours=1)) is None

    def test_a_plan_must_list_the_site_over_part_of_the_span(self):
        later = NOW + timedelta(days=2)
        assert why(later, later + timedelta(hours=2), site=PARIS_SITE) is Refusal.OUTSIDE_PLAN
        ending = Rights((PlanSpan(NOW - timedelta(days=30), later, frozenset({LYON})),))
        assert why(later, later + timedelta(hours=2), rights=ending) is Refusal.OUTSIDE_PLAN
        assert why(later - timedelta(hours=1), later + timedelta(hours=1), rights=ending) is None
        assert why(NOW, NOW + timedelta(hours=1), rights=Rights()) is Refusal.OUTSIDE_PLAN

    def test_or_a_day_pass_for_the_day_it_starts_at_the_site(self):
        evening = datetime(2026, 12, 8, 22, 30, tzinfo=UTC)  # 23:30 in Paris: still the 8th
        day_pass = Rights(passes=frozenset({(PARIS_SITE, date(2026, 12, 8))}))
        assert why(evening, evening + timedelta(hours=1), site=PARIS_SITE, rights=day_pass) is None
        later = evening + timedelta(hours=1)  # the 9th in Paris
        assert why(later, later + timedelta(hours=1), site=PARIS_SITE,
                   rights=day_pass) is Refusal.OUTSIDE_PLAN  # fmt: skip


class TestDeskReference:
    """A desk's code names it with a tag only the server's key makes."""

    KEY = b"k" * 64

    def test_round_trip(self):
        assert desk_of(self.KEY, desk_reference(self.KEY, 42)) == 42

    def test_another_desk_or_another_key_does_not_verify(self):
        tag = desk_reference(self.KEY, 42).split("-", 1)[1]
        assert desk_of(self.KEY, f"43-{tag}") is None
        assert desk_of(b"x" * 64, desk_reference(self.KEY, 42)) is None

    @pytest.mark.parametrize("mangled", ["42", "42-", "-abc", "042-AAAAAAAAAAAAAAAA", "x" * 60])
    def test_mangled(self, mangled):
        assert desk_of(self.KEY, mangled) is None
