"""A guest's day at a site: the hours it covers, and the same answer online and offline."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ruche.broker import badge_token
from ruche.server.access.allowlists import entry_windows
from ruche.server.access.facts import AllowlistInputs, Holder, MembershipSpan
from ruche.server.access.guests import guest_plan, guest_window, visit_hours
from ruche.server.access.rules import (
    AccessFacts,
    AccessRequest,
    Badge,
    DecisionReason,
    Door,
    Site,
    decide_access,
)
from ruche.server.registry.schedule import Schedule, Weekday, local_day

PARIS = ZoneInfo("Europe/Paris")
SITE = Site("lyon", PARIS)
DOOR = Door("front", site_id="lyon")
TOKEN = badge_token(b"k" * 32, bytes.fromhex("04a224b2c35e80"))
TUESDAY = date(2026, 12, 8)


def _at(hour: int, minute: int = 0, day: date = TUESDAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def _guest(opens: datetime, closes: datetime, site: str = "lyon") -> Holder:
    span = MembershipSpan(opens, closes, guest_plan(site))
    return Holder(Badge(TOKEN), member_id=7, active=True, memberships=(span,))


class TestVisitHours:
    """A visit runs from the site's first opening to its last closing that local day."""

    def test_business_hours_in_winter(self):
        hours = visit_hours(Schedule.business_hours(), frozenset(), PARIS, TUESDAY)
        assert hours == (_at(8), _at(19))

    def test_a_lunch_break_does_not_end_the_visit(self):
        split = Schedule.weekly({Weekday.TUESDAY: ["08:30-12:00", "14:00-18:30"]})
        assert visit_hours(split, frozenset(), PARIS, TUESDAY) == (_at(8, 30), _at(18, 30))

    def test_a_site_open_all_the_time_closes_at_midnight(self):
        start, end = local_day(TUESDAY, PARIS)
        assert visit_hours(Schedule.always(), frozenset(), PARIS, TUESDAY) == (start, end)

    def test_closed_on_a_holiday_and_at_the_weekend(self):
        hours = Schedule.business_hours()
        assert visit_hours(hours, frozenset({TUESDAY}), PARIS, TUESDAY) is None
        assert visit_hours(hours, frozenset(), PARIS, date(2026, 12, 13)) is None

    def test_a_day_of_the_clock_change_keeps_local_hours(self):
        spring = date(2026, 3, 30)  # the Monday after the change
        assert visit_hours(Schedule.business_hours(), frozenset(), PARIS, spring) == (
            _at(8, day=spring),
            _at(19, day=spring),
        )


class TestGuestWindow:
    """The window starts at the day's opening and ends at the stored closing time."""

    def test_from_opening_to_valid_until(self):
        day_start = local_day(TUESDAY, PARIS)[0]
        assert guest_window((_at(8), _at(19)), day_start, _at(19)) == (_at(8), _at(19))

    def test_hours_that_no_longer_open_start_at_the_day_start(self):
        day_start = local_day(TUESDAY, PARIS)[0]
        assert guest_window(None, day_start, _at(19)) == (day_start, _at(19))

    def test_a_closing_before_the_opening_starts_at_the_day_start(self):
        """Opening hours changed since the invitation: it keeps the time it was given."""
        day_start = local_day(TUESDAY, PARIS)[0]
        assert guest_window((_at(8), _at(19)), day_start, _at(7)) == (day_start, _at(7))

    def test_nothing_when_nothing_is_left(self):
        day_start = local_day(TUESDAY, PARIS)[0]
        assert guest_window((_at(8), _at(19)), day_start, day_start) is None


class TestOnlineAndOfflineAgree:
    """The door's online decision and the cached allow-list give the same answer."""

    def _decide(self, holder: Holder, now: datetime) -> DecisionReason:
        facts = AccessFacts(SITE, DOOR, holder.facts_at(SITE.id, now))
        return decide_access(AccessRequest(TOKEN, DOOR.id), facts, now).reason

    def test_inside_the_visit_the_door_opens(self):
        holder = _guest(_at(8), _at(19))
        assert self._decide(holder, _at(8)) is DecisionReason.SCHEDULE
        assert self._decide(holder, _at(18, 59)) is DecisionReason.SCHEDULE

    def test_before_opening_and_from_closing_time_it_does_not(self):
        holder = _guest(_at(8), _at(19))
        assert self._decide(holder, _at(7, 59)) is DecisionReason.MEMBER_INACTIVE
        assert self._decide(holder, _at(19)) is DecisionReason.MEMBER_INACTIVE

    def test_another_site_is_refused(self):
        holder = _guest(_at(8), _at(19), site="paris")
        assert self._decide(holder, _at(10)) is DecisionReason.WRONG_SITE

    def test_the_cached_window_is_the_visit(self):
        holder = _guest(_at(8), _at(19))
        inputs = AllowlistInputs(SITE, (DOOR,), (holder,), ())
        assert entry_windows(holder, inputs, _at(6), _at(6) + timedelta(hours=24)) == [
            (_at(8), _at(19))
        ]

    def test_every_minute_of_the_day_agrees(self):
        holder = _guest(_at(8, 30), _at(18, 30))
        inputs = AllowlistInputs(SITE, (DOOR,), (holder,), ())
        start = _at(0)
        windows = entry_windows(holder, inputs, start, start + timedelta(hours=24))
        for minute in range(0, 24 * 60, 15):
            now = start + timedelta(minutes=minute)
            cached = any(s <= now < e for s, e in windows)
            online = self._decide(holder, now) is DecisionReason.SCHEDULE
            assert cached == online, now

    def test_a_member_invited_as_guest_keeps_their_own_plan_elsewhere(self):
        """A visit adds to what a holder had: their other memberships still count."""
        resident = MembershipSpan(_at(0) - timedelta(days=30), None, guest_plan("paris"))
        visit = MembershipSpan(_at(8), _at(19), guest_plan("lyon"))
        holder = Holder(Badge(TOKEN), member_id=7, active=True, memberships=(resident, visit))
        assert self._decide(holder, _at(10)) is DecisionReason.SCHEDULE
        assert self._decide(holder, _at(20)) is DecisionReason.WRONG_SITE
