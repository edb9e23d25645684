"""An issued invoice in a reader's language: its labels through the gettext catalogues,
its numbers, amounts and dates by Babel.

An issued invoice keeps its line descriptions in English, as `invoicing` wrote them
(they are part of what was issued). `Wording.description` reads each back by the
shape `invoicing` gives it and says it again in the reader's language, with the days,
minutes and amounts in it formatted for them; a description of no known shape is
shown as stored.

    >>> fr = Wording("fr", "Europe/Paris", "EUR")
    >>> fr.description("Overage days (Flex from 2026-11-01): 1")
    'Jours au-delà du forfait (Flex from 2026-11-01)\\xa0: 1'
    >>> fr.money("1234.50"), Wording("en", "UTC", "EUR").money("1234.50")
    ('1\\u202f234,50\\xa0€', '€1,234.50')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Final

from babel.dates import format_date
from babel.numbers import format_decimal, format_percent

from ruche.server.billing.documents import DocumentLine
from ruche.server.billing.money import Currency
from ruche.server.billing.pricing import Period
from ruche.server.i18n import DEFAULT_LOCALE, LOCALES, N_, Formats, Translator, translations
from ruche.server.i18n.formats import Width

__all__ = ["Wording", "invoice_locale"]


_VERSION: Final = r"\((?P<version>.+)\)"
_DAY: Final = r"(?P<day>\d{4}-\d{2}-\d{2})"
_AMOUNT: Final = r"-?\d+(?:\.\d+)?"
_HOURS: Final = r"\d+ h(?: \d{2} min)?"

DESCRIPTIONS: Final = (
    (rf"^Monthly fee {_VERSION}, (?P<days>\d+) of (?P<month>\d+) days$",
     N_("Monthly fee (%(version)s), %(days)s of %(month)s days")),
    (rf"^Monthly fee {_VERSION}$", N_("Monthly fee (%(version)s)")),
    (rf"^Included days used {_VERSION}: (?P<used>\d+) of (?P<allowance>\d+)$",
     N_("Included days used (%(version)s): %(used)s of %(allowance)s")),
    (rf"^Overage days {_VERSION}: (?P<days>\d+)$", N_("Overage days (%(version)s): %(days)s")),
    (rf"^Included hours used {_VERSION}: (?P<used>{_HOURS}) of (?P<allowance>{_HOURS})$",
     N_("Included hours used (%(version)s): %(used)s of %(allowance)s")),
    (rf"^Overage {_VERSION}: (?P<time>{_HOURS})$", N_("Overage (%(version)s): %(time)s")),
    (rf"^{_DAY}: (?P<minutes>\d+) min, minimum charge$",
     N_("%(day)s: %(minutes)s min, minimum charge")),
    (rf"^{_DAY}: (?P<minutes>\d+) min, daily cap$", N_("%(day)s: %(minutes)s min, daily cap")),
    (rf"^{_DAY}: (?P<minutes>\d+) min$", N_("%(day)s: %(minutes)s min")),
    (rf"^Monthly cap {_VERSION}: (?P<cap>{_AMOUNT}) reached$",
     N_("Monthly cap (%(version)s): %(cap)s reached")),
    (rf"^Day pass {_DAY}, first presence (?P<clock>\d{{2}}:\d{{2}})$",
     N_("Day pass %(day)s, first presence %(clock)s")),
)  # fmt: skip
"""Each line description `invoicing` writes, as a pattern, and its msgid."""
_ADJUSTMENT: Final = re.compile(
    rf"^Adjustment for (?P<period>\d{{4}}-\d{{2}}): (?P<what>.+) "
    rf"\(billed (?P<old>{_AMOUNT}), now (?P<new>{_AMOUNT})\)$"
)
_COMPILED: Final = tuple((re.compile(pattern), msgid) for pattern, msgid in DESCRIPTIONS)

UNITS: Final[Mapping[str, Callable[[Translator, int], str]]] = {
    "month": lambda t, n: t.ngettext("month", "months", n),
    "day": lambda t, n: t.ngettext("day", "days", n),
    "minute": lambda t, n: t.ngettext("minute", "minutes", n),
    "day pass": lambda t, n: t.ngettext("day pass", "day passes", n),
    "adjustment": lambda t, n: t.ngettext("adjustment", "adjustments", n),
}
"""A line's unit as `invoicing` writes it, said for a quantity in the reader's language."""
REASONS: Final = {
    "stuck_occupied": N_("desk sensor stuck occupied"),
    "open": N_("still open"),
    "suspect": N_("awaiting review"),
}


def invoice_locale(setting: str | None) -> str:
    """The language of a member's invoice: their person's setting, else French."""
    return setting if setting in LOCALES else DEFAULT_LOCALE


@dataclass(frozen=True)
class Wording:
    """How one invoice reads for one reader: `locale`, the site's timezone, the currency."""

    locale: str
    timezone: str
    currency: str
    formats: Formats = field(init=False)
    translator: Translator = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", Formats(self.locale, self.timezone))
        object.__setattr__(self, "translator", translations(self.locale))

    def text(self, message: str, **values: object) -> str:
        """`message` (an English msgid) in the reader's language, `%(name)s` filled."""
        translated = self.translator.gettext(message)
        return translated % values if values else translated

    # --- values ------------------------------------------------------------------------

    def decimal(self, text: str, minimum: int = 0) -> str:
        """A stored decimal with its own digits (at least `minimum`), grouped for the reader."""
        value = Decimal(text)
        exponent = value.as_tuple().exponent
        digits = max(minimum, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=self.formats.babel_locale)

    def price(self, text: str) -> str:
        """A price or net with at least the currency's digits (`300` -> `300.00`)."""
        return self.decimal(text, Currency.of(self.currency).minor_units)

    def money(self, text: str) -> str:
        """An amount with its currency sign where the reader's locale puts it."""
        return self.formats.amount(Decimal(text), self.currency)

    def percent(self, rate: str) -> str:
        return format_percent(
            Decimal(rate), locale=self.formats.babel_locale, decimal_quantization=False
        )

    def date(self, day: date, width: Width = "long") -> str:
        return self.formats.date(day, width)

    def month(self, period: Period | str) -> str:
        """The month by name, `novembre 2026`, `November 2026` (from `2026-11` too)."""
        first = (period if isinstance(period, Period) else Period.parse(period)).first_day
        return format_date(first, "LLLL y", locale=self.formats.babel_locale)

    def period(self, period: Period) -> str:
        """`2026-11 (1 November 2026 to 30 November 2026)`, in the reader's words."""
        return self.text(
            N_("%(period)s (%(first)s to %(last)s)"),
            period=str(period),
            first=self.date(period.first_day),
            last=self.date(period.last_day),
        )

    def unit(self, unit: str, quantity: str | int = 1) -> str:
        """A line's unit, singular or plural as `quantity` asks; an unknown one as is."""
        say = UNITS.get(unit)
        return unit if say is None else say(self.translator, abs(int(Decimal(quantity))))

    def minutes(self, minutes: int) -> str:
        """A count of minutes as the reader's duration, `3 h 38 min`."""
        return self.formats.duration(timedelta(minutes=minutes))

    def unit_price(self, line: DocumentLine) -> str:
        """`300.00 / month`, `6.00 / 60 minutes`; an adjustment's amount alone."""
        price = self.price(line.unit_price)
        if line.adjustment:
            return price
        if line.per == 1:
            return f"{price} / {self.unit(line.unit)}"
        return f"{price} / {line.per} {self.unit(line.unit, line.per)}"

    def reason(self, reason: str) -> str:
        """Why a span is held back."""
        known = REASONS.get(reason)
        return self.text(known) if known else reason.replace("_", " ")

    # --- line descriptions ------------------------------------------------------------

    def description(self, stored: str) -> str:
        """A line description as `invoicing` stored it, said in the reader's language."""
        adjustment = _ADJUSTMENT.match(stored)
        if adjustment is not None:
            return self.text(
                N_("Adjustment for %(period)s: %(what)s (billed %(old)s, now %(new)s)"),
                period=adjustment["period"],
                what=self.description(adjustment["what"]),
                old=self.money(adjustment["old"]),
                new=self.money(adjustment["new"]),
            )
        for pattern, msgid in _COMPILED:
            found = pattern.match(stored)
            if found is not None:
                values = {k: self._value(k, v) for k, v in found.groupdict().items()}
                return self.text(msgid, **values)
        return stored

    def _value(self, name: str, raw: str) -> str:
        shown: Mapping[str, Callable[[str], str]] = {
            "day": lambda v: self.date(date.fromisoformat(v), "medium"),
            "used": self._hours_or_count,
            "allowance": self._hours_or_count,
            "time": self._hours_or_count,
            "minutes": lambda v: self.formats.number(int(v)),
            "cap": self.money,
        }
        convert = shown.get(name)
        return raw if convert is None else convert(raw)

    def _hours_or_count(self, raw: str) -> str:
        """`3 h 05 min` (as `invoicing` writes hours) as the reader's duration; a count as is."""
        if "h" not in raw:
            return raw
        hours, _, rest = raw.partition(" h")
        minutes = int(rest.strip().removesuffix("min").strip() or 0)
        return self.formats.duration(timedelta(hours=int(hours), minutes=minutes))
