"""Closing a billing period over SQL: invoices issued once, adjustments for late events.

Visits and desk sessions are inserted as `refresh_site` stores them (the pipeline from
events to those rows is tested in test_visits.py and test_occupancy.py). Lyon bills in
EUR at 20 % tax; Flex is a monthly plan (300.00 with 2 days, 25.00 a day beyond), Go is
pay as you go (0.05 a minute, at least 5.00 and at most 30.00 a day). Ada is on Flex,
Bob and Carol on Go, Dan on nothing.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from ruche.server import billing, registry
from ruche.server.billing.close import close_period
from ruche.server.billing.pricing import Period
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.models import (
    BillingCloseRow,
    DeskSessionRow,
    InvoiceLineRow,
    InvoiceRow,
    VisitRow,
)

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
SITE = "lyon"
NOV, DEC, JAN = Period(2026, 11), Period(2026, 12), Period(2027, 1)
AFTER_NOV = datetime(2026, 12, 2, 9, tzinfo=UTC)
AFTER_DEC = datetime(2027, 1, 2, 9, tzinfo=UTC)
AFTER_JAN = datetime(2027, 2, 2, 9, tzinfo=UTC)
SET_UP = datetime(2026, 9, 1, tzinfo=UTC)
FLEX = {"kind": "monthly", "fee": "300.00", "included": "2", "unit": "day", "overage": "25.00"}
GO = {"kind": "pay_as_you_go", "per_minute": "0.05", "minimum_charge": "5", "daily_cap": "30"}


def document(row: Any) -> dict[str, Any]:
    """An issued invoice's document as the JSON it was stored as (read through its model)."""
    return billing.document_of(row).model_dump(mode="json")


def usage_days(row: Any) -> list[dict[str, Any]]:
    return [day.model_dump(mode="json") for day in billing.usage_of(row)]


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


def nov(day: int) -> date:
    return date(2026, 11, day)


@dataclass
class Ledger:
    """Lyon's rows: members, plans, and the visits and desk sessions billing reads."""

    sessions: sessionmaker[Session]
    site_id: int
    members: dict[str, int]
    plans: dict[str, int]
    seqs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def visit(self, who: str, start: datetime, end: datetime | None) -> str:
        seq = next(self.seqs)
        with transaction(self.sessions) as s:
            s.add(
                VisitRow(site=SITE, member_id=self.members[who], entry_agent="pi", entry_seq=seq,
                         entries=1, start=start, end=end, closed_by="exit" if end else "open")
            )  # fmt: skip
        return f"visit:{SITE}/pi#{seq}"

    def desk(self, who: str, start: datetime, end: datetime, *, suspect: bool = False) -> str:
        seq = next(self.seqs)
        with transaction(self.sessions) as s:
            s.add(
                DeskSessionRow(
                    site=SITE, agent="pi", desk="d1", opened_seq=seq, start=start, end=end,
                    closed_by="vacant", suspect=suspect,
                    reason="stuck_occupied" if suspect else None,
                    member_id=self.members[who], attributed_by="badge", booking_id=None,
                )
            )  # fmt: skip
        return f"desk:{SITE}/pi/d1#{seq}"

    def close(self, period: Period, now: datetime = AFTER_NOV) -> billing.CloseResult:
        with transaction(self.sessions) as s:
            return close_period(s, period, site=SITE, now=now)

    def price(self, plan: str, valid_from: date, terms: dict[str, Any], **kwargs: Any) -> None:
        with transaction(self.sessions) as s:
            billing.add_price_version(
                s, site_id=self.site_id, plan_id=self.plans[plan], valid_from=valid_from,
                terms=terms, now=kwargs.pop("now", SET_UP), **kwargs,
            )  # fmt: skip

    def invoice(self, who: str, period: Period) -> InvoiceRow:
        with self.sessions() as s:
            return s.scalars(
                select(InvoiceRow)
                .where(InvoiceRow.member_id == self.members[who])
                .where(InvoiceRow.period == str(period))
            ).one()

    def stored(self) -> dict[str, tuple[str, ...]]:
        """Every stored invoice's bytes, by key."""
        with self.sessions() as s:
            return {
                row.key: (row.number, row.document, row.usage, row.subtotal, row.tax, row.total,
                          row.issued_at.isoformat())
                for row in s.scalars(select(InvoiceRow))
            }  # fmt: skip

    def count(self, model: type[Any]) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(model)) or 0


def _build(url: str) -> tuple[Ledger, Any]:
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    members: dict[str, int] = {}
    plans: dict[str, int] = {}
    with transaction(sessions) as s:
        site = registry.create_site(s, slug=SITE, name="Ruche Lyon", timezone="Europe/Paris")
        s.flush()
        billing.set_site_billing(s, site.id, currency="EUR", rate="0.2")
        for name in ("Flex", "Go"):
            plans[name] = registry.create_plan(
                s, name=name, site_ids=[site.id], schedule={"kind": "24/7"}
            ).id
        for name, plan in (("ada", "Flex"), ("bob", "Go"), ("carol", "Go"), ("dan", None)):
            member = registry.create_member(s, name=name.title(), email=f"{name}@example.org")
            s.flush()
            members[name] = member.id
            if plan:
                registry.create_membership(s, member_id=member.id, plan_id=plans[plan],
                                           starts_at=at(date(2026, 10, 1), 0))  # fmt: skip
        site_id = site.id
    ledger = Ledger(sessions, site_id, members, plans)
    ledger.price("Flex", date(2026, 10, 1), FLEX)
    ledger.price("Go", date(2026, 10, 1), GO)
    return ledger, engine


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path) -> Iterator[Ledger]:
    url = (
        f"sqlite:///{tmp_path / 'ruche.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    built, engine = _build(url)
    yield built
    engine.dispose()


def _lines(row: InvoiceRow) -> list[tuple[str, str, str]]:
    return [(x["description"], x["net"], x["period"]) for x in document(row)["lines"]]


class TestClose:
    """One invoice per member with a membership or usage, from the stored rows."""

    def test_a_month_of_use(self, ledger):
        for day in (3, 4, 5):
            ledger.visit("ada", at(nov(day), 9), at(nov(day), 17))
        short = ledger.visit("bob", at(nov(10), 9), at(nov(10), 10, 30))  # 90 min: minimum
        long = ledger.visit("bob", at(nov(11), 9), at(nov(11), 12))  # 180 min
        desk = ledger.desk("bob", at(nov(11), 9, 30), at(nov(11), 11))  # inside it: once
        ledger.visit("dan", at(nov(12), 9), at(nov(12), 12))  # no membership

        result = ledger.close(NOV)

        assert [(r.number, r.member_id) for r in result.invoices] == [
            ("lyon-2026-11-0001", ledger.members["ada"]),
            ("lyon-2026-11-0002", ledger.members["bob"]),
            ("lyon-2026-11-0003", ledger.members["carol"]),
        ]
        assert [(s.member_id, s.reason) for s in result.skipped] == [
            (ledger.members["dan"], "no membership at lyon")
        ]
        ada = ledger.invoice("ada", NOV)
        assert _lines(ada) == [
            ("Monthly fee (Flex from 2026-10-01)", "300.00", "2026-11"),
            ("Included days used (Flex from 2026-10-01): 2 of 2", "0.00", "2026-11"),
            ("Overage days (Flex from 2026-10-01): 1", "25.00", "2026-11"),
        ]
        assert (ada.subtotal, ada.tax, ada.total, ada.currency) == ("325.00", "65.00", "390.00",
                                                                   "EUR")  # fmt: skip
        assert (ada.member_name, ada.site_name, ada.status) == ("Ada", "Ruche Lyon", "issued")
        bob = ledger.invoice("bob", NOV)
        assert _lines(bob) == [
            ("2026-11-10: 90 min, minimum charge", "5.00", "2026-11"),
            ("2026-11-11: 180 min", "9.00", "2026-11"),
        ]
        assert [line["sessions"] for line in document(bob)["lines"]] == [
            [short],
            sorted([desk, long]),
        ]
        assert (bob.total, ledger.invoice("carol", NOV).total) == ("16.80", "0.00")
        usage = usage_days(bob)
        assert [(u["day"], u["minutes"]) for u in usage] == [("2026-11-10", 90),
                                                              ("2026-11-11", 180)]  # fmt: skip
        assert ledger.count(InvoiceLineRow) == 5

    def test_closing_twice_issues_nothing_new(self, ledger):
        ledger.visit("ada", at(nov(3), 9), at(nov(3), 17))
        ledger.visit("bob", at(nov(10), 9), at(nov(10), 12))
        first = ledger.close(NOV)
        before = ledger.stored()

        again = ledger.close(NOV, now=AFTER_DEC)

        assert first.sites[0].issued_now
        assert not again.sites[0].issued_now
        assert again.sites[0].closed_at == first.sites[0].closed_at
        assert [r.key for r in again.invoices] == [r.key for r in first.invoices]
        assert ledger.stored() == before
        assert (ledger.count(InvoiceRow), ledger.count(BillingCloseRow)) == (3, 1)

    def test_suspect_session_is_held_back_then_adjusted_once_approved(self, ledger):
        stuck = ledger.desk("carol", at(nov(20), 8), at(nov(21), 9), suspect=True)
        visit = ledger.visit("carol", at(nov(20), 9), at(nov(20), 10))
        ledger.close(NOV)

        carol = document(ledger.invoice("carol", NOV))
        assert [(x["description"], x["sessions"]) for x in carol["lines"]] == [
            ("2026-11-20: 60 min, minimum charge", [visit])
        ]
        assert carol["held_back"] == [
            {"days": ["2026-11-20", "2026-11-21"], "id": stuck, "reason": "stuck_occupied"}
        ]

        with transaction(ledger.sessions) as s:  # reviewed: she was there
            s.execute(update(DeskSessionRow).values(suspect=False, reason=None))
        ledger.close(DEC, now=AFTER_DEC)

        dec = document(ledger.invoice("carol", DEC))
        lines = [(x["description"], x["net"], x["period"], x["adjustment"]) for x in dec["lines"]]
        assert lines == [
            ("Adjustment for 2026-11: 2026-11-20: 960 min, daily cap (billed 5.00, now 30.00)",
             "25.00", "2026-11", True),
            ("Adjustment for 2026-11: 2026-11-21: 540 min (billed 0.00, now 27.00)",
             "27.00", "2026-11", True),
        ]  # fmt: skip
        assert dec["held_back"] == []
        assert dec["total"] == "62.40"

    def test_open_visit_is_held_back(self, ledger):
        still_in = ledger.visit("bob", at(nov(30), 23), None)
        ledger.close(NOV)
        bob = document(ledger.invoice("bob", NOV))
        assert bob["lines"] == []
        assert bob["held_back"] == [{"days": ["2026-11-30"], "id": still_in, "reason": "open"}]


class TestLateEvents:
    """An agent offline over a close: its events reach the next invoice, never the old one."""

    def test_late_session_is_an_adjustment_on_the_next_period(self, ledger):
        ledger.visit("bob", at(nov(10), 9), at(nov(10), 12))
        ledger.visit("ada", at(nov(3), 9), at(nov(3), 17))
        ledger.visit("ada", at(nov(4), 9), at(nov(4), 17))
        ledger.close(NOV)
        closed = ledger.stored()

        late = ledger.visit("bob", at(nov(12), 10), at(nov(12), 12))  # 120 min, stored late
        ledger.visit("ada", at(nov(5), 9), at(nov(5), 17))  # a third day: overage now
        ledger.visit("bob", at(date(2026, 12, 1), 9), at(date(2026, 12, 1), 11))
        assert ledger.close(NOV).invoices[0].key in closed  # closing again: unchanged
        assert ledger.stored() == closed

        ledger.close(DEC, now=AFTER_DEC)

        assert {k: v for k, v in ledger.stored().items() if k in closed} == closed
        bob = ledger.invoice("bob", DEC)
        assert _lines(bob) == [
            ("2026-12-01: 120 min", "6.00", "2026-12"),
            ("Adjustment for 2026-11: 2026-11-12: 120 min (billed 0.00, now 6.00)", "6.00",
             "2026-11"),
        ]  # fmt: skip
        assert document(bob)["lines"][1]["sessions"] == [late]
        assert bob.total == "14.40"
        ada = ledger.invoice("ada", DEC)
        assert _lines(ada)[-1] == (
            "Adjustment for 2026-11: Overage days (Flex from 2026-10-01): 1 "
            "(billed 0.00, now 25.00)",
            "25.00",
            "2026-11",
        )

        ledger.close(JAN, now=AFTER_JAN)  # settled once: no adjustment again
        assert _lines(ledger.invoice("bob", JAN)) == []
        assert ledger.count(InvoiceRow) == 9


class TestPrices:
    def test_price_change_mid_month(self, ledger):
        ledger.price("Flex", nov(16), FLEX | {"fee": "360.00"}, now=at(nov(10), 12))
        for day in (3, 4, 20):
            ledger.visit("ada", at(nov(day), 9), at(nov(day), 17))
        ledger.close(NOV)

        ada = ledger.invoice("ada", NOV)
        assert _lines(ada) == [
            ("Monthly fee (Flex from 2026-10-01), 15 of 30 days", "150.00", "2026-11"),
            ("Included days used (Flex from 2026-10-01): 1 of 1", "0.00", "2026-11"),
            ("Overage days (Flex from 2026-10-01): 1", "25.00", "2026-11"),
            ("Monthly fee (Flex from 2026-11-16), 15 of 30 days", "180.00", "2026-11"),
            ("Included days used (Flex from 2026-11-16): 1 of 1", "0.00", "2026-11"),
        ]
        assert document(ada)["versions"] == [
            "Flex from 2026-10-01",
            "Flex from 2026-11-16",
        ]
        assert (ada.subtotal, ada.total) == ("355.00", "426.00")

    def test_a_version_takes_its_own_tax_rate_and_label(self, ledger):
        ledger.price("Go", nov(1), GO, rate="0.1", label="Go 2026-11")
        ledger.visit("bob", at(nov(10), 9), at(nov(10), 12))
        ledger.close(NOV)
        bob = document(ledger.invoice("bob", NOV))
        assert bob["lines"][0]["version"] == "Go 2026-11"
        assert bob["taxes"] == [{"base": "9.00", "rate": "0.1", "tax": "0.90"}]


class TestRefused:
    """Each refusal says what to do, and changes nothing."""

    def test_a_period_not_ended(self, ledger):
        with pytest.raises(Invalid, match=r"2026-12 has not ended at lyon yet.*2027-01-01T00:00"):
            ledger.close(DEC, now=datetime(2026, 12, 31, 22, 59, tzinfo=UTC))
        assert ledger.count(BillingCloseRow) == 0

    def test_out_of_order(self, ledger):
        ledger.close(NOV)
        with pytest.raises(Conflict, match="close 2026-12 at lyon first"):
            ledger.close(JAN, now=AFTER_JAN)
        with pytest.raises(Conflict, match="closed through 2026-11 and 2026-10 was never closed"):
            ledger.close(Period(2026, 10))

    def test_a_price_version_inside_a_closed_period(self, ledger):
        ledger.close(NOV)
        with pytest.raises(Conflict, match=r"closed through 2026-11.*2026-12-01 or later"):
            ledger.price("Go", nov(20), GO, now=AFTER_NOV)
        ledger.price("Go", date(2026, 12, 1), GO, now=AFTER_NOV)

    def test_bad_prices(self, ledger):
        with pytest.raises(Conflict, match="one version per day"):
            ledger.price("Go", date(2026, 10, 1), GO)
        with pytest.raises(Invalid, match="decimal number"):
            ledger.price("Go", nov(2), GO | {"per_minute": "cheap"})
        with pytest.raises(Invalid, match="not float"):
            ledger.price("Go", nov(2), GO | {"per_minute": 0.05})
        with pytest.raises(Invalid, match="unknown plan terms kind 'yearly'"):
            ledger.price("Go", nov(2), {"kind": "yearly"})
        with pytest.raises(Invalid, match="monthly terms need overage"):
            ledger.price("Flex", nov(2), {k: v for k, v in FLEX.items() if k != "overage"})
        with pytest.raises(Invalid, match="daily cap"):
            ledger.price("Go", nov(2), GO | {"minimum_charge": "50"})
        with pytest.raises(Invalid, match="tax rate"):
            ledger.price("Go", nov(2), GO, rate="1.5")
        with transaction(ledger.sessions) as s:
            other = registry.create_site(s, slug="nice", name="Nice", timezone="Europe/Paris")
            s.flush()
            with pytest.raises(Invalid, match="does not cover site nice"):
                billing.add_price_version(s, site_id=other.id, plan_id=ledger.plans["Go"],
                                          valid_from=nov(2), terms=GO, now=SET_UP)  # fmt: skip
            with pytest.raises(Invalid, match="unknown currency 'XYZ'"):
                billing.set_site_billing(s, other.id, currency="XYZ")
        with transaction(ledger.sessions) as s, pytest.raises(Conflict, match="currency is fixed"):
            billing.set_site_billing(s, ledger.site_id, currency="GBP")

    def test_unknown_site_and_bad_period(self, ledger):
        with transaction(ledger.sessions) as s, pytest.raises(NotFound):
            close_period(s, NOV, site="nowhere", now=AFTER_NOV)
        with pytest.raises(Invalid, match="YYYY-MM"):
            Period.parse("2026-13")

    def test_a_used_day_no_price_covers(self, ledger):
        with transaction(ledger.sessions) as s:
            plan = registry.create_plan(s, name="Late", site_ids=[ledger.site_id],
                                        schedule={"kind": "24/7"})  # fmt: skip
            registry.create_membership(s, member_id=ledger.members["dan"], plan_id=plan.id,
                                       starts_at=at(nov(1), 0))  # fmt: skip
            s.flush()
            ledger.plans["Late"] = plan.id
        ledger.price("Late", nov(15), GO)
        ledger.visit("dan", at(nov(3), 9), at(nov(3), 12))
        with pytest.raises(Invalid, match=r"member \d+ \(dan@example.org\).*2026-11-03"):
            ledger.close(NOV)
        assert ledger.count(InvoiceRow) == 0


class TestConcurrentClose:
    def test_two_closes_at_once_issue_one_invoice_per_key(self, pg_url):
        ledger, engine = _build(pg_url)
        try:
            ledger.visit("ada", at(nov(3), 9), at(nov(3), 17))
            ledger.visit("bob", at(nov(10), 9), at(nov(10), 12))
            barrier = threading.Barrier(2)
            results: list[list[str]] = []
            issued_now: list[bool] = []
            errors: list[BaseException] = []

            def close() -> None:
                try:
                    with transaction(ledger.sessions) as s:
                        barrier.wait(timeout=10)
                        result = close_period(s, NOV, site=SITE, now=AFTER_NOV)
                        results.append([r.key for r in result.invoices])
                        issued_now.append(result.sites[0].issued_now)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=close) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert errors == []
            assert len(results) == 2
            assert results[0] == results[1]
            assert len(results[0]) == 3
            with ledger.sessions() as s:
                keys = s.execute(
                    select(InvoiceRow.key, func.count()).group_by(InvoiceRow.key)
                ).all()
            assert sorted(keys) == sorted((key, 1) for key in results[0])
            assert sorted(issued_now) == [False, True]  # one issued, the other found them
            assert ledger.count(InvoiceLineRow) == 3
        finally:
            engine.dispose()
