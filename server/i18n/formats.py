"""Dates, times, durations and amounts written for a locale by Babel, never by f-strings.

Times are shown in the site's timezone, whatever the server's clock says: a datetime must
be aware (the registry stores UTC), and a naive one is refused rather than guessed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_datetime, format_time
from babel.lists import format_list
from babel.numbers import format_currency, format_decimal
from babel.units import format_unit

from ruche.server.i18n.catalogues import LOCALES, UnknownLocaleError

Width = Literal["short", "medium", "long", "full"]

BABEL_LOCALES: Final = {"fr": "fr_FR", "en": "en_GB"}
"""The regional form each language is written in. English is British: sites are in Europe,
so day-month order and a 24-hour clock read as the rest of the page does."""


def site_timezone(name: str) -> ZoneInfo:
    """The IANA timezone `name` (`Europe/Paris`), or a ValueError saying it is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as Europe/Paris"
        ) from exc


@dataclass(frozen=True, slots=True)
class Formats:
    """How one reader sees values: their locale and the site's timezone.

    >>> from datetime import UTC
    >>> fr = Formats("fr", "Europe/Paris")
    >>> fr.datetime(datetime(2026, 12, 7, 21, 5, tzinfo=UTC))
    '07/12/2026 22:05'
    >>> Formats("en", "Europe/Paris").date(date(2026, 12, 7), "long")
    '7 December 2026'
    """

    locale: str
    timezone_name: str = "UTC"
    babel_locale: str = field(init=False)
    timezone: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        if self.locale not in LOCALES:
            raise UnknownLocaleError(self.locale)
        object.__setattr__(self, "babel_locale", BABEL_LOCALES[self.locale])
        object.__setattr__(self, "timezone", site_timezone(self.timezone_name))

    def _local(self, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give it a timezone (UTC)")
        return value.astimezone(self.timezone)

    def date(self, value: date, width: Width = "medium") -> str:
        """A day; a datetime is first moved to the site's timezone (its day there)."""
        if isinstance(value, datetime):
            value = self._local(value).date()
        return format_date(value, width, locale=self.babel_locale)

    def time(self, value: datetime, width: Width = "short") -> str:
        """The time of day at the site."""
        return format_time(self._local(value), width, locale=self.babel_locale)

    def datetime(self, value: datetime, width: Width = "short") -> str:
        """A day and its time at the site."""
        return format_datetime(self._local(value), width, locale=self.babel_locale)

    def duration(self, value: timedelta) -> str:
        """Hours and minutes (seconds dropped): `1 h 30 min` in French, `1 hr 30 mins`."""
        if value < timedelta(0):
            raise ValueError(f"negative duration {value}: a duration is a length of time")
        minutes = int(value.total_seconds()) // 60
        hours, minutes = divmod(minutes, 60)
        parts = []
        if hours:
            parts.append(self._unit(hours, "duration-hour"))
        if minutes or not hours:
            parts.append(self._unit(minutes, "duration-minute"))
        # The narrow list joins with a space: `1 h 30 min`, not `1 h et 30 min`.
        return format_list(parts, style="unit-narrow", locale=self.babel_locale)

    def _unit(self, value: int, unit: str) -> str:
        return str(format_unit(value, unit, length="short", locale=self.babel_locale))

    def amount(self, value: Decimal | int | float, currency: str = "EUR") -> str:
        """Money with its currency sign where the locale puts it: `1 234,50 €`, `€1,234.50`."""
        return _amount(self.babel_locale, value, currency)

    def number(self, value: Decimal | int | float) -> str:
        """A plain number with the locale's grouping and decimal sign."""
        return format_decimal(value, locale=self.babel_locale)


@functools.lru_cache(maxsize=65536)
def _amount(locale: str, value: Decimal | int | float, currency: str) -> str:
    # Babel takes tens of microseconds an amount, and a month's invoices page writes
    # thousands of them, mostly the same few fees and taxes.
    return format_currency(value, currency, locale=locale)
