"""Door decisions: every deny reason, every way in, which reason wins, DST, allow-list windows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.server.access.rules import (
    ALLOW_REASONS,
    AccessFacts,
    AccessRequest,
    Badge,
    BadgeStatus,
    Booking,
    DayPass,
    Decision,
    DecisionReason,
    Direction,
    Door,
    Member,
    MemberFacts,
    Plan,
    Site,
    allowlist_windows,
    decide_access,
)
from ruche.server.registry.schedule import Interval, Schedule, Weekday

PROPERTIES = settings(max_examples=300, deadline=None)

PARIS = ZoneInfo("Europe/Paris")
TOKEN = "a1" * 32
LABOUR_DAY = date(2026, 5, 1)  # a Friday
SITE = Site("paris-11", PARIS, holidays=frozenset({LABOUR_DAY}))
LYON = "lyon-2"
DOOR = Door("front", site_id=SITE.id)
GUARDED = replace(DOOR, anti_passback=True)

OFFICE = Plan("office", frozenset({SITE.id, LYON}), Schedule.business_hours())  # Mon-Fri 8-19
RESIDENT = Plan("resident", frozenset({SITE.id}), Schedule.always())
FLEX = Plan("flex", frozenset({SITE.id}), None)  # booking-only
LYON_ONLY = Plan("lyon", frozenset({LYON}), Schedule.always())

MEMBER = Member("m-1", start=datetime(2026, 1, 1, tzinfo=PARIS))
HOLDER = MemberFacts(Badge(TOKEN), MEMBER, OFFICE)


def paris(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    """A Paris wall-clock time as a UTC instant (`fold=1`: the second of a repeated time)."""
    return datetime(year, month, day, hour, minute, tzinfo=PARIS, fold=fold).astimezone(UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


WEDNESDAY_10 = paris(2026, 3, 25, 10)  # inside business hours
SATURDAY_10 = paris(2026, 3, 28, 10)  # outside them
MINUTE = timedelta(minutes=1)


def holder(
    plan: Plan = OFFICE,
    *,
    status: BadgeStatus = BadgeStatus.ACTIVE,
    active: bool = True,
    bookings: tuple[Booking, ...] = (),
    day_passes: tuple[DayPass, ...] = (),
    last: Direction | None = None,
) -> MemberFacts:
    return MemberFacts(
        Badge(TOKEN, status),
        replace(MEMBER, active=active),
        plan,
        bookings=bookings,
        day_passes=day_passes,
        last_direction=last,
    )


def booking(
    start: datetime, end: datetime, before: int = 0, after: int = 0, site: str = SITE.id
) -> Booking:
    return Booking(site, start, end, timedelta(minutes=before), timedelta(minutes=after))


def decide(
    facts: MemberFacts | None,
    now: datetime,
    *,
    door: Door = DOOR,
    site: Site = SITE,
    direction: Direction = Direction.IN,
) -> DecisionReason:
    """The reason decide_access gives, checking that `allowed` agrees with it."""
    decision = decide_access(
        AccessRequest(TOKEN, door.id, direction), AccessFacts(site, door, facts), now
    )
    assert decision.allowed is (decision.reason in ALLOW_REASONS)
    return decision.reason


class TestReasons:
    """The reason codes are the contract's, valid on the wire, allowed ones apart."""

    def test_issue_reasons_exist(self) -> None:
        names = {
            "unknown_badge",
            "badge_disabled",
            "member_inactive",
            "wrong_site",
            "outside_schedule",
            "no_booking",
            "door_locked_down",
            "anti_passback",
            "schedule",
            "booking",
            "day_pass",
        }
        assert names <= {reason.value for reason in DecisionReason}

    def test_allowed_reasons(self) -> None:
        assert {r.value for r in ALLOW_REASONS} == {"schedule", "booking", "day_pass", "exit"}
        assert all(
            Decision(reason).allowed is (reason in ALLOW_REASONS) for reason in DecisionReason
        )


class TestDeny:
    """Each deny reason, alone: the one check that fails names it."""

    @pytest.mark.parametrize(
        ("facts", "now", "door", "site", "expected"),
        [
            pytest.param(
                None, WEDNESDAY_10, DOOR, SITE, DecisionReason.UNKNOWN_BADGE, id="unknown"
            ),
            pytest.param(
                holder(status=BadgeStatus.DISABLED),
                WEDNESDAY_10,
                DOOR,
                SITE,
                DecisionReason.BADGE_DISABLED,
                id="disabled",
            ),
            pytest.param(
                holder(status=BadgeStatus.REVOKED),
                WEDNESDAY_10,
                DOOR,
                SITE,
                DecisionReason.BADGE_REVOKED,
                id="revoked",
            ),
            pytest.param(
                HOLDER,
                WEDNESDAY_10,
                replace(DOOR, locked_down=True),
                SITE,
                DecisionReason.DOOR_LOCKED_DOWN,
                id="door-locked-down",
            ),
            pytest.param(
                HOLDER,
                WEDNESDAY_10,
                DOOR,
                replace(SITE, locked_down=True),
                DecisionReason.DOOR_LOCKED_DOWN,
                id="site-locked-down",
            ),
            pytest.param(
                holder(active=False),
                WEDNESDAY_10,
                DOOR,
                SITE,
                DecisionReason.MEMBER_INACTIVE,
                id="member-disabled",
            ),
            pytest.param(
                HOLDER,
                paris(2025, 12, 31, 23, 59),
                DOOR,
                SITE,
                DecisionReason.MEMBER_INACTIVE,
                id="before-membership",
            ),
            pytest.param(
                holder(LYON_ONLY),
                WEDNESDAY_10,
                DOOR,
                SITE,
                DecisionReason.WRONG_SITE,
                id="wrong-site",
            ),
            pytest.param(
                HOLDER,
                paris(2026, 3, 25, 7, 59),
                DOOR,
                SITE,
                DecisionReason.OUTSIDE_SCHEDULE,
                id="before-hours",
            ),
            pytest.param(
                HOLDER, SATURDAY_10, DOOR, SITE, DecisionReason.OUTSIDE_SCHEDULE, id="weekend"
            ),
            pytest.param(
                HOLDER,
                paris(2026, 5, 1, 10),
                DOOR,
                SITE,
                DecisionReason.OUTSIDE_SCHEDULE,
                id="holiday",
            ),
            pytest.param(
                holder(bookings=(booking(SATURDAY_10, SATURDAY_10 + 2 * MINUTE, site=LYON),)),
                SATURDAY_10 + MINUTE,
                DOOR,
                SITE,
                DecisionReason.OUTSIDE_SCHEDULE,
                id="booking-at-another-site",
            ),
            pytest.param(
                holder(FLEX), WEDNESDAY_10, DOOR, SITE, DecisionReason.NO_BOOKING, id="no-booking"
            ),
            pytest.param(
                holder(FLEX, bookings=(booking(paris(2026, 3, 25, 14), paris(2026, 3, 25, 16)),)),
                WEDNESDAY_10,
                DOOR,
                SITE,
                DecisionReason.NO_BOOKING,
                id="booking-later",
            ),
            pytest.param(
                holder(FLEX, day_passes=(DayPass(SITE.id, date(2026, 3, 26)),)),
                WEDNESDAY_10,
                DOOR,
                SITE,
                DecisionReason.NO_BOOKING,
                id="day-pass-tomorrow",
            ),
            pytest.param(
                holder(FLEX, day_passes=(DayPass(LYON, date(2026, 3, 25)),)),
                WEDNESDAY_10,
                DOOR,
                SITE,
                DecisionReason.NO_BOOKING,
                id="day-pass-elsewhere",
            ),
            pytest.param(
                holder(last=Direction.IN),
                WEDNESDAY_10,
                GUARDED,
                SITE,
                DecisionReason.ANTI_PASSBACK,
                id="anti-passback",
            ),
        ],
    )
    def test_table(
        self,
        facts: MemberFacts | None,
        now: datetime,
        door: Door,
        site: Site,
        expected: DecisionReason,
    ) -> None:
        assert decide(facts, now, door=door, site=site) is expected


class TestAllow:
    """Each way in: the schedule, a booking with its grace, a day pass, and an exit."""

    @pytest.mark.parametrize(
        ("facts", "now", "expected"),
        [
            pytest.param(HOLDER, WEDNESDAY_10, DecisionReason.SCHEDULE, id="business-hours"),
            pytest.param(
                holder(RESIDENT), paris(2026, 3, 28, 3), DecisionReason.SCHEDULE, id="24/7"
            ),
            pytest.param(
                holder(RESIDENT), paris(2026, 5, 1, 3), DecisionReason.SCHEDULE, id="24/7-holiday"
            ),
            pytest.param(
                holder(FLEX, bookings=(booking(paris(2026, 3, 25, 9), paris(2026, 3, 25, 12)),)),
                WEDNESDAY_10,
                DecisionReason.BOOKING,
                id="booking-only-plan",
            ),
            pytest.param(
                holder(bookings=(booking(SATURDAY_10, SATURDAY_10 + 60 * MINUTE),)),
                SATURDAY_10,
                DecisionReason.BOOKING,
                id="booking-outside-hours",
            ),
            pytest.param(
                holder(FLEX, day_passes=(DayPass(SITE.id, date(2026, 3, 25)),)),
                paris(2026, 3, 25, 0, 0),
                DecisionReason.DAY_PASS,
                id="day-pass-midnight",
            ),
            pytest.param(
                holder(FLEX, day_passes=(DayPass(SITE.id, date(2026, 3, 25)),)),
                paris(2026, 3, 25, 23, 59),
                DecisionReason.DAY_PASS,
                id="day-pass-late",
            ),
            pytest.param(
                holder(last=Direction.OUT),
                WEDNESDAY_10,
                DecisionReason.SCHEDULE,
                id="passback-after-out",
            ),
        ],
    )
    def test_table(self, facts: MemberFacts, now: datetime, expected: DecisionReason) -> None:
        assert decide(facts, now) is expected

    def test_day_pass_ends_at_local_midnight(self) -> None:
        facts = holder(FLEX, day_passes=(DayPass(SITE.id, date(2026, 3, 25)),))
        assert decide(facts, paris(2026, 3, 24, 23, 59)) is DecisionReason.NO_BOOKING
        assert decide(facts, paris(2026, 3, 26, 0, 0)) is DecisionReason.NO_BOOKING


class TestPrecedence:
    """When several checks fail, the first in the documented order gives the reason."""

    @pytest.mark.parametrize(
        ("facts", "now", "door", "expected"),
        [
            pytest.param(
                None,
                SATURDAY_10,
                replace(DOOR, locked_down=True),
                DecisionReason.UNKNOWN_BADGE,
                id="unknown-before-lockdown",
            ),
            pytest.param(
                holder(status=BadgeStatus.REVOKED, active=False),
                SATURDAY_10,
                replace(DOOR, locked_down=True),
                DecisionReason.BADGE_REVOKED,
                id="revoked-before-lockdown",
            ),
            pytest.param(
                holder(status=BadgeStatus.DISABLED, active=False),
                SATURDAY_10,
                DOOR,
                DecisionReason.BADGE_DISABLED,
                id="disabled-before-member",
            ),
            pytest.param(
                holder(LYON_ONLY, active=False),
                WEDNESDAY_10,
                replace(DOOR, locked_down=True),
                DecisionReason.DOOR_LOCKED_DOWN,
                id="lockdown-before-member",
            ),
            pytest.param(
                holder(LYON_ONLY, active=False),
                SATURDAY_10,
                DOOR,
                DecisionReason.MEMBER_INACTIVE,
                id="member-before-site",
            ),
            pytest.param(
                holder(LYON_ONLY, bookings=(booking(WEDNESDAY_10, WEDNESDAY_10 + 60 * MINUTE),)),
                WEDNESDAY_10,
                DOOR,
                DecisionReason.WRONG_SITE,
                id="plan-says-where",
            ),
            pytest.param(
                holder(LYON_ONLY, day_passes=(DayPass(SITE.id, date(2026, 3, 25)),)),
                WEDNESDAY_10,
                DOOR,
                DecisionReason.WRONG_SITE,
                id="day-pass-outside-plan",
            ),
            pytest.param(
                holder(last=Direction.IN),
                SATURDAY_10,
                GUARDED,
                DecisionReason.OUTSIDE_SCHEDULE,
                id="schedule-before-passback",
            ),
            pytest.param(
                holder(FLEX, last=Direction.IN),
                SATURDAY_10,
                GUARDED,
                DecisionReason.NO_BOOKING,
                id="booking-before-passback",
            ),
            pytest.param(
                holder(
                    bookings=(booking(WEDNESDAY_10, WEDNESDAY_10 + MINUTE),),
                    day_passes=(DayPass(SITE.id, date(2026, 3, 25)),),
                ),
                WEDNESDAY_10,
                DOOR,
                DecisionReason.SCHEDULE,
                id="schedule-first",
            ),
            pytest.param(
                holder(
                    FLEX,
                    bookings=(booking(WEDNESDAY_10, WEDNESDAY_10 + MINUTE),),
                    day_passes=(DayPass(SITE.id, date(2026, 3, 25)),),
                ),
                WEDNESDAY_10,
                DOOR,
                DecisionReason.BOOKING,
                id="booking-before-day-pass",
            ),
        ],
    )
    def test_table(
        self, facts: MemberFacts | None, now: datetime, door: Door, expected: DecisionReason
    ) -> None:
        assert decide(facts, now, door=door) is expected


class TestBookingGrace:
    """A booking opens the site's doors from its start minus grace to its end plus grace."""

    # Wednesday 09:00-12:00, 15 minutes before, 30 after, on a booking-only plan.
    GRACEFUL = holder(
        FLEX, bookings=(booking(paris(2026, 3, 25, 9), paris(2026, 3, 25, 12), 15, 30),)
    )
    # Saturday 22:00 to Sunday 02:00, 10 minutes either side, on a business-hours plan.
    NIGHT = holder(bookings=(booking(paris(2026, 3, 21, 22), paris(2026, 3, 22, 2), 10, 10),))

    @pytest.mark.parametrize(
        ("facts", "now", "expected"),
        [
            pytest.param(
                GRACEFUL, paris(2026, 3, 25, 8, 44), DecisionReason.NO_BOOKING, id="minute-early"
            ),
            pytest.param(
                GRACEFUL, paris(2026, 3, 25, 8, 45), DecisionReason.BOOKING, id="start-minus-grace"
            ),
            pytest.param(GRACEFUL, paris(2026, 3, 25, 9), DecisionReason.BOOKING, id="start"),
            pytest.param(GRACEFUL, paris(2026, 3, 25, 12), DecisionReason.BOOKING, id="end"),
            pytest.param(
                GRACEFUL, paris(2026, 3, 25, 12, 29), DecisionReason.BOOKING, id="in-grace-after"
            ),
            pytest.param(
                GRACEFUL, paris(2026, 3, 25, 12, 30), DecisionReason.NO_BOOKING, id="end-plus-grace"
            ),
            pytest.param(
                NIGHT, paris(2026, 3, 21, 21, 49), DecisionReason.OUTSIDE_SCHEDULE, id="night-early"
            ),
            pytest.param(
                NIGHT, paris(2026, 3, 21, 21, 50), DecisionReason.BOOKING, id="night-grace"
            ),
            pytest.param(
                NIGHT, paris(2026, 3, 21, 23, 59), DecisionReason.BOOKING, id="before-midnight"
            ),
            pytest.param(NIGHT, paris(2026, 3, 22, 0, 0), DecisionReason.BOOKING, id="midnight"),
            pytest.param(
                NIGHT, paris(2026, 3, 22, 2, 9), DecisionReason.BOOKING, id="after-midnight"
            ),
            pytest.param(
                NIGHT, paris(2026, 3, 22, 2, 10), DecisionReason.OUTSIDE_SCHEDULE, id="night-over"
            ),
        ],
    )
    def test_table(self, facts: MemberFacts, now: datetime, expected: DecisionReason) -> None:
        assert decide(facts, now) is expected


class TestMembership:
    """A membership lets its member in from its start, up to but not at its end."""

    SPAN = Member("m-2", start=paris(2026, 3, 2), end=paris(2026, 4, 1))
    FACTS = MemberFacts(Badge(TOKEN), SPAN, RESIDENT)

    @pytest.mark.parametrize(
        ("now", "expected"),
        [
            pytest.param(
                paris(2026, 3, 2) - timedelta(microseconds=1), DecisionReason.MEMBER_INACTIVE
            ),
            pytest.param(paris(2026, 3, 2), DecisionReason.SCHEDULE, id="start"),
            pytest.param(
                paris(2026, 4, 1) - timedelta(seconds=1), DecisionReason.SCHEDULE, id="before-end"
            ),
            pytest.param(paris(2026, 4, 1), DecisionReason.MEMBER_INACTIVE, id="end"),
        ],
    )
    def test_boundaries(self, now: datetime, expected: DecisionReason) -> None:
        assert decide(self.FACTS, now) is expected

    def test_open_ended(self) -> None:
        assert decide(holder(RESIDENT), paris(2036, 3, 2)) is DecisionReason.SCHEDULE


class TestAntiPassback:
    """A door that enforces anti-passback refuses in after in and out after out, nothing else."""

    @pytest.mark.parametrize(
        ("door", "last", "direction", "expected"),
        [
            (GUARDED, Direction.IN, Direction.IN, DecisionReason.ANTI_PASSBACK),
            (GUARDED, Direction.OUT, Direction.OUT, DecisionReason.ANTI_PASSBACK),
            (GUARDED, Direction.OUT, Direction.IN, DecisionReason.SCHEDULE),
            (GUARDED, Direction.IN, Direction.OUT, DecisionReason.EXIT),
            (GUARDED, None, Direction.IN, DecisionReason.SCHEDULE),
            (GUARDED, None, Direction.OUT, DecisionReason.EXIT),
            (DOOR, Direction.IN, Direction.IN, DecisionReason.SCHEDULE),
            (DOOR, Direction.OUT, Direction.OUT, DecisionReason.EXIT),
        ],
    )
    def test_table(
        self, door: Door, last: Direction | None, direction: Direction, expected: DecisionReason
    ) -> None:
        assert decide(holder(last=last), WEDNESDAY_10, door=door, direction=direction) is expected


class TestExit:
    """An exit needs a good badge and an unlocked door, never hours, a membership or the site."""

    @pytest.mark.parametrize(
        ("facts", "door", "expected"),
        [
            pytest.param(HOLDER, DOOR, DecisionReason.EXIT, id="outside-hours"),
            pytest.param(holder(active=False), DOOR, DecisionReason.EXIT, id="member-inactive"),
            pytest.param(holder(LYON_ONLY), DOOR, DecisionReason.EXIT, id="wrong-site"),
            pytest.param(holder(FLEX), DOOR, DecisionReason.EXIT, id="no-booking"),
            pytest.param(None, DOOR, DecisionReason.UNKNOWN_BADGE, id="unknown"),
            pytest.param(holder(status=BadgeStatus.DISABLED), DOOR, DecisionReason.BADGE_DISABLED),
            pytest.param(holder(status=BadgeStatus.REVOKED), DOOR, DecisionReason.BADGE_REVOKED),
            pytest.param(HOLDER, replace(DOOR, locked_down=True), DecisionReason.DOOR_LOCKED_DOWN),
        ],
    )
    def test_table(self, facts: MemberFacts | None, door: Door, expected: DecisionReason) -> None:
        assert decide(facts, SATURDAY_10, door=door, direction=Direction.OUT) is expected


class TestDaylightSaving:
    """Around the Paris DST changes of 2026, decisions follow the site's local time."""

    EVERY_DAY = Plan("every-day", frozenset({SITE.id}), Schedule.business_hours(days=set(Weekday)))

    @pytest.mark.parametrize(
        "now",
        [
            pytest.param(utc(2026, 3, 29, 0, 59), id="spring-before-jump"),
            pytest.param(utc(2026, 3, 29, 1, 0), id="spring-at-jump"),
            pytest.param(paris(2026, 10, 25, 2, 30, fold=0), id="fall-first-0230"),
            pytest.param(paris(2026, 10, 25, 2, 30, fold=1), id="fall-second-0230"),
        ],
    )
    def test_24_7_plan(self, now: datetime) -> None:
        assert decide(holder(RESIDENT), now) is DecisionReason.SCHEDULE

    @pytest.mark.parametrize(
        ("now", "expected"),
        [
            # 2026-03-29 is 23 hours long: 08:00 CEST is 06:00 UTC, 19:00 CEST 17:00 UTC.
            pytest.param(
                utc(2026, 3, 29, 5, 59), DecisionReason.OUTSIDE_SCHEDULE, id="spring-early"
            ),
            pytest.param(utc(2026, 3, 29, 6), DecisionReason.SCHEDULE, id="spring-opens"),
            pytest.param(utc(2026, 3, 29, 16, 59), DecisionReason.SCHEDULE, id="spring-late"),
            pytest.param(utc(2026, 3, 29, 17), DecisionReason.OUTSIDE_SCHEDULE, id="spring-closes"),
            # 2026-10-25 is 25 hours long: 08:00 CET is 07:00 UTC, 19:00 CET 18:00 UTC.
            pytest.param(
                utc(2026, 10, 25, 6, 59), DecisionReason.OUTSIDE_SCHEDULE, id="fall-early"
            ),
            pytest.param(utc(2026, 10, 25, 7), DecisionReason.SCHEDULE, id="fall-opens"),
            pytest.param(utc(2026, 10, 25, 17, 59), DecisionReason.SCHEDULE, id="fall-late"),
            pytest.param(utc(2026, 10, 25, 18), DecisionReason.OUTSIDE_SCHEDULE, id="fall-closes"),
        ],
    )
    def test_business_hours_plan_on_the_day_of_the_change(
        self, now: datetime, expected: DecisionReason
    ) -> None:
        assert decide(holder(self.EVERY_DAY), now) is expected

    @pytest.mark.parametrize(
        ("now", "expected"),
        [
            pytest.param(
                utc(2026, 3, 27, 6, 59), DecisionReason.OUTSIDE_SCHEDULE, id="friday-winter"
            ),
            pytest.param(utc(2026, 3, 27, 7), DecisionReason.SCHEDULE, id="friday-opens"),
            pytest.param(
                utc(2026, 3, 30, 5, 59), DecisionReason.OUTSIDE_SCHEDULE, id="monday-summer"
            ),
            pytest.param(utc(2026, 3, 30, 6), DecisionReason.SCHEDULE, id="monday-opens"),
        ],
    )
    def test_business_hours_around_the_weekend_of_the_change(
        self, now: datetime, expected: DecisionReason
    ) -> None:
        assert decide(HOLDER, now) is expected

    # Saturday 23:00 to Sunday 04:00 local, 30 minutes grace after: 4 real hours in spring
    # (22:00-02:00 UTC), 6 in autumn (21:00-03:00 UTC).
    SPRING_NIGHT = holder(
        FLEX, bookings=(booking(paris(2026, 3, 28, 23), paris(2026, 3, 29, 4), after=30),)
    )
    FALL_NIGHT = holder(
        FLEX, bookings=(booking(paris(2026, 10, 24, 23), paris(2026, 10, 25, 4), after=30),)
    )

    @pytest.mark.parametrize(
        ("facts", "now", "expected"),
        [
            pytest.param(
                SPRING_NIGHT, utc(2026, 3, 28, 21, 59), DecisionReason.NO_BOOKING, id="spring-early"
            ),
            pytest.param(
                SPRING_NIGHT, utc(2026, 3, 29, 1), DecisionReason.BOOKING, id="spring-at-jump"
            ),
            pytest.param(
                SPRING_NIGHT, utc(2026, 3, 29, 2, 29), DecisionReason.BOOKING, id="spring-grace"
            ),
            pytest.param(
                SPRING_NIGHT, utc(2026, 3, 29, 2, 30), DecisionReason.NO_BOOKING, id="spring-over"
            ),
            pytest.param(
                FALL_NIGHT, utc(2026, 10, 24, 20, 59), DecisionReason.NO_BOOKING, id="fall-early"
            ),
            pytest.param(
                FALL_NIGHT,
                paris(2026, 10, 25, 2, 30, fold=0),
                DecisionReason.BOOKING,
                id="fall-first",
            ),
            pytest.param(
                FALL_NIGHT,
                paris(2026, 10, 25, 2, 30, fold=1),
                DecisionReason.BOOKING,
                id="fall-second",
            ),
            pytest.param(
                FALL_NIGHT, utc(2026, 10, 25, 3, 29), DecisionReason.BOOKING, id="fall-grace"
            ),
            pytest.param(
                FALL_NIGHT, utc(2026, 10, 25, 3, 30), DecisionReason.NO_BOOKING, id="fall-over"
            ),
        ],
    )
    def test_booking_spanning_the_change(
        self, facts: MemberFacts, now: datetime, expected: DecisionReason
    ) -> None:
        assert decide(facts, now) is expected

    @pytest.mark.parametrize(
        ("day", "first", "hours"),
        [
            pytest.param(date(2026, 3, 29), utc(2026, 3, 28, 23), 23, id="spring"),
            pytest.param(date(2026, 10, 25), utc(2026, 10, 24, 22), 25, id="fall"),
        ],
    )
    def test_day_pass_on_the_day_of_the_change(
        self, day: date, first: datetime, hours: int
    ) -> None:
        facts = holder(FLEX, day_passes=(DayPass(SITE.id, day),))
        last = first + timedelta(hours=hours)
        assert decide(facts, first - MINUTE) is DecisionReason.NO_BOOKING
        assert decide(facts, first) is DecisionReason.DAY_PASS
        assert decide(facts, last - MINUTE) is DecisionReason.DAY_PASS
        assert decide(facts, last) is DecisionReason.NO_BOOKING


class TestFactsAboutAnotherTap:
    """Facts that do not match the request are a bug in the shell: ValueError, not a denial."""

    def test_another_door(self) -> None:
        with pytest.raises(ValueError, match="door"):
            decide_access(
                AccessRequest(TOKEN, "back"), AccessFacts(SITE, DOOR, HOLDER), WEDNESDAY_10
            )

    def test_another_badge(self) -> None:
        with pytest.raises(ValueError, match="badge"):
            decide_access(
                AccessRequest("b2" * 32, DOOR.id), AccessFacts(SITE, DOOR, HOLDER), WEDNESDAY_10
            )

    def test_a_door_of_another_site(self) -> None:
        with pytest.raises(ValueError, match="site"):
            AccessFacts(SITE, replace(DOOR, site_id=LYON), HOLDER)

    def test_a_naive_now(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            decide(HOLDER, datetime(2026, 3, 25, 10))  # noqa: DTZ001


class TestValueTypes:
    """Members and bookings refuse naive times, empty or reversed spans, and negative grace."""

    def test_member_naive_start(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            Member("m", start=datetime(2026, 1, 1))  # noqa: DTZ001

    def test_member_ends_before_start(self) -> None:
        with pytest.raises(ValueError, match="ends before"):
            Member("m", start=utc(2026, 1, 2), end=utc(2026, 1, 2))

    def test_booking_naive(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            Booking(SITE.id, datetime(2026, 1, 1), utc(2026, 1, 2))  # noqa: DTZ001

    def test_booking_ends_before_start(self) -> None:
        with pytest.raises(ValueError, match="end after"):
            booking(utc(2026, 1, 2), utc(2026, 1, 1))

    def test_negative_grace(self) -> None:
        with pytest.raises(ValueError, match="grace"):
            booking(utc(2026, 1, 1), utc(2026, 1, 2), before=-1)


class TestAllowlistWindows:
    """allowlist_windows gives the merged, clipped intervals in which a badge opens the doors."""

    START, END = paris(2026, 3, 25), paris(2026, 3, 27)  # Wednesday and Thursday

    def windows(
        self, facts: MemberFacts, doors: tuple[Door, ...] = (DOOR,), site: Site = SITE
    ) -> list[Interval]:
        return allowlist_windows(facts, site, doors, self.START, self.END)

    def test_business_hours(self) -> None:
        assert self.windows(HOLDER) == [
            (paris(2026, 3, 25, 8), paris(2026, 3, 25, 19)),
            (paris(2026, 3, 26, 8), paris(2026, 3, 26, 19)),
        ]

    def test_booking_with_grace_joins_the_schedule(self) -> None:
        evening = booking(paris(2026, 3, 25, 19), paris(2026, 3, 25, 21), before=0, after=15)
        night = booking(paris(2026, 3, 26, 22), paris(2026, 3, 27, 2), before=10)
        assert self.windows(holder(bookings=(evening, night))) == [
            (paris(2026, 3, 25, 8), paris(2026, 3, 25, 21, 15)),
            (paris(2026, 3, 26, 8), paris(2026, 3, 26, 19)),
            (paris(2026, 3, 26, 21, 50), self.END),
        ]

    def test_bookings_and_passes_elsewhere_are_ignored(self) -> None:
        facts = holder(
            FLEX,
            bookings=(booking(paris(2026, 3, 25, 9), paris(2026, 3, 25, 12), site=LYON),),
            day_passes=(DayPass(LYON, date(2026, 3, 26)),),
        )
        assert self.windows(facts) == []

    def test_day_pass_on_a_23_hour_day(self) -> None:
        facts = holder(FLEX, day_passes=(DayPass(SITE.id, date(2026, 3, 29)),))
        start, end = utc(2026, 3, 28), utc(2026, 3, 31)
        assert allowlist_windows(facts, SITE, (DOOR,), start, end) == [
            (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
        ]

    def test_clipped_to_the_membership(self) -> None:
        member = Member("m-3", start=paris(2026, 3, 25, 12), end=paris(2026, 3, 26, 9))
        facts = MemberFacts(Badge(TOKEN), member, OFFICE)
        assert self.windows(facts) == [
            (paris(2026, 3, 25, 12), paris(2026, 3, 25, 19)),
            (paris(2026, 3, 26, 8), paris(2026, 3, 26, 9)),
        ]

    def test_one_door_locked_down_of_two(self) -> None:
        doors = (replace(DOOR, locked_down=True), Door("back", SITE.id))
        assert self.windows(HOLDER, doors) == self.windows(HOLDER)

    @pytest.mark.parametrize(
        ("facts", "doors", "site"),
        [
            pytest.param(holder(status=BadgeStatus.DISABLED), (DOOR,), SITE, id="disabled"),
            pytest.param(holder(status=BadgeStatus.REVOKED), (DOOR,), SITE, id="revoked"),
            pytest.param(holder(active=False), (DOOR,), SITE, id="member-disabled"),
            pytest.param(holder(LYON_ONLY), (DOOR,), SITE, id="wrong-site"),
            pytest.param(holder(FLEX), (DOOR,), SITE, id="no-booking"),
            pytest.param(HOLDER, (replace(DOOR, locked_down=True),), SITE, id="door-locked"),
            pytest.param(HOLDER, (DOOR,), replace(SITE, locked_down=True), id="site-locked"),
            pytest.param(HOLDER, (), SITE, id="no-doors"),
        ],
    )
    def test_no_windows(self, facts: MemberFacts, doors: tuple[Door, ...], site: Site) -> None:
        assert self.windows(facts, doors, site) == []

    def test_membership_over_before_the_range(self) -> None:
        member = Member("m-4", start=paris(2026, 1, 1), end=paris(2026, 2, 1))
        assert self.windows(MemberFacts(Badge(TOKEN), member, RESIDENT)) == []

    def test_refuses_a_door_of_another_site(self) -> None:
        with pytest.raises(ValueError, match="site"):
            self.windows(HOLDER, (Door("lyon-front", LYON),))


# --- properties ------------------------------------------------------------------------

CHANGES = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)]  # Paris DST changes
RANGE_DAYS = 4

bases = st.sampled_from(CHANGES)
minutes = st.integers(-RANGE_DAYS * 1440, RANGE_DAYS * 1440)
plans = st.sampled_from(
    [
        OFFICE,
        RESIDENT,
        FLEX,
        LYON_ONLY,
        Plan("nights", frozenset({SITE.id}), Schedule.weekly({Weekday.SATURDAY: ["22:00-02:30"]})),
        Plan(
            "early",
            frozenset({SITE.id}),
            Schedule.business_hours(opens=time(2, 30), days=set(Weekday)),
        ),
    ]
)
sites = st.sampled_from([SITE.id, SITE.id, LYON])
statuses = st.sampled_from(BadgeStatus)


@st.composite
def holders(
    draw: st.DrawFn, base: datetime, status: BadgeStatus = BadgeStatus.ACTIVE
) -> MemberFacts:
    def instant() -> datetime:
        return base + timedelta(minutes=draw(minutes))

    bookings = tuple(
        booking(
            start,
            start + timedelta(minutes=draw(st.integers(1, 600))),
            draw(st.integers(0, 60)),
            draw(st.integers(0, 60)),
            draw(sites),
        )
        for start in draw(st.lists(st.builds(instant), max_size=3))
    )
    day = base.astimezone(PARIS).date()
    passes = tuple(
        DayPass(draw(sites), day + timedelta(days=offset))
        for offset in draw(st.lists(st.integers(-RANGE_DAYS, RANGE_DAYS), max_size=2))
    )
    start = instant()
    end = draw(st.none() | st.integers(1, 3 * 1440).map(lambda m: start + timedelta(minutes=m)))
    member = Member("m-p", start=start, end=end, active=draw(st.booleans()))
    return MemberFacts(Badge(TOKEN, status), member, draw(plans), bookings, passes)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[MemberFacts, datetime]:
    base = draw(bases)
    return draw(holders(base)), base + timedelta(
        minutes=draw(minutes), seconds=draw(st.integers(0, 59))
    )


class TestAccessProperties:
    """Entries are allowed exactly inside the allow-list windows; bad badges, doors never open."""

    @PROPERTIES
    @given(scenarios())
    def test_allowed_iff_inside_a_window(self, scenario: tuple[MemberFacts, datetime]) -> None:
        facts, now = scenario
        windows = allowlist_windows(
            facts, SITE, (DOOR,), now - timedelta(days=1), now + timedelta(days=1)
        )
        inside = any(start <= now < end for start, end in windows)
        assert (decide(facts, now) in ALLOW_REASONS) is inside

    @PROPERTIES
    @given(scenarios())
    def test_windows_edges_are_decision_edges(self, scenario: tuple[MemberFacts, datetime]) -> None:
        facts, now = scenario
        start, end = now - timedelta(days=2), now + timedelta(days=2)
        tick = timedelta(microseconds=1)
        for opens, closes in allowlist_windows(facts, SITE, (DOOR,), start, end):
            assert decide(facts, opens) in ALLOW_REASONS
            assert decide(facts, closes - tick) in ALLOW_REASONS
            if opens > start:
                assert decide(facts, opens - tick) not in ALLOW_REASONS
            if closes < end:
                assert decide(facts, closes) not in ALLOW_REASONS

    @PROPERTIES
    @given(
        st.data(),
        bases,
        minutes,
        st.sampled_from([BadgeStatus.DISABLED, BadgeStatus.REVOKED]),
        st.sampled_from(Direction),
    )
    def test_a_badge_not_active_never_opens(
        self,
        data: st.DataObject,
        base: datetime,
        offset: int,
        status: BadgeStatus,
        direction: Direction,
    ) -> None:
        facts = data.draw(holders(base, status))
        now = base + timedelta(minutes=offset)
        assert decide(facts, now, direction=direction) not in ALLOW_REASONS
        assert (
            allowlist_windows(
                facts, SITE, (DOOR,), now - timedelta(days=1), now + timedelta(days=1)
            )
            == []
        )

    @PROPERTIES
    @given(st.data(), bases, minutes, st.sampled_from(Direction), st.booleans())
    def test_a_locked_down_door_never_opens(
        self,
        data: st.DataObject,
        base: datetime,
        offset: int,
        direction: Direction,
        whole_site: bool,
    ) -> None:
        facts = data.draw(holders(base, data.draw(statuses)))
        door, site = (
            (DOOR, replace(SITE, locked_down=True))
            if whole_site
            else (replace(DOOR, locked_down=True), SITE)
        )
        now = base + timedelta(minutes=offset)
        assert decide(facts, now, door=door, site=site, direction=direction) not in ALLOW_REASONS

    @PROPERTIES
    @given(scenarios())
    def test_the_zone_of_now_does_not_matter(self, scenario: tuple[MemberFacts, datetime]) -> None:
        facts, now = scenario
        assert decide(facts, now) is decide(facts, now.astimezone(ZoneInfo("America/New_York")))
