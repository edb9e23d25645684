"""Money for billing: currencies, amounts as `Decimal`, and the one rounding rule.

Prices may carry more digits than the currency has (`0.045` EUR a minute); what an
invoice shows never does. Every charge is computed exactly (as a fraction) and rounded
**once**, by `round_money`: half up, that is half away from zero, to the currency's
minor unit (`0.125` -> `0.13`, `-0.125` -> `-0.13`). Rounding symmetrically around zero
means a credit is exactly the negation of the charge it cancels. Sums of rounded
amounts are exact, so lines add up to their invoice to the cent.

    >>> eur = Currency.of("EUR")
    >>> charge(Decimal(90), Decimal("6.00"), eur, per=60)  # 90 minutes at 6.00 an hour
    Decimal('9.00')
    >>> round_money(Decimal("0.125"), eur), round_money(Decimal("-0.125"), eur)
    (Decimal('0.13'), Decimal('-0.13'))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from ruche.server.errors import Invalid

__all__ = [
    "Currency",
    "amount",
    "charge",
    "decimal_text",
    "round_half_up",
    "round_money",
    "tax_rate",
]

# ISO 4217 minor units of the currencies a coworking site is likely to bill in; any
# other one is given with its minor units (`Currency("XOF", 0)`).
_MINOR_UNITS = {
    "AUD": 2,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HUF": 2,
    "INR": 2,
    "JPY": 0,
    "KRW": 0,
    "MAD": 2,
    "MXN": 2,
    "NOK": 2,
    "NZD": 2,
    "PLN": 2,
    "SEK": 2,
    "SGD": 2,
    "TND": 3,
    "USD": 2,
    "XOF": 0,
    "ZAR": 2,
}
_CODE = re.compile(r"^[A-Z]{3}$")
_MAX_MINOR_UNITS = 4


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency and its number of minor-unit digits (2 for EUR, 0 for JPY)."""

    code: str
    minor_units: int

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _CODE.match(self.code):
            raise Invalid(
                f"a currency is a three-letter ISO 4217 code such as 'EUR', not {self.code!r}"
            )
        if (
            not isinstance(self.minor_units, int)
            or isinstance(self.minor_units, bool)
            or not 0 <= self.minor_units <= _MAX_MINOR_UNITS
        ):
            raise Invalid(
                f"{self.code} minor units must be a whole number from 0 to {_MAX_MINOR_UNITS}, "
                f"not {self.minor_units!r}"
            )

    @classmethod
    def of(cls, code: str) -> Currency:
        """A currency this module knows by its code (`"EUR"`)."""
        minor = _MINOR_UNITS.get(code)
        if minor is None:
            raise Invalid(
                f"unknown currency {code!r}: use an ISO 4217 code such as 'EUR', "
                "or build Currency(code, minor_units)"
            )
        return cls(code, minor)

    def format(self, value: Decimal) -> str:
        """`value` as the currency shows it, `"12.50"`; it must already be rounded."""
        if value != round_money(value, self):
            raise Invalid(f"{value} has more digits than {self.code} shows: round it first")
        return decimal_text(value, places=self.minor_units)


def round_half_up(value: Fraction | Decimal | int, places: int = 0) -> Decimal:
    """`value` rounded half away from zero to `places` decimal places, exactly."""
    exact = Fraction(value) * 10**places
    magnitude = abs(exact)
    whole = (magnitude.numerator * 2 + magnitude.denominator) // (magnitude.denominator * 2)
    sign = 1 if exact < 0 and whole else 0
    return Decimal((sign, tuple(int(d) for d in str(whole)), -places))


def round_money(value: Fraction | Decimal | int, currency: Currency) -> Decimal:
    """THE rounding rule: half away from zero to `currency`'s minor unit, exactly once."""
    return round_half_up(value, currency.minor_units)


def charge(
    quantity: Decimal | int, unit_price: Decimal, currency: Currency, *, per: int = 1
) -> Decimal:
    """`quantity` at `unit_price` for every `per` units, computed exactly, rounded once.

    `per` lets a price stay in the unit it was set in: 90 minutes at 6.00 per 60
    minutes, 16 days of a 300.00 monthly fee per 30 days.
    """
    if per < 1:
        raise Invalid(f"a price is per one or more units, not per {per}")
    return round_money(Fraction(quantity) * Fraction(unit_price) / per, currency)


def amount(value: Decimal | int | str, what: str, *, signed: bool = False) -> Decimal:
    """`value` as a finite Decimal (not negative unless `signed`), else Invalid naming `what`.

    Floats are refused: `0.1` is not one tenth, and money must be exact.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise Invalid(
            f"{what} must be a Decimal, an int or a decimal string such as '12.50', "
            f"not {type(value).__name__} {value!r}"
        )
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation as exc:
        raise Invalid(f"{what} must be a decimal number such as '12.50', not {value!r}") from exc
    if not number.is_finite():
        raise Invalid(f"{what} must be a finite number, not {value!r}")
    if number < 0 and not signed:
        raise Invalid(f"{what} must not be negative, not {value!r}")
    return number


def tax_rate(value: Decimal | int | str) -> Decimal:
    """A tax rate as a fraction from 0 to 1 (`"0.20"` for 20 %), else Invalid."""
    rate = amount(value, "a tax rate")
    if rate > 1:
        raise Invalid(f"a tax rate is a fraction from 0 to 1 ('0.20' for 20 %), not {value!r}")
    return rate


def decimal_text(value: Decimal, *, places: int | None = None) -> str:
    """A canonical text for `value`: fixed point, no exponent, no negative zero.

    With `places`, exactly that many decimals (for amounts); without, no trailing zeros
    (for quantities and prices), so `0.50` and `0.5` read the same.
    """
    if value == 0:
        value = Decimal(0)
    if places is not None:
        return f"{value:.{places}f}"
    return f"{value.normalize():f}"
