"""Currencies, exact charges and the one rounding rule."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.server.billing.money import (
    Currency,
    amount,
    charge,
    decimal_text,
    round_half_up,
    round_money,
    tax_rate,
)
from ruche.server.errors import Invalid

EUR = Currency.of("EUR")
JPY = Currency.of("JPY")
TND = Currency.of("TND")
D = Decimal


class TestCurrency:
    """A currency is an ISO code with its minor units; unknown ones are refused clearly."""

    def test_known_codes(self) -> None:
        assert (EUR.code, EUR.minor_units) == ("EUR", 2)
        assert JPY.minor_units == 0
        assert TND.minor_units == 3

    def test_any_currency_with_its_minor_units(self) -> None:
        assert Currency("XAF", 0).minor_units == 0

    @pytest.mark.parametrize("code", ["XYZ", "eur", ""])
    def test_unknown_code(self, code: str) -> None:
        with pytest.raises(Invalid, match="currency"):
            Currency.of(code)

    @pytest.mark.parametrize(("code", "minor"), [("EURO", 2), ("eur", 2), ("EUR", -1), ("EUR", 9)])
    def test_bad_construction(self, code: str, minor: int) -> None:
        with pytest.raises(Invalid):
            Currency(code, minor)

    def test_format(self) -> None:
        assert EUR.format(D("12.5")) == "12.50"
        assert EUR.format(D("-0.00")) == "0.00"
        assert JPY.format(D(1500)) == "1500"
        with pytest.raises(Invalid, match="round it first"):
            EUR.format(D("0.125"))


class TestRounding:
    """Half away from zero, to the minor unit, exact for any fraction."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (D("0.125"), D("0.13")),  # half-even (banker's) rounding would give 0.12
            (D("0.124999"), D("0.12")),
            (D("0.105"), D("0.11")),
            (D("-0.125"), D("-0.13")),
            (D("-0.001"), D("0.00")),
            (D(7), D("7.00")),
        ],
    )
    def test_euro(self, value: Decimal, expected: Decimal) -> None:
        rounded = round_money(value, EUR)
        assert rounded == expected
        assert rounded.as_tuple().exponent == -2

    def test_no_negative_zero(self) -> None:
        assert str(round_money(D("-0.004"), EUR)) == "0.00"

    def test_yen_and_dinar(self) -> None:
        assert round_money(D("12.5"), JPY) == D(13)
        assert str(round_money(D("12.5"), JPY)) == "13"
        assert round_money(D("1.0005"), TND) == D("1.001")

    def test_exact_fractions(self) -> None:
        assert round_money(Fraction(70, 3), EUR) == D("23.33")
        assert round_money(Fraction(1, 200), EUR) == D("0.01")
        assert round_half_up(Fraction(5, 2)) == D(3)

    @settings(max_examples=300, deadline=None)
    @given(
        st.fractions(min_value=-(10**6), max_value=10**6),
        st.integers(min_value=0, max_value=4),
    )
    def test_nearest_and_symmetric(self, value: Fraction, places: int) -> None:
        rounded = Fraction(round_half_up(value, places))
        step = Fraction(1, 10**places)
        assert abs(rounded - value) <= step / 2
        assert round_half_up(-value, places) == -round_half_up(value, places)
        if abs(rounded - value) == step / 2:  # a tie goes away from zero
            assert abs(rounded) > abs(value)


class TestCharge:
    """A charge is quantity x price / per, computed exactly and rounded once."""

    def test_hourly_price_billed_by_the_minute(self) -> None:
        assert charge(D(90), D("6.00"), EUR, per=60) == D("9.00")
        assert charge(D(1), D("6.00"), EUR, per=60) == D("0.10")
        assert charge(D(7), D("1.00"), EUR, per=60) == D("0.12")  # 0.11666...

    def test_prorated_monthly_fee(self) -> None:
        assert charge(D(16), D("300.00"), EUR, per=30) == D("160.00")
        assert charge(D(7), D("100.00"), EUR, per=30) == D("23.33")

    def test_rounded_once_not_per_unit(self) -> None:
        # 3 minutes at 0.005: per-unit rounding would give 3 x 0.01 = 0.03.
        assert charge(D(3), D("0.005"), EUR) == D("0.02")

    def test_per_must_be_positive(self) -> None:
        with pytest.raises(Invalid, match="per"):
            charge(D(1), D(1), EUR, per=0)


class TestAmountsAndRates:
    """Amounts are exact decimals; floats, NaN and negatives are refused with the reason."""

    def test_accepts(self) -> None:
        assert amount("12.5", "a fee") == D("12.5")
        assert amount(3, "a fee") == D(3)
        assert amount(D("-1"), "a credit", signed=True) == D(-1)

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (0.1, "not float"),
            ("abc", "decimal number"),
            (D("NaN"), "finite"),
            ("Infinity", "finite"),
            ("-1", "negative"),
            (True, "not bool"),
        ],
    )
    def test_refuses(self, value: object, message: str) -> None:
        with pytest.raises(Invalid, match=message):
            amount(value, "a fee")  # type: ignore[arg-type]

    def test_tax_rate(self) -> None:
        assert tax_rate("0.20") == D("0.20")
        assert tax_rate(0) == D(0)
        with pytest.raises(Invalid, match="fraction"):
            tax_rate(20)

    def test_decimal_text(self) -> None:
        assert decimal_text(D("0.50")) == "0.5"
        assert decimal_text(D("100")) == "100"
        assert decimal_text(D("1E+2")) == "100"
        assert decimal_text(D("-0")) == "0"
        assert decimal_text(D("1.5"), places=2) == "1.50"
