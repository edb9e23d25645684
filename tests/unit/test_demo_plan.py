"""The demo's site and day (`ruche.sim.demo.plan`): pure values, and when bookings are made."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruche.server.billing.pricing import DayPass, MonthlyPlan, PayAsYouGo
from ruche.server.billing.terms import terms_of
from ruche.sim.day import PlannedBooking
from ruche.sim.demo.plan import (
    MAX_DESKS,
    MIN_DESKS,
    PLANS,
    books_ahead,
    cut,
    deadline,
    demo_day,
    demo_site,
    split_bookings,
)

DAY = date(2026, 11, 24)
BEGIN = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)  # 07:30 in Paris


class TestSite:
    @pytest.mark.parametrize("desks", [MIN_DESKS, 40, MAX_DESKS])
    def test_desks_members_and_plans(self, desks: int):
        site = demo_site(desks)
        assert len(site.desks) == len(site.layout.desks) == desks
        assert site.zones == ("Open space", "Window row", "Quiet room")
        assert len({(d.zone, d.x, d.y) for d in site.desks}) == desks, "no two desks overlap"
        assert {d.door for d in site.layout.doors} == {"front", "back"}
        revoked = [m for m in site.members if m.member.revoked]
        assert len(revoked) == 1
        assert len(site.members) - 1 == desks * 3 // 4
        assert len({m.member.key for m in site.members}) == len(site.members)
        assert len({m.member.uid for m in site.members}) == len(site.members)
        assert len({m.name for m in site.members}) == len(site.members)
        plans = Counter(m.plan for m in site.members if not m.member.revoked)
        assert set(plans) == {p.name for p in PLANS}, "every kind of plan has members"

    @pytest.mark.parametrize("desks", [MIN_DESKS - 1, MAX_DESKS + 1])
    def test_desks_out_of_range(self, desks: int):
        with pytest.raises(ValueError, match=f"{MIN_DESKS} to {MAX_DESKS} desks"):
            demo_site(desks)

    def test_prices_are_valid_terms_of_each_kind(self):
        prices = demo_site().prices(DAY)
        assert set(prices) == {p.name for p in PLANS}
        kinds = {name: type(terms_of(v[0].terms)) for name, v in prices.items()}
        assert kinds == {"Resident": MonthlyPlan, "Part-time": MonthlyPlan,
                         "Pay as you go": PayAsYouGo, "Day pass": DayPass}  # fmt: skip
        starts = [v.valid_from for v in prices["Resident"]]
        assert starts == [date(2026, 10, 1), date(2026, 11, 16)], "a price rise mid-month"
        assert all(v[0].valid_from == date(2026, 10, 1) for v in prices.values())


class TestDay:
    def test_from_opening_to_closing(self):
        site = demo_site()
        day = demo_day(site, DAY, seed=1)
        assert day.begin == BEGIN
        assert day.end == datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
        times = [e.payload.ts for events in day.plan.events.values() for e in events]
        assert max(times) < day.end
        assert min(times) < day.begin, "the night's heartbeats"
        assert day.plan == demo_day(site, DAY, seed=1).plan
        roles = Counter(day.plan.roles.values())
        assert roles["refused"] == 1
        assert roles["no_show"] == 3
        assert roles["walk_in"] == 2

    def test_cut_keeps_each_agents_first_events_and_their_taps(self):
        plan = demo_day(demo_site(), DAY, seed=1).plan
        noon = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
        morning = cut(plan, noon)
        for agent, events in morning.events.items():
            assert events == tuple(e for e in plan.events[agent] if e.payload.ts < noon)
        kept = {(a, e.payload.seq) for a, events in morning.events.items() for e in events}
        assert {(t.agent, t.seq) for t in morning.taps} == kept & {
            (t.agent, t.seq) for t in plan.taps
        }
        assert 0 < morning.total < plan.total


def booking(start: datetime, hours: float = 8) -> PlannedBooking:
    return PlannedBooking("m", "a", "d", start, start + timedelta(hours=hours), no_show=False)


class TestBooksAhead:
    """A booking made ahead is reached by the simulated clock before the real clock's
    no-show judgement; the others are made once the day gets past them."""

    def test_before_opening_every_booking_is_made_ahead(self):
        early = BEGIN - timedelta(hours=1)
        b = booking(BEGIN + timedelta(hours=2))
        assert books_ahead(b, begin=BEGIN, started=early, speed=120, grace_minutes=15)

    def test_a_booking_the_real_clock_passed_waits(self):
        late = BEGIN + timedelta(hours=8)
        b = booking(BEGIN + timedelta(hours=2))
        assert not books_ahead(b, begin=BEGIN, started=late, speed=120, grace_minutes=15)

    def test_later_the_same_day_it_depends_on_the_speed(self):
        started = BEGIN + timedelta(hours=1)
        b = booking(BEGIN + timedelta(hours=2))  # deadline: 2 h 15 after the opening
        # At 120x the simulated clock gets there in about a minute, well before the real
        # one (in 1 h 15); at 1.5x it takes an hour and a half.
        assert books_ahead(b, begin=BEGIN, started=started, speed=120, grace_minutes=15)
        assert not books_ahead(b, begin=BEGIN, started=started, speed=1.5, grace_minutes=15)

    def test_deadline_is_the_end_when_sooner(self):
        b = booking(BEGIN, hours=0.1)
        assert deadline(b, 15) == b.end
        assert deadline(booking(BEGIN), 15) == BEGIN + timedelta(minutes=15)

    @given(
        offset_s=st.integers(-6 * 3600, 16 * 3600),
        start_s=st.integers(0, 12 * 3600),
        speed=st.floats(1, 3600),
    )
    def test_made_ahead_means_played_first(self, offset_s: int, start_s: int, speed: float):
        started = BEGIN + timedelta(seconds=offset_s)
        b = booking(BEGIN + timedelta(seconds=start_s))
        due = deadline(b, 15)
        ahead, later = split_bookings([b], begin=BEGIN, started=started, speed=speed,
                                      grace_minutes=15)  # fmt: skip
        assert len(ahead) + len(later) == 1
        # The simulated clock when the real clock reaches the deadline, less the margin.
        clock = BEGIN + (due - timedelta(seconds=30) - started) * speed
        assert bool(ahead) == (clock >= due)
