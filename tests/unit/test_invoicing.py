"""Invoices computed by hand: plans, caps, price changes, adjustments, keys and JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ruche.server.billing.invoicing import Billed, Invoice, compute_invoice, invoice_key
from ruche.server.billing.money import Currency, charge
from ruche.server.billing.pricing import (
    DayPass,
    MonthlyPlan,
    PayAsYouGo,
    Period,
    PlanTerms,
    PriceVersion,
    version_on,
)
from ruche.server.billing.usage import PresenceSpan, billable_usage
from ruche.server.errors import Invalid

PARIS = ZoneInfo("Europe/Paris")
EUR = Currency.of("EUR")
VAT = Decimal("0.20")
NOV = Period(2026, 11)
OCT = Period(2026, 10)
D = Decimal
SITE = "lyon"
MEMBER = 7


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


def stay(name: str, day: date, start: tuple[int, int], end: tuple[int, int]) -> PresenceSpan:
    """A span on local `day` from `start` to `end` (hour, minute); an end before it is next day."""
    begin, finish = at(day, *start), at(day, *end)
    if finish <= begin:
        finish = at(day + timedelta(days=1), *end)
    return PresenceSpan(name, begin, finish)


def version(
    terms: PlanTerms, vid: str = "v1", valid_from: date = date(2026, 1, 1), tax: Decimal = VAT
) -> PriceVersion:
    return PriceVersion(vid, valid_from, terms, EUR, tax)


def invoice(
    spans: Iterable[PresenceSpan],
    versions: Iterable[PriceVersion],
    period: Period = NOV,
    *,
    billed: Iterable[Billed] = (),
    member: int = MEMBER,
    first: date = date(2026, 1, 1),
) -> Invoice:
    usage = billable_usage(
        spans,
        tz=PARIS,
        join_gap=timedelta(minutes=15),
        first_day=first,
        last_day=period.last_day,
    )
    return compute_invoice(
        member=member, site=SITE, period=period, usage=usage, versions=versions, billed=billed
    )


def summary(inv: Invoice) -> list[tuple[str, str, str, str, str]]:
    return [
        (line.key, str(line.quantity), line.unit, str(line.unit_price), str(line.net))
        for line in inv.lines
    ]


def totals(inv: Invoice) -> tuple[str, str, str]:
    return str(inv.subtotal), str(inv.tax), str(inv.total)


def workdays(first: date, count: int, hours: tuple[int, int] = (9, 17)) -> list[PresenceSpan]:
    return [
        stay(
            f"visit-{first + timedelta(days=i)}",
            first + timedelta(days=i),
            (hours[0], 0),
            (hours[1], 0),
        )
        for i in range(count)
    ]


def assert_lines_hold(inv: Invoice) -> None:
    for line in inv.lines:
        assert line.net == charge(line.quantity, line.unit_price, inv.currency, per=line.per)
    assert sum(line.net for line in inv.lines) == inv.subtotal
    assert sum(t.tax for t in inv.taxes) == inv.tax
    assert inv.subtotal + inv.tax == inv.total


class TestMonthlyPlan:
    """A monthly fee with included days or hours; overage falls on the last used days."""

    DAYS = MonthlyPlan.days(fee=D("200.00"), included=10, overage_per_day=D("25.00"))
    HOURS = MonthlyPlan.hours(fee=D("150.00"), included=40, overage_per_hour=D("6.00"))

    def test_included_days_and_overage(self) -> None:
        inv = invoice(workdays(date(2026, 11, 2), 12), [version(self.DAYS)])
        assert summary(inv) == [
            ("fee:v1", "1", "month", "200.00", "200.00"),
            ("included:v1", "10", "day", "0", "0.00"),
            ("overage:v1", "2", "day", "25.00", "50.00"),
        ]
        overage = inv.lines[2]
        assert overage.days == (date(2026, 11, 12), date(2026, 11, 13))
        assert overage.sessions == ("visit-2026-11-12", "visit-2026-11-13")
        assert totals(inv) == ("250.00", "50.00", "300.00")
        assert_lines_hold(inv)

    def test_no_use_bills_the_fee(self) -> None:
        inv = invoice([], [version(self.DAYS)])
        assert summary(inv) == [("fee:v1", "1", "month", "200.00", "200.00")]
        assert totals(inv) == ("200.00", "40.00", "240.00")

    def test_included_hours_and_overage_by_the_minute(self) -> None:
        # Five days of 8 h 18 min: 41 h 30 min, so 90 minutes over 40 h at 6.00 an hour.
        spans = [stay(f"d{i}", date(2026, 11, 2 + i), (9, 0), (17, 18)) for i in range(5)]
        inv = invoice(spans, [version(self.HOURS)])
        assert summary(inv) == [
            ("fee:v1", "1", "month", "150.00", "150.00"),
            ("included:v1", "2400", "minute", "0", "0.00"),
            ("overage:v1", "90", "minute", "6.00", "9.00"),
        ]
        assert inv.lines[2].per == 60
        assert inv.lines[2].days == (date(2026, 11, 6),)
        assert inv.lines[1].description == "Included hours used (v1): 40 h of 40 h"
        assert inv.lines[2].description == "Overage (v1): 1 h 30 min"
        assert totals(inv) == ("159.00", "31.80", "190.80")
        assert_lines_hold(inv)


class TestPayAsYouGo:
    """Per minute, never under the daily minimum nor over the daily or monthly cap."""

    PLAN = PayAsYouGo(per_minute=D("0.05"), minimum_charge=D("3.00"), daily_cap=D("25.00"))

    def test_minimum_rate_and_cap_on_a_dst_day(self) -> None:
        march = Period(2026, 3)
        spans = [
            stay("short", date(2026, 3, 2), (9, 0), (9, 30)),  # 30 min: 1.50, minimum 3.00
            stay("normal", date(2026, 3, 3), (9, 0), (12, 20)),  # 200 min: 10.00
            stay("all-day", date(2026, 3, 29), (0, 0), (0, 0)),  # 23 h: 69.00, cap 25.00
        ]
        inv = invoice(spans, [version(self.PLAN)], period=march)
        assert summary(inv) == [
            ("payg:v1:2026-03-02", "1", "day", "3.00", "3.00"),
            ("payg:v1:2026-03-03", "200", "minute", "0.05", "10.00"),
            ("payg:v1:2026-03-29", "1", "day", "25.00", "25.00"),
        ]
        assert inv.lines[2].description == "2026-03-29: 1380 min, daily cap"
        assert inv.lines[0].sessions == ("short",)
        assert totals(inv) == ("38.00", "7.60", "45.60")
        assert_lines_hold(inv)

    def test_fall_back_day_bills_25_hours(self) -> None:
        plan = PayAsYouGo(per_minute=D("0.01"), minimum_charge=D(0), daily_cap=D(100))
        inv = invoice([stay("all-day", date(2026, 10, 25), (0, 0), (0, 0))], [version(plan)], OCT)
        assert summary(inv) == [("payg:v1:2026-10-25", "1500", "minute", "0.01", "15.00")]

    def test_monthly_cap(self) -> None:
        plan = PayAsYouGo(
            per_minute=D("0.10"),
            minimum_charge=D("2.00"),
            daily_cap=D("30.00"),
            monthly_cap=D("50.00"),
        )
        spans = [stay(f"d{i}", date(2026, 11, 2 + i), (9, 0), (14, 0)) for i in range(3)]
        inv = invoice(spans, [version(plan)])
        assert summary(inv) == [
            ("payg:v1:2026-11-02", "300", "minute", "0.10", "30.00"),
            ("payg:v1:2026-11-03", "300", "minute", "0.10", "30.00"),
            ("payg:v1:2026-11-04", "300", "minute", "0.10", "30.00"),
            ("cap:v1", "1", "month", "-40.00", "-40.00"),
        ]
        assert inv.lines[3].sessions == ("d0", "d1", "d2")
        assert totals(inv) == ("50.00", "10.00", "60.00")
        assert_lines_hold(inv)

    def test_monthly_cap_not_reached(self) -> None:
        plan = PayAsYouGo(
            per_minute=D("0.10"), minimum_charge=D(0), daily_cap=D(30), monthly_cap=D(50)
        )
        inv = invoice([stay("a", date(2026, 11, 2), (9, 0), (10, 0))], [version(plan)])
        assert [line.key for line in inv.lines] == ["payg:v1:2026-11-02"]

    def test_sub_cent_prices_round_once_per_line(self) -> None:
        plan = PayAsYouGo(per_minute=D("0.045"), minimum_charge=D(0), daily_cap=D(100))
        inv = invoice([stay("a", date(2026, 11, 2), (9, 0), (10, 35))], [version(plan)])
        assert summary(inv) == [("payg:v1:2026-11-02", "95", "minute", "0.045", "4.28")]  # 4.275

    def test_cap_below_minimum_is_refused(self) -> None:
        with pytest.raises(Invalid, match="daily cap"):
            PayAsYouGo(per_minute=D(1), minimum_charge=D(10), daily_cap=D(5))


class TestDayPass:
    """A pass per used day, consumed at the first presence of the local day."""

    def test_passes(self) -> None:
        spans = [
            stay("tue", date(2026, 11, 3), (9, 12), (17, 0)),
            stay("thu", date(2026, 11, 5), (8, 0), (12, 0)),
            PresenceSpan(
                "blip", at(date(2026, 11, 6), 9), at(date(2026, 11, 6), 9) + timedelta(seconds=30)
            ),
        ]
        inv = invoice(spans, [version(DayPass(D("15.00")))])
        assert summary(inv) == [
            ("pass:v1:2026-11-03", "1", "day pass", "15.00", "15.00"),
            ("pass:v1:2026-11-05", "1", "day pass", "15.00", "15.00"),
        ]
        assert inv.lines[0].description == "Day pass 2026-11-03, first presence 09:12"
        assert totals(inv) == ("30.00", "6.00", "36.00")

    def test_a_night_uses_two_days(self) -> None:
        inv = invoice(
            [stay("night", date(2026, 11, 20), (22, 0), (2, 0))], [version(DayPass(D(15)))]
        )
        assert [line.key for line in inv.lines] == ["pass:v1:2026-11-20", "pass:v1:2026-11-21"]
        assert inv.lines[1].description == "Day pass 2026-11-21, first presence 00:00"


class TestPriceChanges:
    """Each day is priced by the version in force on it; monthly terms are prorated."""

    def test_pay_as_you_go_change_mid_month(self) -> None:
        v1 = version(PayAsYouGo(per_minute=D("0.05"), minimum_charge=D(0), daily_cap=D(99)))
        v2 = version(
            PayAsYouGo(per_minute=D("0.06"), minimum_charge=D(0), daily_cap=D(99)),
            "v2",
            date(2026, 11, 16),
        )
        spans = [
            stay("before", date(2026, 11, 10), (9, 0), (10, 40)),
            stay("after", date(2026, 11, 20), (9, 0), (10, 40)),
        ]
        inv = invoice(spans, [v2, v1])
        assert summary(inv) == [
            ("payg:v1:2026-11-10", "100", "minute", "0.05", "5.00"),
            ("payg:v2:2026-11-20", "100", "minute", "0.06", "6.00"),
        ]
        assert inv.versions == ("v1", "v2")

    def test_monthly_change_mid_month_is_prorated(self) -> None:
        v1 = version(MonthlyPlan.days(fee=D(300), included=10, overage_per_day=D(20)))
        v2 = version(
            MonthlyPlan.days(fee=D(360), included=10, overage_per_day=D(30)),
            "v2",
            date(2026, 11, 16),
        )
        # 7 used days in the first half, where v1 includes 10 x 15/30 = 5.
        inv = invoice(workdays(date(2026, 11, 2), 7), [v1, v2])
        assert summary(inv) == [
            ("fee:v1", "15", "day", "300", "150.00"),
            ("included:v1", "5", "day", "0", "0.00"),
            ("overage:v1", "2", "day", "20", "40.00"),
            ("fee:v2", "15", "day", "360", "180.00"),
        ]
        assert inv.lines[0].per == 30
        assert inv.lines[0].description == "Monthly fee (v1), 15 of 30 days"
        assert_lines_hold(inv)

    def test_plan_starting_mid_month_bills_from_its_start(self) -> None:
        v1 = version(
            MonthlyPlan.days(fee=D(300), included=10, overage_per_day=D(20)),
            valid_from=date(2026, 11, 21),
        )
        inv = invoice([], [v1])
        assert summary(inv) == [("fee:v1", "10", "day", "300", "100.00")]

    def test_use_before_any_version_is_refused(self) -> None:
        v1 = version(DayPass(D(15)), valid_from=date(2026, 11, 21))
        with pytest.raises(Invalid, match="no price version is in force on 2026-11-03"):
            invoice([stay("a", date(2026, 11, 3), (9, 0), (10, 0))], [v1])

    def test_tax_rate_change_gives_one_tax_per_rate(self) -> None:
        v1 = version(DayPass(D("10.00")))
        v2 = version(DayPass(D("10.00")), "v2", date(2026, 11, 16), tax=D("0.055"))
        spans = [
            stay("a", date(2026, 11, 3), (9, 0), (10, 0)),
            stay("b", date(2026, 11, 17), (9, 0), (10, 0)),
            stay("c", date(2026, 11, 18), (9, 0), (10, 0)),
        ]
        inv = invoice(spans, [v1, v2])
        assert [(str(t.rate), str(t.base), str(t.tax)) for t in inv.taxes] == [
            ("0.055", "20.00", "1.10"),
            ("0.20", "10.00", "2.00"),
        ]
        assert totals(inv) == ("30.00", "3.10", "33.10")

    def test_version_in_force(self) -> None:
        v1 = version(DayPass(D(1)))
        v2 = version(DayPass(D(2)), "v2", date(2026, 11, 16))
        assert version_on([v1, v2], date(2025, 12, 31)) is None
        assert version_on([v1, v2], date(2026, 11, 15)) is v1
        assert version_on([v1, v2], date(2026, 11, 16)) is v2


class TestAdjustments:
    """Late usage of a closed month is settled, once, on the next invoice."""

    PLAN = PayAsYouGo(per_minute=D("0.05"), minimum_charge=D("3.00"), daily_cap=D("25.00"))

    def test_late_events_adjust_the_next_invoice(self) -> None:
        versions = [version(self.PLAN)]
        early = [stay("a", date(2026, 10, 5), (9, 0), (10, 40))]  # 100 min: 5.00
        october = invoice(early, versions, OCT)
        assert totals(october) == ("5.00", "1.00", "6.00")

        late = [
            *early,
            stay("b", date(2026, 10, 5), (14, 0), (15, 0)),  # 160 min: 8.00
            stay("c", date(2026, 10, 30), (9, 0), (9, 50)),  # minimum 3.00
            stay("d", date(2026, 11, 2), (9, 0), (10, 0)),  # November: 3.00
        ]
        november = invoice(late, versions, NOV, billed=october.billed())
        assert summary(november) == [
            ("payg:v1:2026-11-02", "60", "minute", "0.05", "3.00"),
            ("payg:v1:2026-10-05", "1", "adjustment", "3.00", "3.00"),
            ("payg:v1:2026-10-30", "1", "adjustment", "3.00", "3.00"),
        ]
        adjustment = november.lines[1]
        assert adjustment.adjustment
        assert adjustment.period == OCT
        assert adjustment.sessions == ("a", "b")
        assert adjustment.description == (
            "Adjustment for 2026-10: 2026-10-05: 160 min (billed 5.00, now 8.00)"
        )
        assert totals(november) == ("9.00", "1.80", "10.80")
        assert_lines_hold(november)

        # Settled once: December sees nothing more to adjust.
        billed = [*october.billed(), *november.billed()]
        december = invoice(late, versions, Period(2026, 12), billed=billed)
        assert december.lines == ()

        # Closing November again (its own lines now billed too) reproduces it.
        again = invoice(late, versions, NOV, billed=billed)
        assert again.to_json() == november.to_json()

    def test_usage_withdrawn_after_the_close_is_credited(self) -> None:
        versions = [version(self.PLAN)]
        spans = [stay("a", date(2026, 10, 5), (9, 0), (10, 40))]
        october = invoice(spans, versions, OCT)
        # The session turned out to be a faulty sensor: held back, so credited.
        flagged = [PresenceSpan("a", spans[0].start, spans[0].end, suspect=True, reason="review")]
        november = invoice(flagged, versions, NOV, billed=october.billed())
        assert summary(november) == [("payg:v1:2026-10-05", "1", "adjustment", "-5.00", "-5.00")]
        assert november.lines[0].days == ()
        assert [h.id for h in november.held_back] == ["a"]
        assert totals(november) == ("-5.00", "-1.00", "-6.00")

    def test_monthly_overage_from_a_late_day(self) -> None:
        versions = [version(MonthlyPlan.days(fee=D(200), included=10, overage_per_day=D(25)))]
        spans = workdays(date(2026, 10, 5), 10)
        october = invoice(spans, versions, OCT)
        assert totals(october) == ("200.00", "40.00", "240.00")
        late = [*spans, stay("late", date(2026, 10, 28), (9, 0), (12, 0))]
        november = invoice(late, versions, NOV, billed=october.billed())
        assert summary(november) == [
            ("fee:v1", "1", "month", "200", "200.00"),
            ("overage:v1", "1", "adjustment", "25.00", "25.00"),
        ]
        # The allowance took the ten earlier days; the late one is the overage.
        assert november.lines[1].days == (date(2026, 10, 28),)
        assert november.lines[1].period == OCT

    def test_months_the_usage_does_not_cover_are_left_alone(self) -> None:
        versions = [version(self.PLAN)]
        october = invoice([stay("a", date(2026, 10, 5), (9, 0), (10, 40))], versions, OCT)
        # Usage from November only: October cannot be re-priced, so it is not touched.
        november = invoice([], versions, NOV, billed=october.billed(), first=date(2026, 11, 1))
        assert november.lines == ()

    def test_billed_figures_for_a_later_period_are_refused(self) -> None:
        bad = Billed(OCT, NOV, "payg:v1:2026-11-02", D(1), VAT, "v1")
        with pytest.raises(Invalid, match="cannot bill 2026-11"):
            invoice([], [version(self.PLAN)], NOV, billed=[bad])


class TestKeyAndJson:
    """One key per member, site, period and versions; canonical JSON, byte for byte."""

    PLAN = DayPass(D("15.00"))

    def test_key_is_documented_sha256(self) -> None:
        inv = invoice([], [version(self.PLAN)])
        text = '{"member":7,"period":"2026-11","site":"lyon","versions":["v1"]}'
        assert inv.key == hashlib.sha256(text.encode()).hexdigest()
        assert inv.key == invoice_key(MEMBER, SITE, NOV, ["v1"])

    def test_key_changes_with_member_period_and_versions(self) -> None:
        base = invoice([], [version(self.PLAN)]).key
        assert invoice([], [version(self.PLAN)], member=8).key != base
        assert invoice([], [version(self.PLAN)], period=OCT).key != base
        assert invoice([], [version(self.PLAN, "v9")]).key != base
        # Usage does not change which invoice it is.
        assert (
            invoice([stay("a", date(2026, 11, 3), (9, 0), (10, 0))], [version(self.PLAN)]).key
            == base
        )

    def test_json_is_canonical(self) -> None:
        spans = [stay("a", date(2026, 11, 3), (9, 0), (10, 0))]
        inv = invoice(spans, [version(DayPass(D("15.0")))])
        same = invoice(spans, [version(DayPass(D("15.00000")))])
        assert inv.to_json() == same.to_json()
        data = json.loads(inv.to_json())
        assert data["total"] == "18.00"
        assert data["currency"] == "EUR"
        assert data["timezone"] == "Europe/Paris"
        assert data["lines"][0]["unit_price"] == "15"
        assert data["lines"][0]["net"] == "15.00"
        assert data["lines"][0]["sessions"] == ["a"]
        assert data["lines"][0]["days"] == ["2026-11-03"]
        assert data["taxes"] == [{"base": "15.00", "rate": "0.2", "tax": "3.00"}]
        assert inv.to_json() == json.dumps(data, sort_keys=True, separators=(",", ":"))

    def test_held_back_are_listed(self) -> None:
        odd = PresenceSpan(
            "desk:lyon/pi-1/desk-4#41",
            at(date(2026, 11, 3), 8),
            at(date(2026, 11, 4), 9),
            suspect=True,
            reason="stuck_occupied",
        )
        data = json.loads(invoice([odd], [version(self.PLAN)]).to_json())
        assert data["lines"] == []
        assert data["held_back"] == [
            {
                "days": ["2026-11-03", "2026-11-04"],
                "id": "desk:lyon/pi-1/desk-4#41",
                "reason": "stuck_occupied",
            }
        ]


class TestBadInput:
    """Inconsistent prices or usage are refused with a message saying what to fix."""

    def test_usage_must_cover_the_period(self) -> None:
        with pytest.raises(Invalid, match="not all of 2026-11"):
            invoice([], [version(DayPass(D(1)))], first=date(2026, 11, 2))

    def test_no_versions(self) -> None:
        with pytest.raises(Invalid, match="no price versions"):
            invoice([], [])

    def test_duplicate_version_ids(self) -> None:
        v1 = version(DayPass(D(1)))
        v1b = version(DayPass(D(2)), valid_from=date(2026, 6, 1))
        with pytest.raises(Invalid, match="unique: v1"):
            invoice([], [v1, v1b])

    def test_two_versions_on_one_day(self) -> None:
        with pytest.raises(Invalid, match="one version per day"):
            invoice([], [version(DayPass(D(1))), version(DayPass(D(2)), "v2")])

    def test_one_currency(self) -> None:
        chf = PriceVersion("v2", date(2026, 6, 1), DayPass(D(1)), Currency.of("CHF"), VAT)
        with pytest.raises(Invalid, match="one currency"):
            invoice([], [version(DayPass(D(1))), chf])

    @pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "november"])
    def test_bad_period(self, text: str) -> None:
        with pytest.raises(Invalid, match="YYYY-MM"):
            Period.parse(text)

    def test_bad_terms(self) -> None:
        with pytest.raises(Invalid, match="whole days"):
            MonthlyPlan.days(fee=D(1), included=D("1.5"), overage_per_day=D(1))  # type: ignore[arg-type]
        with pytest.raises(Invalid, match="not be negative"):
            DayPass(D(-1))
        with pytest.raises(Invalid, match="tax rate"):
            PriceVersion("v1", date(2026, 1, 1), DayPass(D(1)), EUR, D(20))
        with pytest.raises(Invalid, match="non-empty id"):
            PriceVersion(" ", date(2026, 1, 1), DayPass(D(1)), EUR, VAT)

    def test_member_must_be_an_id(self) -> None:
        usage = billable_usage(
            [], tz=PARIS, join_gap=timedelta(0), first_day=NOV.first_day, last_day=NOV.last_day
        )
        with pytest.raises(Invalid, match="member"):
            compute_invoice(
                member="7",  # type: ignore[arg-type]
                site=SITE,
                period=NOV,
                usage=usage,
                versions=[version(DayPass(D(1)))],
            )


def test_period_values() -> None:
    """Periods parse, order and know their days."""
    assert Period.parse("2026-02") == Period(2026, 2)
    assert str(Period(2026, 2)) == "2026-02"
    assert Period(2026, 2).length == 28
    assert Period(2028, 2).length == 29
    assert Period(2026, 10) < Period(2026, 11) < Period(2027, 1)
    assert date(2026, 11, 30) in NOV
    assert date(2026, 12, 1) not in NOV
    assert Period.of(date(2026, 11, 30)) == NOV
    assert NOV.days[0] == NOV.first_day
    assert NOV.days[-1] == NOV.last_day


def test_billed_figures_of_an_invoice() -> None:
    """An invoice lists what it billed, one figure per line, for later adjustments."""
    inv = invoice([stay("a", date(2026, 11, 3), (9, 0), (10, 0))], [version(DayPass(D(15)))])
    [line] = inv.lines
    assert inv.billed() == (Billed(NOV, NOV, line.key, line.net, line.tax_rate, "v1"),)
