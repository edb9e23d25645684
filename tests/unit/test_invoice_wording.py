"""An invoice said in French and English: every line description `invoicing` writes is
recognised and said again with the reader's numbers, dates and amounts, and the rest
(units, prices, rates, months) reads as each language writes it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ruche.server.billing.documents import InvoiceDocument
from ruche.server.billing.invoicing import Billed, compute_invoice
from ruche.server.billing.money import Currency
from ruche.server.billing.pricing import DayPass, MonthlyPlan, PayAsYouGo, Period, PriceVersion
from ruche.server.billing.usage import PresenceSpan, billable_usage
from ruche.server.billing.wording import DESCRIPTIONS, Wording, invoice_locale

PARIS = ZoneInfo("Europe/Paris")
EUR = Currency.of("EUR")
NOV = Period(2026, 11)
D = Decimal


def _lines(terms: object, days: int, hours: int = 8, billed: tuple[Billed, ...] = ()) -> list:
    spans = [
        PresenceSpan(f"visit:{n}", datetime(2026, 11, 2 + n, 9, tzinfo=PARIS),
                     datetime(2026, 11, 2 + n, 9, tzinfo=PARIS) + timedelta(hours=hours))
        for n in range(days)
    ]  # fmt: skip
    usage = billable_usage(spans, tz=PARIS, join_gap=timedelta(minutes=15),
                           first_day=date(2026, 10, 1), last_day=NOV.last_day)  # fmt: skip
    version = PriceVersion("v1", date(2026, 10, 1), terms, EUR, D("0.2"))  # type: ignore[arg-type]
    invoice = compute_invoice(member=1, site="lyon", period=NOV, usage=usage,
                              versions=[version], billed=billed)  # fmt: skip
    return list(InvoiceDocument.model_validate_json(invoice.to_json()).lines)


EVERY_SHAPE = [
    *_lines(MonthlyPlan.days(fee=D("300"), included=2, overage_per_day=D("25")), days=3),
    *_lines(MonthlyPlan.hours(fee=D("150"), included=10, overage_per_hour=D("6")), days=2),
    *_lines(
        PayAsYouGo(
            per_minute=D("0.05"), minimum_charge=D("5"), daily_cap=D("20"), monthly_cap=D("30")
        ),
        days=3,
        hours=9,
    ),
    *_lines(
        PayAsYouGo(per_minute=D("0.05"), minimum_charge=D("5"), daily_cap=D("100")), days=2, hours=1
    ),
    *_lines(
        PayAsYouGo(per_minute=D("0.1"), minimum_charge=D("1"), daily_cap=D("100")),
        days=1,
        hours=1,
    ),
    *_lines(DayPass(price=D("15")), days=1),
    # October's invoice billed a day pass its usage no longer holds: an adjustment now.
    *_lines(
        DayPass(price=D("15")),
        days=1,
        billed=(
            Billed(
                Period(2026, 10), Period(2026, 10), "pass:v1:2026-10-30", D("15"), D("0.2"), "v1"
            ),
        ),
    ),
]


class TestDescriptions:
    """Each description shape reads in French; English keeps the stored words."""

    def test_every_shape_is_recognised_in_french(self):
        french = Wording("fr", "Europe/Paris", "EUR")
        for line in EVERY_SHAPE:
            said = french.description(line.description)
            assert said != line.description, f"not recognised: {line.description!r}"

    def test_every_kind_of_line_is_covered_here(self):
        keys = {line.key.split(":")[0] for line in EVERY_SHAPE}
        assert keys == {"fee", "included", "overage", "payg", "cap", "pass"}
        assert any(line.adjustment for line in EVERY_SHAPE)
        payg = {line.description.rpartition(", ")[2] for line in EVERY_SHAPE if "payg" in line.key}
        assert {"minimum charge", "daily cap", "2026-11-02: 60 min"} <= payg
        assert len({msgid for _, msgid in DESCRIPTIONS}) == len(DESCRIPTIONS)

    @pytest.mark.parametrize(
        ("stored", "french", "english"),
        [
            ("Monthly fee (Flex), 16 of 30 days", "Forfait mensuel (Flex), 16 jours sur 30",
             "Monthly fee (Flex), 16 of 30 days"),
            ("Included hours used (Flex): 3 h 05 min of 40 h",
             "Heures incluses utilisées (Flex)\xa0: 3\u202fh 5\xa0min sur 40\u202fh",
             "Included hours used (Flex): 3 hrs 5 mins of 40 hrs"),
            ("2026-11-05: 93 min, daily cap", "5 nov. 2026\xa0: 93 min, plafond journalier",
             "5 Nov 2026: 93 min, daily cap"),
            ("Monthly cap (Go): 150.00 reached", "Plafond mensuel (Go)\xa0: 150,00\xa0€ atteint",
             "Monthly cap (Go): €150.00 reached"),
            ("Day pass 2026-11-05, first presence 09:00",
             "Pass journée du 5 nov. 2026, première présence à 09:00",
             "Day pass 5 Nov 2026, first presence 09:00"),
            ("Adjustment for 2026-10: Overage days (Flex): 2 (billed 25.00, now 50.00)",
             "Régularisation de 2026-10\xa0: Jours au-delà du forfait (Flex)\xa0: 2"
             " (facturé 25,00\xa0€, désormais 50,00\xa0€)",
             "Adjustment for 2026-10: Overage days (Flex): 2 (billed €25.00, now €50.00)"),
            ("A line typed by hand", "A line typed by hand", "A line typed by hand"),
        ],
    )  # fmt: skip
    def test_said_in_each_language(self, stored, french, english):
        assert Wording("fr", "Europe/Paris", "EUR").description(stored) == french
        assert Wording("en", "Europe/Paris", "EUR").description(stored) == english


class TestValues:
    """Numbers, units, rates and months as each language writes them."""

    def test_prices_keep_their_digits_and_the_currencys(self):
        fr, en = Wording("fr", "UTC", "EUR"), Wording("en", "UTC", "EUR")
        assert fr.price("300") == "300,00"
        assert fr.price("0.045") == "0,045"
        assert en.price("1234.5") == "1,234.50"
        assert fr.money("1234.50") == "1\u202f234,50\xa0€"
        assert Wording("fr", "UTC", "JPY").price("1200") == "1\u202f200"

    def test_units_agree_with_their_quantity(self):
        fr, en = Wording("fr", "UTC", "EUR"), Wording("en", "UTC", "EUR")
        assert (fr.unit("day", "1"), fr.unit("day", "2"), en.unit("day", "2")) == (
            "jour", "jours", "days"
        )  # fmt: skip
        assert fr.unit("furlong", "3") == "furlong"

    def test_rates_months_and_reasons(self):
        fr, en = Wording("fr", "UTC", "EUR"), Wording("en", "UTC", "EUR")
        assert (fr.percent("0.2"), en.percent("0.055")) == ("20\xa0%", "5.5%")
        assert (fr.month(NOV), en.month("2026-11")) == ("novembre 2026", "November 2026")
        assert fr.reason("stuck_occupied") == "capteur du bureau bloqué sur occupé"
        assert en.reason("door_propped") == "door propped"

    def test_the_language_of_an_invoice(self):
        assert (invoice_locale("en"), invoice_locale(None), invoice_locale("de")) == (
            "en", "fr", "fr"
        )  # fmt: skip
